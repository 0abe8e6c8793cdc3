"""Models as objects: the tokenizer and chat templates, building / loading causal LMs (safetensors),
length-bucketed batching, generation (HF or an OpenAI-compatible server) and the sentence embedder.
"""
