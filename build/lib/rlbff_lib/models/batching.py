"""Batches of token sequences for inference: length-sorted, left-padded, results back in input order.

Used by every reward-model scorer, the GenRM's generation and the policy's sampling. Left padding
with position ids counted from each sequence's first real token means padding never changes a result.
"""

from __future__ import annotations

from typing import Callable, Sequence

from rlbff_lib.core.progress import progress


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (longest first, so memory peaks at once), cut into batches."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device):
    """Left-pad to a batch: (input_ids [B, T], attention_mask [B, T], position_ids [B, T])."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[row, width - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def batched_forward(model, seqs: Sequence[Sequence[int]], pad_id: int, batch_size: int, read: Callable,
                    desc: str | None = None) -> list[float]:
    """``read(model, input_ids, attention_mask, position_ids) -> Tensor [B]`` over length-sorted
    left-padded batches under ``torch.inference_mode`` (on the device of the model's input
    embeddings); returns one float per sequence, in input order. ``desc``: show progress per batch."""
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    device = model.get_input_embeddings().weight.device
    out: list[float] = [0.0] * len(seqs)
    batches = length_batches([len(s) for s in seqs], batch_size)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in (progress(batches, desc=desc) if desc else batches):
                ids, mask, pos = left_pad([seqs[i] for i in idx], pad_id, device)
                for i, v in zip(idx, read(model, ids, mask, pos).float().cpu().tolist()):
                    out[i] = v
    finally:
        model.train(was_training)
    return out
