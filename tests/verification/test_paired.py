"""Paired comparison statistics against known values (exact binomial tails, the Wald interval for
paired proportions) and against scipy where it computes the same thing."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from scipy import stats as scipy_stats

from verification import paired


def test_mcnemar_exact_known_values():
    # 1 vs 9 discordant: 2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024.
    assert paired.mcnemar_exact(1, 9) == pytest.approx(22 / 1024, abs=1e-15)
    assert paired.mcnemar_exact(9, 1) == pytest.approx(22 / 1024, abs=1e-15)
    # Balanced discordance is no evidence at all; no discordance likewise.
    assert paired.mcnemar_exact(5, 5) == 1.0
    assert paired.mcnemar_exact(0, 0) == 1.0
    # 0 vs 6: 2 / 64.
    assert paired.mcnemar_exact(0, 6) == pytest.approx(2 / 64)


@pytest.mark.parametrize("a_only,b_only", [(3, 17), (40, 60), (120, 80), (0, 1), (7, 7), (450, 551),
                                           (3300, 3400), (2900, 3600), (6000, 6000), (10, 5000)])
def test_mcnemar_exact_matches_scipy_binomial_test(a_only, b_only):
    expected = scipy_stats.binomtest(a_only, a_only + b_only, 0.5).pvalue
    assert paired.mcnemar_exact(a_only, b_only) == pytest.approx(min(1.0, expected), rel=1e-9)


def test_mcnemar_refuses_negative_counts():
    with pytest.raises(ValueError):
        paired.mcnemar_exact(-1, 3)


def _pairs(both: int, a_only: int, b_only: int, neither: int) -> tuple[list[int], list[int]]:
    a = [1] * both + [1] * a_only + [0] * b_only + [0] * neither
    b = [1] * both + [0] * a_only + [1] * b_only + [0] * neither
    return a, b


def test_paired_normal_interval_is_the_paired_wald_interval():
    a, b = _pairs(50, 10, 2, 38)  # n = 100
    mean, low, high = paired.paired_normal_interval(a, b)
    n, b_, c_ = 100, 10, 2
    half = paired.Z95 * math.sqrt((b_ + c_ - (b_ - c_) ** 2 / n) / (n - 1) / n)
    assert mean == pytest.approx(0.08)
    assert low == pytest.approx(0.08 - half)
    assert high == pytest.approx(0.08 + half)
    # Same as mean ± z * stdev / sqrt(n) on the differences.
    diffs = [x - y for x, y in zip(a, b)]
    assert high - mean == pytest.approx(paired.Z95 * statistics.stdev(diffs) / math.sqrt(n))


def test_paired_difference_in_points_with_mcnemar_and_newcombe():
    a, b = _pairs(50, 10, 2, 38)
    result = paired.paired_difference(a, b)
    assert (result.n, result.a_only, result.b_only) == (100, 10, 2)
    assert result.diff == pytest.approx(8.0)
    assert result.p_value == pytest.approx(paired.mcnemar_exact(10, 2))
    assert result.p_value == pytest.approx(0.0385742, abs=1e-6)
    _, low, high = paired.newcombe_paired_interval(50, 10, 2, 38)
    assert (result.ci_low, result.ci_high) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert result.ci_low > 0 and result.significant
    assert result.method == "mcnemar_exact+newcombe_paired"


def test_same_accuracy_different_items_is_not_a_difference():
    # Both 60%, but on different items: diff 0, interval straddles 0, McNemar p = 1.
    a, b = _pairs(40, 20, 20, 20)
    result = paired.paired_difference(a, b)
    assert result.diff == 0.0 and result.ci_low < 0 < result.ci_high
    assert result.p_value == 1.0 and not result.significant


def test_identical_outcomes_are_no_difference_with_a_real_width():
    a = [1, 0, 1, 1]
    result = paired.paired_difference(a, list(a))
    assert (result.diff, result.p_value) == (0.0, 1.0)
    assert result.ci_low < 0 < result.ci_high and not result.significant


def test_three_items_one_way_is_not_a_certainty():
    # All 3 discordant pairs favour A: the normal interval collapses to [100, 100]; Newcombe's
    # does not, and McNemar (p = 0.25) says it is not significant.
    mean, low, high = paired.paired_normal_interval([1, 1, 1], [0, 0, 0])
    assert low == high == 1.0
    result = paired.paired_difference([1, 1, 1], [0, 0, 0])
    assert result.p_value == 0.25 and not result.significant
    # Known value by hand: phi = 0 (a margin is empty), Wilson bounds at 3/3 and 0/3 are
    # 3/(3+z^2) and z^2/(3+z^2): low = 1 - sqrt(2) * z^2/(3+z^2).
    z2 = paired.Z95 ** 2
    assert result.ci_low == pytest.approx(100 * (1 - math.sqrt(2) * z2 / (3 + z2)))
    assert result.ci_high == 100.0


def test_newcombe_is_antisymmetric_and_bounded():
    for counts in [(36, 12, 2, 0), (0, 0, 5, 0), (10, 3, 7, 80), (1, 0, 0, 0)]:
        diff, low, high = paired.newcombe_paired_interval(*counts)
        both, a_only, b_only, neither = counts
        r_diff, r_low, r_high = paired.newcombe_paired_interval(both, b_only, a_only, neither)
        assert (r_diff, r_low, r_high) == (pytest.approx(-diff), pytest.approx(-high), pytest.approx(-low))
        assert -1.0 <= low <= diff <= high <= 1.0
    with pytest.raises(ValueError):
        paired.newcombe_paired_interval(0, 0, 0, 0)


def _coverage(n: int, cells: tuple[float, ...], reps: int = 3000) -> tuple[float, float]:
    """Share of simulated tables whose Newcombe (resp. normal) interval holds the true difference."""
    rng = random.Random(7)
    true = cells[1] - cells[2]
    newcombe = normal = 0
    for _ in range(reps):
        draws = rng.choices(range(4), weights=cells, k=n)
        counts = [draws.count(i) for i in range(4)]
        _, low, high = paired.newcombe_paired_interval(*counts)
        newcombe += low <= true <= high
        a, b = _pairs(*counts)
        _, low, high = paired.paired_normal_interval(a, b)
        normal += low <= true <= high
    return newcombe / reps, normal / reps


@pytest.mark.parametrize("n,cells", [(40, (0.5, 0.15, 0.05, 0.3)), (100, (0.4, 0.1, 0.1, 0.4)),
                                      (20, (0.6, 0.08, 0.02, 0.3)), (30, (0.7, 0.05, 0.0, 0.25))])
def test_newcombe_covers_the_true_difference(n, cells):
    newcombe, normal = _coverage(n, cells)
    assert newcombe >= 0.935  # nominal 95%, 3000 draws: SE of a coverage about 0.004
    if n <= 30:  # where the normal interval fails (few discordant pairs), Newcombe's does not
        assert normal < 0.85


def test_partial_credit_has_no_mcnemar():
    result = paired.paired_difference([0.5, 1.0, 0.25], [0.0, 1.0, 0.5])
    assert result.p_value is None and result.method == "paired_normal"
    assert result.diff == pytest.approx(100 * (0.5 + 0 - 0.25) / 3)


def test_bootstrap_interval_brackets_the_mean_and_agrees_with_normal():
    a, b = _pairs(300, 60, 30, 110)  # n = 500
    mean, low, high = paired.paired_bootstrap_interval(a, b, seed=1)
    n_mean, n_low, n_high = paired.paired_normal_interval(a, b)
    assert mean == pytest.approx(n_mean)
    assert low < mean < high
    assert low == pytest.approx(n_low, abs=0.01) and high == pytest.approx(n_high, abs=0.01)
    # Seeded: the same interval every time.
    assert paired.paired_bootstrap_interval(a, b, seed=1) == (mean, low, high)


def test_bad_input_refused():
    with pytest.raises(ValueError):
        paired.paired_difference([1, 0], [1])
    with pytest.raises(ValueError):
        paired.paired_difference([], [])
    with pytest.raises(ValueError):
        paired.paired_difference([2.0], [0.0])
    with pytest.raises(ValueError):
        paired.paired_bootstrap_interval([1], [0], resamples=0)


def test_summary_sums_give_the_same_difference_as_the_items():
    a = [1.0, 0.5, 0.0, 1.0, 0.25, 0.75]
    b = [0.5, 0.5, 1.0, 0.0, 0.25, 0.5]
    summary = paired.summarize(a, b)
    assert (summary.n, summary.a_only, summary.b_only, summary.binary) == (6, 3, 1, False)
    from_items = paired.paired_difference(a, b)
    mean, low, high = paired.paired_normal_interval(a, b)
    assert from_items.diff == pytest.approx(100 * mean)
    assert (from_items.ci_low, from_items.ci_high) == (pytest.approx(100 * low), pytest.approx(100 * high))
    # What a database sends: the same numbers from the sums alone.
    rebuilt = paired.PairedSummary(6, summary.both, 3, 1, sum(x - y for x, y in zip(a, b)),
                                   sum((x - y) ** 2 for x, y in zip(a, b)), False)
    assert paired.difference_from_summary(rebuilt) == from_items
