"""Paper §2-3: principle extraction (LLM or rules), the filters (evidence, helpfulness, Partially),
cross-annotator consensus, merging by meaning, datasets and PrincipleBench, evaluation against the world's truth.
"""
