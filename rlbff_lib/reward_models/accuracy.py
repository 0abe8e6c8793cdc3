"""Accuracy of a reward model on principle items and on pairs, in percent with 95% Wilson intervals.

The one rule for PrincipleBench (the ``rm_eval`` stage) and for the validation items (the
``reward_models`` stage's training diagnostics), scored both ways:

- items: an item is right when ``score > threshold`` agrees with its label (Yes). Threshold 0 for
  the log-odds models (scalar RM, GenRM); a principle-blind Bradley–Terry model needs one fitted
  on validation items (:func:`rlbff_lib.reward_models.bradley_terry.fit_threshold`).
- pairs (``principlebench_pairs.jsonl``: one prompt and principle, one response labelled Yes and
  the other No): a pair is right when the Yes response (``chosen``) scores strictly higher; a tie
  is wrong. No threshold, so a principle-blind model is scored on the same footing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from rlbff_lib.core.stats import percent_interval


def rate(right: Sequence[bool]) -> dict:
    """``{"accuracy": percent, "ci": [lower, upper] percent (Wilson 95%), "n"}`` of a list of right/wrong."""
    n = len(right)
    acc = 100 * sum(right) / n
    return {"accuracy": acc, "ci": percent_interval(acc, n), "n": n}


def majority_share(labels: Sequence[str]) -> float:
    """Accuracy (percent) of always answering the more frequent label."""
    yes = sum(lab == "Yes" for lab in labels)
    return 100 * max(yes, len(labels) - yes) / len(labels)


def _grouped(right: Sequence[bool], keys: Sequence[str | None], labels: Sequence[str] | None = None) -> dict:
    by: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        if k is not None:
            by[k].append(i)
    out = {}
    for k in sorted(by):
        out[k] = rate([right[i] for i in by[k]])
        if labels is not None:
            out[k]["majority"] = majority_share([labels[i] for i in by[k]])
    return out


def item_right(scores: Sequence[float], labels: Sequence[str], threshold: float = 0.0) -> list[bool]:
    """Per item, in order: is ``score > threshold`` the same as ``label == "Yes"``."""
    return [(s > threshold) == (lab == "Yes") for s, lab in zip(scores, labels)]


def item_accuracy(scores: Sequence[float], items: Sequence[dict], threshold: float = 0.0,
                  per_property: bool = False) -> dict | None:
    """Items (``label`` Yes|No, ``domain``, optional ``property``) scored by ``score > threshold``.

    Returns ``accuracy`` / ``ci`` / ``n``, ``majority`` (the majority-label baseline of the same
    items) and ``yes_share`` (percent), ``threshold``, ``groups[domain] = {accuracy, ci, n, majority}``
    and with ``per_property`` ``per_property[property] = {accuracy, ci, n}``; ``None`` without items.
    """
    if len(scores) != len(items):
        raise ValueError(f"scores: {len(scores)} for {len(items)} items")
    if not items:
        return None
    labels = [it["label"] for it in items]
    right = item_right(scores, labels, threshold)
    out = {**rate(right), "majority": majority_share(labels),
           "yes_share": 100 * labels.count("Yes") / len(labels), "threshold": threshold,
           "groups": _grouped(right, [str(it.get("domain")) for it in items], labels)}
    if per_property:
        out["per_property"] = _grouped(right, [it.get("property") or None for it in items])
    return out


def pair_accuracy(chosen: Sequence[float], rejected: Sequence[float], pairs: Sequence[dict]) -> dict | None:
    """Pairs (``domain``) right when the Yes response's score is strictly above the No response's.

    Returns ``accuracy`` / ``ci`` / ``n``, ``ties`` (pairs with equal scores, counted wrong) and
    ``groups[domain] = {accuracy, ci, n}``; ``None`` without pairs.
    """
    if not len(chosen) == len(rejected) == len(pairs):
        raise ValueError(f"scores: {len(chosen)} chosen and {len(rejected)} rejected for {len(pairs)} pairs")
    if not pairs:
        return None
    right = [c > r for c, r in zip(chosen, rejected)]
    return {**rate(right), "ties": sum(c == r for c, r in zip(chosen, rejected)),
            "groups": _grouped(right, [str(p.get("domain")) for p in pairs])}
