"""A sentence-embedder stand-in: chosen strings get chosen vectors, any other a seeded random unit vector."""
from __future__ import annotations

import hashlib

import numpy as np

DIM = 64


class FakeEmbedder:
    """``encode`` like sentence-transformers (unit rows); ``calls`` records every batch asked for."""

    DIM = DIM

    def __init__(self, vectors: dict[str, np.ndarray] | None = None):
        self.vectors = vectors or {}
        self.calls: list[list[str]] = []

    def get_sentence_embedding_dimension(self):
        return self.DIM

    def encode(self, strings, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False):
        self.calls.append(list(strings))
        out = []
        for s in strings:
            v = self.vectors.get(s)
            if v is None:
                seed = int(hashlib.sha256(s.encode()).hexdigest()[:8], 16)
                v = np.random.default_rng(seed).normal(size=self.DIM)
            out.append(np.asarray(v, dtype=np.float64) / np.linalg.norm(v))
        return np.array(out, dtype=np.float32)


def unit(i: int, dim: int = DIM) -> np.ndarray:
    v = np.zeros(dim)
    v[i] = 1.0
    return v


def near(i: int, j: int, cos: float) -> np.ndarray:
    """A unit vector with cosine ``cos`` to unit vector i (and the rest along unit vector j)."""
    return cos * unit(i) + np.sqrt(1 - cos ** 2) * unit(j)
