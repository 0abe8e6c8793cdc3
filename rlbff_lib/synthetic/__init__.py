"""The smoke world: checkable response properties, annotators and their feedback with known mistakes, the
ground truth (evaluation only), and a simulated extraction LLM served over HTTP.
"""
