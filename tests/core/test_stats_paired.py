"""The paired comparison of two classifiers on the same items: the exact McNemar p against a published worked
example, brute-force enumeration and scipy; the percentile-bootstrap interval against the spread of the
multinomial it resamples."""
import itertools
import math

import pytest

from rlbff_lib.core.stats import mcnemar_exact_p, paired_accuracy_difference


def items(both, only_a, only_b, neither):
    """(correct_a, correct_b) of items laid out by their 2x2 table."""
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return a, b


def brute_force_p(only_a, only_b):
    """Enumerate every way the m discordant items could have fallen (each equally likely under the null) and
    count those at least as far from m/2 as the observed split: the two-sided exact p, with no binomial formula."""
    m = only_a + only_b
    extreme = sum(abs(2 * sum(signs) - m) >= abs(only_a - only_b) for signs in itertools.product((0, 1), repeat=m))
    return extreme / 2 ** m


def test_fagerland_2013_worked_example():
    # Fagerland, Lydersen & Laake (2013), "The McNemar test for binary matched-pairs data: mid-p and asymptotic
    # are better than exact conditional", BMC Medical Research Methodology 13:91, Table 1 (airway
    # hyper-responsiveness before / after stem cell transplantation, 21 children: 1 / 1 / 7 / 12): the McNemar
    # exact conditional test gives p = 0.070 (= 2 * binomcdf(1, 8, 0.5), their supplement's eq. 1).
    a, b = items(1, 1, 7, 12)
    r = paired_accuracy_difference(a, b)
    assert (r["n"], r["both"], r["only_a"], r["only_b"], r["neither"]) == (21, 1, 1, 7, 12)
    assert round(r["p_value"], 3) == 0.070 and r["p_value"] == 2 * 9 / 256
    assert r["difference"] == pytest.approx(2 / 21 - 8 / 21)
    assert (r["accuracy_a"], r["accuracy_b"]) == pytest.approx((2 / 21, 8 / 21))


@pytest.mark.parametrize("only_a,only_b", [(0, 1), (1, 0), (1, 1), (0, 5), (2, 7), (5, 5), (6, 4), (3, 9), (0, 12),
                                           (7, 6)])
def test_mcnemar_p_is_the_brute_force_enumeration(only_a, only_b):
    assert mcnemar_exact_p(only_a, only_b) == pytest.approx(brute_force_p(only_a, only_b), rel=1e-12)


def test_mcnemar_p_matches_scipy_binomtest_on_benchmark_sized_counts():
    stats = pytest.importorskip("scipy.stats")
    for b, c in ((90, 40), (70, 66), (3, 30), (200, 150), (31, 29), (0, 40)):
        assert mcnemar_exact_p(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9, abs=1e-300)
    assert mcnemar_exact_p(0, 0) == 1.0 and mcnemar_exact_p(4, 4) == 1.0
    with pytest.raises(ValueError, match="^only_a/only_b"):
        mcnemar_exact_p(-1, 3)


def test_identical_classifiers_differ_by_nothing():
    a = [True, False, True, True, False] * 20
    r = paired_accuracy_difference(a, list(a))
    assert r["difference"] == 0 and r["ci"] == [0.0, 0.0] and r["p_value"] == 1.0 and not r["excludes_zero"]
    assert (r["only_a"], r["only_b"]) == (0, 0) and r["accuracy_a"] == r["accuracy_b"] == 0.6


def test_bootstrap_interval_matches_the_multinomial_spread_and_shrinks_with_n():
    """A resample's difference is (K_a - K_b)/n with (K_a, K_b, rest) ~ Multinomial(n; p_a, p_b, ...), whose
    variance is (p_a + p_b - (p_a - p_b)^2)/n: the 95% interval is about ±1.96 of its sd around the difference."""
    widths = []
    for scale in (1, 4, 16):
        a, b = items(100 * scale, 30 * scale, 15 * scale, 55 * scale)
        n = len(a)
        r = paired_accuracy_difference(a, b, seed=1)
        pa, pb = 30 / 200, 15 / 200
        sd = math.sqrt((pa + pb - (pa - pb) ** 2) / n)
        lo, hi = r["ci"]
        assert lo < r["difference"] < hi and r["difference"] == pytest.approx(0.075)
        assert hi - lo == pytest.approx(2 * 1.96 * sd, rel=0.1)
        assert (lo + hi) / 2 == pytest.approx(r["difference"], abs=0.3 * sd)
        widths.append(hi - lo)
    assert widths[0] / widths[1] == pytest.approx(2, rel=0.15) and widths[1] / widths[2] == pytest.approx(2, rel=0.15)


def test_bootstrap_is_seeded_and_the_sign_follows_the_order():
    a, b = items(50, 12, 20, 18)
    r = paired_accuracy_difference(a, b, seed=3)
    assert r == paired_accuracy_difference(a, b, seed=3)
    assert r["ci"] != paired_accuracy_difference(a, b, seed=4)["ci"]
    swapped = paired_accuracy_difference(b, a, seed=3)
    assert swapped["difference"] == -r["difference"] and swapped["p_value"] == r["p_value"]
    assert (swapped["only_a"], swapped["only_b"]) == (20, 12)
    assert r["n_bootstrap"] == 2000 and r["seed"] == 3 and "bootstrap" in r["interval"]


def test_a_clear_difference_with_overlapping_wilson_intervals():
    """Two accuracies whose unpaired 95% Wilson intervals overlap, yet the paired comparison is decisive: the
    situation the paired comparison exists for."""
    from rlbff_lib.core.stats import wilson_interval

    a, b = items(420, 70, 25, 239)  # 754 items: 65.0% vs 59.0%
    wa, wb = wilson_interval(490, 754), wilson_interval(445, 754)
    assert wa[0] < wb[1]  # the intervals overlap
    r = paired_accuracy_difference(a, b)
    assert r["excludes_zero"] and r["ci"][0] > 0 and r["p_value"] < 1e-4


def test_bad_input_is_named():
    for args, field in ((([True], [True, False]), "correct_a/correct_b"), (([], []), "correct_a/correct_b"),
                        (([True, 0.5], [True, True]), "correct_a"), (([True], ["yes"]), "correct_b")):
        with pytest.raises(ValueError, match=f"^{field}"):
            paired_accuracy_difference(*args)
    with pytest.raises(ValueError, match="^n_bootstrap"):
        paired_accuracy_difference([True], [False], n_bootstrap=0)
