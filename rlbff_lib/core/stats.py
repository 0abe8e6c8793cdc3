"""Intervals for accuracies: the Wilson score interval (Wilson 1927), 95% unless asked otherwise.

An accuracy of k right out of n gets every rate p that a two-sided score test would not reject,
|k/n − p| <= z·sqrt(p(1 − p)/n); it stays inside [0, 1] and keeps its coverage for small n.
"""

from __future__ import annotations

import math
import random
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


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz; Numerical
    Recipes §6.4: the fraction converges fast for x < (a + 1)/(a + b + 2), else the symmetry I_x(a,b) = 1 − I_1−x(b,a))."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 400):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's T with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df: degrees of freedom must be > 0, got {df}")
    return _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided Student-t critical value: P(|T| <= q) = ``confidence`` (12.706 for 0.95 at df 1), by bisection."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > 1 - confidence:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > 1 - confidence else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def welch_test(after: Sequence[float], before: Sequence[float], confidence: float = CONFIDENCE) -> dict:
    """Is mean(after) − mean(before) different from zero? Welch's unequal-variance t-test (Welch 1947).

    Built for fulfilment gains over seeds: ``after`` one value per GRPO training seed, ``before`` one per SFT
    sampling seed (independent groups, so not paired). Welch rather than a bootstrap: with the 3-5 seeds a run
    affords, a bootstrap has only a handful of distinct resamples and its percentile interval is too narrow, while
    the t distribution widens the interval for small n; Welch rather than Student because the two spreads differ
    (SFT: sampling noise only; GRPO: training plus sampling). se = sqrt(s²_a/n_a + s²_b/n_b), df by
    Welch–Satterthwaite, interval diff ± t_q(df)·se, two-sided p (the interval excludes 0 exactly when
    p < 1 − confidence; a one-sided p for "gain > 0" is p/2 when the gain is positive).
    One ``before`` value: a one-sample t-test of ``after`` against it (df n_a − 1; the baseline's own noise
    unknown, ``test`` says so). Fewer than two ``after`` values: no interval and no p (``ci``/``p_value`` None).
    Returns ``{"mean", "ci": [lower, upper] | None, "p_value", "t", "df", "se", "n_after", "n_before", "test",
    "excludes_zero"}`` (units of the inputs).
    """
    a, b = [float(x) for x in after], [float(x) for x in before]
    if not a or not b:
        raise ValueError(f"after/before: need at least one value each, got {len(a)}/{len(b)}")
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    diff = ma - mb
    out = {"mean": diff, "ci": None, "p_value": None, "t": None, "df": None, "se": None, "n_after": na,
           "n_before": nb, "test": "welch", "excludes_zero": False}
    if na < 2:
        out["test"] = "none: one value after, no spread"
        return out
    va = sum((x - ma) ** 2 for x in a) / (na - 1) / na
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1) / nb if nb > 1 else 0.0
    if nb < 2:
        out["test"] = "one-sample t against the single before value"
    se = math.sqrt(va + vb)
    if se == 0:  # no spread at all: the difference is exact
        out.update(ci=[diff, diff], p_value=0.0 if diff else 1.0, se=0.0, excludes_zero=diff != 0)
        return out
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + (vb ** 2 / (nb - 1) if nb > 1 else 0.0))
    t = diff / se
    half = t_quantile(confidence, df) * se
    ci = [diff - half, diff + half]
    out.update(ci=ci, p_value=t_two_sided_p(t, df), t=t, df=df, se=se, excludes_zero=ci[0] > 0 or ci[1] < 0)
    return out


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value (the conditional binomial test on the discordant pairs, McNemar 1947).

    Under "both classifiers are equally accurate" each of the m = only_a + only_b discordant items is a fair coin:
    p = min(1, 2·P(X <= min(only_a, only_b))), X ~ Bin(m, 1/2), summed exactly with integers; 1 when m = 0.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"only_a/only_b: discordant counts must be >= 0, got {only_a}/{only_b}")
    m = only_a + only_b
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2 ** m)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) of sorted values, linear between order statistics (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def paired_accuracy_difference(correct_a: Sequence[bool], correct_b: Sequence[bool], n_bootstrap: int = 2000,
                               seed: int = 0, confidence: float = CONFIDENCE) -> dict:
    """Is classifier A more accurate than B on the SAME items? Paired, so the items' shared difficulty cancels.

    ``correct_a[i]`` / ``correct_b[i]``: whether A / B got item i right (same items, same order). The difference
    acc_a − acc_b (shares) = (only_a − only_b)/n gets a percentile-bootstrap interval over items: ``n_bootstrap``
    resamples of the n items with replacement (``random.Random(seed)``, so reproducible), the difference of each,
    and their (1 ± confidence)/2 quantiles (linear between order statistics). The test is the exact McNemar test
    (:func:`mcnemar_exact_p`) on the discordant items. Unpaired Wilson intervals of the two accuracies can overlap
    while this interval excludes 0: the items both get right or both get wrong carry no information on the
    difference, and the paired comparison leaves them out of the noise.
    Returns ``{"n", "both", "only_a", "only_b", "neither", "accuracy_a", "accuracy_b", "difference",
    "ci": [lower, upper], "p_value", "excludes_zero", "test", "interval", "n_bootstrap", "seed"}`` (shares).
    """
    a, b = list(correct_a), list(correct_b)
    if len(a) != len(b):
        raise ValueError(f"correct_a/correct_b: the same items for both, got {len(a)} and {len(b)} entries")
    if not a:
        raise ValueError("correct_a/correct_b: a paired comparison needs at least one item")
    for name, xs in (("correct_a", a), ("correct_b", b)):
        bad = next((i for i, x in enumerate(xs) if x not in (True, False)), None)
        if bad is not None:
            raise ValueError(f"{name}: entry {bad} must be True/False, got {xs[bad]!r}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap: must be >= 1, got {n_bootstrap}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    n = len(a)
    only_a = sum(x and not y for x, y in zip(a, b))
    only_b = sum(y and not x for x, y in zip(a, b))
    both = sum(x and y for x, y in zip(a, b))
    diff = (only_a - only_b) / n
    if only_a + only_b == 0:  # every resample has difference 0
        ci = [0.0, 0.0]
    else:
        rng = random.Random(seed)
        signs = [int(x) - int(y) for x, y in zip(a, b)]
        boot = sorted(sum(rng.choices(signs, k=n)) / n for _ in range(n_bootstrap))
        ci = [_percentile(boot, (1 - confidence) / 2), _percentile(boot, (1 + confidence) / 2)]
    return {"n": n, "both": both, "only_a": only_a, "only_b": only_b, "neither": n - both - only_a - only_b,
            "accuracy_a": (both + only_a) / n, "accuracy_b": (both + only_b) / n, "difference": diff, "ci": ci,
            "p_value": mcnemar_exact_p(only_a, only_b), "excludes_zero": ci[0] > 0 or ci[1] < 0,
            "test": "exact McNemar (two-sided binomial on the discordant items)",
            "interval": f"percentile bootstrap over items, {100 * confidence:g}%", "n_bootstrap": n_bootstrap,
            "seed": seed}
