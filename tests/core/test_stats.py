"""The Wilson interval against published worked examples and against a brute-force inversion of the score test."""
import math
from statistics import NormalDist

import pytest

from rlbff_lib.core.stats import percent_interval, share_interval, wilson_interval, z_value

# Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of seven
# methods", Statistics in Medicine 17:857-872: its worked examples 81/263, 15/148, 0/20 and 1/29 under
# method 3, the score method without continuity correction (r/n -> limits, 4 decimals).
NEWCOMBE_1998 = [((81, 263), (0.2553, 0.3662)), ((15, 148), (0.0624, 0.1605)), ((0, 20), (0.0, 0.1611)),
                 ((1, 29), (0.0061, 0.1718))]


def score_test_rejects(k: float, n: int, p: float, z: float) -> bool:
    """The two-sided score test of rate p at k/n: |k/n - p| > z sqrt(p (1 - p) / n)."""
    return abs(k / n - p) > z * math.sqrt(p * (1 - p) / n)


def inverted_score_test(k: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The set of p in (0, 1) not rejected, found by scanning then bisecting (no closed form)."""
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    grid = [i / 20000 for i in range(1, 20000)]
    kept = [p for p in grid if not score_test_rejects(k, n, p, z)]

    def edge(inside: float, outside: float) -> float:
        for _ in range(60):
            mid = (inside + outside) / 2
            inside, outside = (mid, outside) if not score_test_rejects(k, n, mid, z) else (inside, mid)
        return inside

    lo = 0.0 if kept[0] == grid[0] and k == 0 else edge(kept[0], kept[0] - 1 / 20000)
    hi = 1.0 if kept[-1] == grid[-1] and k == n else edge(kept[-1], kept[-1] + 1 / 20000)
    return lo, hi


@pytest.mark.parametrize("counts,limits", NEWCOMBE_1998)
def test_newcombe_1998_worked_examples(counts, limits):
    lo, hi = wilson_interval(*counts)
    assert (round(lo, 4), round(hi, 4)) == limits


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (3, 7), (44, 60), (694, 1018), (950, 1000), (1, 2), (37, 57),
                                 (12.5, 20)])
def test_agrees_with_the_brute_force_inversion_of_the_score_test(k, n):
    lo, hi = wilson_interval(k, n)
    blo, bhi = inverted_score_test(k, n)
    assert lo == pytest.approx(blo, abs=1e-6) and hi == pytest.approx(bhi, abs=1e-6)


def test_the_numbers_quoted_in_issue_14():
    # "PrincipleBench GenRM 73.3% on 60 items has a 95% Wilson interval of [61.0, 82.9],
    # overlapping the scalar RM's [65.2, 71.0]" (68.2% of 1,018 items)
    assert [round(x, 1) for x in percent_interval(100 * 44 / 60, 60)] == [61.0, 82.9]
    assert [round(x, 1) for x in percent_interval(100 * 694 / 1018, 1018)] == [65.2, 71.0]
    assert [round(x, 4) for x in share_interval(44 / 60, 60)] == [round(x, 4) for x in wilson_interval(44, 60)]


def test_other_confidence_levels_and_errors():
    assert z_value() == pytest.approx(1.959964, abs=1e-6) and z_value(0.99) == pytest.approx(2.575829, abs=1e-6)
    lo90, hi90 = wilson_interval(30, 50, 0.90)
    lo95, hi95 = wilson_interval(30, 50)
    assert lo95 < lo90 < 0.6 < hi90 < hi95
    assert (lo90, hi90) == pytest.approx(inverted_score_test(30, 50, 0.90), abs=1e-6)
    assert percent_interval(100.0, 3) == pytest.approx([100 * wilson_interval(3, 3)[0], 100.0])
    for args, field in (((1, 0), "n"), ((5, 4), "successes"), ((-1, 4), "successes")):
        with pytest.raises(ValueError, match=f"^{field}"):
            wilson_interval(*args)
    with pytest.raises(ValueError, match="^confidence"):
        wilson_interval(1, 2, 1.0)


def test_auroc_matches_sklearn_and_the_delong_variance_written_out():
    """AUROC against scikit-learn; DeLong's variance from its definition with explicit loops over all pairs."""
    import random

    from rlbff_lib.core.stats import auroc

    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    for n1, n0 in ((5, 7), (40, 60), (3, 200)):
        pos = [round(rng.gauss(0.8, 1), 1) for _ in range(n1)]  # rounded: ties occur
        neg = [round(rng.gauss(0.0, 1), 1) for _ in range(n0)]
        got = auroc(pos, neg)
        assert got["auroc"] == pytest.approx(metrics.roc_auc_score([1] * n1 + [0] * n0, pos + neg), abs=1e-12)
        psi = [[1.0 if x > y else 0.5 if x == y else 0.0 for y in neg] for x in pos]
        a = sum(map(sum, psi)) / (n1 * n0)
        v10 = [sum(row) / n0 for row in psi]
        v01 = [sum(psi[i][j] for i in range(n1)) / n1 for j in range(n0)]
        var = (sum((v - a) ** 2 for v in v10) / (n1 - 1)) / n1 + (sum((v - a) ** 2 for v in v01) / (n0 - 1)) / n0
        half = 1.959963984540054 * var ** 0.5
        assert got["ci"] == pytest.approx([max(0, a - half), min(1, a + half)], abs=1e-12)
        assert (got["n_positive"], got["n_negative"]) == (n1, n0)
    perfect = auroc([2.0, 3.0], [0.0, 1.0])
    assert perfect == {"auroc": 1.0, "ci": [1.0, 1.0], "n_positive": 2, "n_negative": 2}
    assert auroc([1.0, 1.0], [1.0, 1.0])["auroc"] == 0.5
    with pytest.raises(ValueError, match="^positive/negative"):
        auroc([1.0], [0.0, 2.0])
