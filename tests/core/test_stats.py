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


# Welch's t-test. Published: the two worked examples of the Wikipedia article "Welch's t-test" (sections
# "Examples"), rounded as printed there (t, p); the t table (two-sided 95%) of any statistics textbook.
WIKI_A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
WIKI_A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
WIKI_B1 = [17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8]
WIKI_B2 = [21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8, 20.7, 21.7, 21.5, 22.5, 23.6, 21.5, 22.5,
           23.5, 21.5, 21.8]


@pytest.mark.parametrize("df,q", [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)])
def test_t_quantile_against_the_printed_table(df, q):
    from rlbff_lib.core.stats import t_quantile

    assert round(t_quantile(0.95, df), 3) == q


@pytest.mark.parametrize("a,b,t,p", [(WIKI_A1, WIKI_A2, -2.46, 0.021), (WIKI_B1, WIKI_B2, -1.57, 0.149)])
def test_welch_against_the_published_worked_examples(a, b, t, p):
    from rlbff_lib.core.stats import welch_test

    r = welch_test(a, b)
    assert round(r["t"], 2) == t and round(r["p_value"], 3) == p and r["test"] == "welch"
    assert r["excludes_zero"] == (p < 0.05) and r["mean"] == pytest.approx(sum(a) / len(a) - sum(b) / len(b))


def test_welch_matches_scipy_on_seed_sized_samples():
    import random

    from rlbff_lib.core.stats import welch_test

    S = pytest.importorskip("scipy.stats")
    rng = random.Random(3)
    cases = [([0.7, 0.74, 0.72], [0.40, 0.44]), ([0.8, 0.9, 0.7], [0.4, 0.5, 0.6]), (WIKI_A1, WIKI_A2)]
    cases += [([rng.gauss(0.1, 0.05) for _ in range(rng.randint(2, 6))], [rng.gauss(0, 0.02) for _ in range(
        rng.randint(2, 6))]) for _ in range(20)]
    for a, b in cases:
        r, ref = welch_test(a, b), S.ttest_ind(a, b, equal_var=False)
        ci = ref.confidence_interval(0.95)
        assert r["t"] == pytest.approx(ref.statistic, rel=1e-9) and r["df"] == pytest.approx(ref.df, rel=1e-9)
        assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
        assert r["ci"] == pytest.approx([ci.low, ci.high], rel=1e-8)
    one = welch_test([0.7, 0.74, 0.72], [0.42])  # one baseline value: one-sample t against it
    ref = S.ttest_1samp([0.7, 0.74, 0.72], 0.42)
    assert one["p_value"] == pytest.approx(ref.pvalue) and one["test"].startswith("one-sample")
    assert one["ci"] == pytest.approx([c - 0.42 for c in ref.confidence_interval(0.95)])


def test_welch_p_value_is_the_brute_force_t_tail():
    """The two-sided p as the share of a fine numerical integral of the t density beyond |t| (no library)."""
    from rlbff_lib.core.stats import t_two_sided_p

    def density(x, df):
        return math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2)) * (1 + x * x / df) ** (
            -(df + 1) / 2)

    for t, df in ((1.0, 3), (2.5, 2.4), (0.3, 7.5)):
        h, steps = t / 20000, 20000  # P(|T| < t) by Simpson's rule, p = 1 - that
        inner = density(0, df) + density(t, df) + sum((4 if i % 2 else 2) * density(i * h, df) for i in range(1, steps))
        assert t_two_sided_p(t, df) == pytest.approx(1 - 2 * inner * h / 3, abs=1e-9)


def test_welch_edge_cases():
    from rlbff_lib.core.stats import welch_test

    single = welch_test([0.9], [0.4, 0.5])
    assert single["ci"] is None and single["p_value"] is None and not single["excludes_zero"]
    flat = welch_test([0.5, 0.5], [0.4, 0.4])
    assert flat["ci"] == pytest.approx([0.1, 0.1]) and flat["p_value"] == 0.0 and flat["excludes_zero"]
    assert welch_test([0.4, 0.4], [0.4])["p_value"] == 1.0
    with pytest.raises(ValueError, match="^after/before"):
        welch_test([], [0.1])
