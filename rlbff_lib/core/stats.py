"""Intervals for accuracies: the Wilson score interval (Wilson 1927), 95% unless asked otherwise.

An accuracy of k right out of n gets every rate p that a two-sided score test would not reject,
|k/n − p| <= z·sqrt(p(1 − p)/n); it stays inside [0, 1] and keeps its coverage for small n.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

CONFIDENCE = 0.95


def z_value(confidence: float = CONFIDENCE) -> float:
    """The two-sided standard-normal quantile of ``confidence`` (1.95996... for 0.95)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf((1 + confidence) / 2)


def wilson_interval(successes: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(lower, upper) of the Wilson score interval of the rate ``successes / n``, as shares in [0, 1].

    successes: how many of the n were right; a mean of per-unit accuracies times n is accepted
    (RM-Bench: a prompt's share of won comparisons, n = prompts), so it need not be a whole number.
    """
    if n <= 0:
        raise ValueError(f"n: an interval needs at least one observation, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes: must be in [0, n={n}], got {successes}")
    z = z_value(confidence)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def percent_interval(accuracy_pct: float, n: float, confidence: float = CONFIDENCE) -> list[float]:
    """``[lower, upper]`` in percent of an accuracy given in percent over ``n`` units."""
    lo, hi = wilson_interval(min(n, max(0.0, accuracy_pct / 100 * n)), n, confidence)
    return [100 * lo, 100 * hi]


def share_interval(accuracy: float, n: float, confidence: float = CONFIDENCE) -> list[float]:
    """``[lower, upper]`` as shares of an accuracy given as a share over ``n`` units."""
    return list(wilson_interval(min(n, max(0.0, accuracy * n)), n, confidence))


def auroc(positive: Sequence[float], negative: Sequence[float], confidence: float = CONFIDENCE) -> dict:
    """Area under the ROC curve of a score meant to rank ``positive`` cases above ``negative`` ones, with an interval.

    AUROC = P(score_pos > score_neg) + ½ P(tie) (Mann–Whitney); its variance by DeLong, DeLong and Clarke-Pearson
    (1988): with V10_i = mean_j ψ(pos_i, neg_j) and V01_j = mean_i ψ(pos_i, neg_j) (ψ = 1, ½, 0 for >, =, <),
    var = s²(V10)/n_pos + s²(V01)/n_neg (sample variances); interval AUROC ± z·sd clipped to [0, 1].
    Returns ``{"auroc", "ci": [lower, upper], "n_positive", "n_negative"}`` (shares).
    """
    import bisect

    pos, neg = sorted(positive), sorted(negative)
    n1, n0 = len(pos), len(neg)
    if n1 < 2 or n0 < 2:
        raise ValueError(f"positive/negative: AUROC's interval needs >= 2 of each, got {n1}/{n0}")

    def below(xs, x):  # count of xs < x, plus half the count == x
        lo, hi = bisect.bisect_left(xs, x), bisect.bisect_right(xs, x)
        return lo + (hi - lo) / 2

    v10 = [below(neg, x) / n0 for x in pos]
    v01 = [(n1 - below(pos, y)) / n1 for y in neg]  # count of pos > y plus half the ties
    area = sum(v10) / n1
    s10 = sum((v - area) ** 2 for v in v10) / (n1 - 1)
    s01 = sum((v - area) ** 2 for v in v01) / (n0 - 1)
    half = z_value(confidence) * math.sqrt(s10 / n1 + s01 / n0)
    return {"auroc": area, "ci": [max(0.0, area - half), min(1.0, area + half)], "n_positive": n1, "n_negative": n0}
