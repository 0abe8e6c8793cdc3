"""Tiny Qwen3 models for the tests: a base-model folder saved as the pipeline saves one, and a model
with large random weights (its Yes/No logits and log-probabilities differ a lot between inputs)."""

from __future__ import annotations

from pathlib import Path

import torch

from rlbff_lib.models.lm import ModelSizeConfig, build_qwen3


def save_base(tok, size: ModelSizeConfig, path: str | Path, seed: int = 0) -> Path:
    """A random-initialised tiny Qwen3 and its tokenizer saved in ``path``."""
    build_qwen3(tok, size, seed=seed).save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


def spread_model(tok, size: ModelSizeConfig, seed: int):
    """A tiny Qwen3 (eval mode) with N(0, 0.5²) noise added to every parameter (generator seeded by ``seed``)."""
    model = build_qwen3(tok, size, seed=seed).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    return model
