"""Statistics behind the claimed-vs-measured verdicts (methods.md §1)."""

from __future__ import annotations

import math

import pytest

from verification import stats


def test_wilson_has_real_width_at_zero_and_full_score():
    low0, high0 = stats.wilson_interval(0, 50)
    low1, high1 = stats.wilson_interval(50, 50)
    assert low0 == 0.0 and 0.05 < high0 < 0.09  # 0/50: [0, ~7.1%]
    assert high1 == 1.0 and 0.91 < low1 < 0.95
    assert high0 - low0 == pytest.approx(high1 - low1)


def test_wilson_matches_the_formula_in_the_middle():
    low, high = stats.wilson_interval(30, 100)
    z = stats.Z95
    centre = (0.3 + z * z / 200) / (1 + z * z / 100)
    half = z * math.sqrt(0.3 * 0.7 / 100 + z * z / 40000) / (1 + z * z / 100)
    assert (low, high) == pytest.approx((centre - half, centre + half))


def test_reflection_worked_example_is_inconsistent():
    # Claimed GSM8K 99.2, measured 95.2 on n = 1319 (methods.md §1): z ≈ 4.8.
    p_hat, n = 0.952, 1319
    se = math.sqrt(p_hat * (1 - p_hat) / n)
    verdict, z = stats.verdict(99.2, (p_hat, se, n))
    assert verdict == stats.INCONSISTENT
    assert z == pytest.approx(4.8, abs=0.05)


def test_one_percent_claim_against_zero_of_fifty_is_consistent():
    verdict, z = stats.verdict(1.0, (0.0, 0.0, 50))
    assert verdict == stats.CONSISTENT
    assert 0 < z < 2


def test_bonferroni_turns_a_borderline_discrepancy_consistent():
    # z ≈ 2.3: discrepant for one benchmark, within the corrected threshold for eight.
    p_hat, n = 0.70, 400
    se = math.sqrt(p_hat * (1 - p_hat) / n)
    claimed_pts = 100 * (p_hat + 2.3 * math.sqrt(2) * se)
    assert stats.verdict(claimed_pts, (p_hat, se, n), k_benchmarks=1)[0] == stats.DISCREPANT
    assert stats.verdict(claimed_pts, (p_hat, se, n), k_benchmarks=8)[0] == stats.CONSISTENT
    consistent_z, inconsistent_z = stats.bonferroni_thresholds(8)
    # alpha = 2·P(Z > 2) = 0.0455; 0.0455 / 8 two-sided -> 2.765.
    assert consistent_z == pytest.approx(2.765, abs=0.005) and inconsistent_z > 3.5


def test_claim_below_measurement_is_reported_not_flagged():
    verdict, z = stats.verdict(50.0, (0.80, 0.02, 400))
    assert verdict == stats.CLAIMED_BELOW and z < -2


def test_unclaimed_and_small_gap_rules():
    assert stats.verdict(None, (0.5, 0.01, 100)) == (stats.UNCLAIMED, None)
    with pytest.raises(ValueError, match="no items"):
        stats.verdict(50.0, (0.0, 0.0, 0))
    # Huge n: |z| > 3 but the gap is under 2 points -> discrepant, not inconsistent.
    p_hat, n = 0.90, 1_000_000
    se = math.sqrt(p_hat * (1 - p_hat) / n)
    assert stats.verdict(91.5, (p_hat, se, n))[0] == stats.DISCREPANT


def test_verdict_accepts_an_outcome_object():
    class Outcome:
        measured, se, n = 95.2, math.sqrt(0.952 * 0.048 / 1319), 1319

    assert stats.verdict(99.2, Outcome())[0] == stats.INCONSISTENT


def test_standard_errors_binary_partial_and_clustered():
    binary = [1.0] * 30 + [0.0] * 70
    assert stats.standard_error(binary) == pytest.approx(math.sqrt(0.3 * 0.7 / 100))
    partial = [0.2, 0.4, 0.9, 0.5]
    mean = sum(partial) / 4
    var = sum((x - mean) ** 2 for x in partial) / 3
    assert stats.standard_error(partial) == pytest.approx(math.sqrt(var / 4))
    # Perfectly correlated pairs double the variance of the mean versus independent items.
    paired = [1.0, 1.0, 0.0, 0.0] * 25
    groups = [i // 2 for i in range(100)]
    assert stats.standard_error(paired, clusters=groups) == pytest.approx(
        math.sqrt(2) * math.sqrt(0.25 / 100), rel=1e-9
    )
    with pytest.raises(ValueError):
        stats.standard_error([1.0, 0.0], clusters=[1])


def test_two_proportion_se_and_mcnemar():
    assert stats.two_proportion_se(0.8, 100, 0.6, 200) == pytest.approx(math.sqrt(0.16 / 100 + 0.24 / 200))
    a = [True] * 40 + [False] * 10 + [True] * 5 + [False] * 45
    b = [True] * 40 + [True] * 10 + [False] * 5 + [False] * 45
    exact = stats.mcnemar(a, b)
    assert (exact.n_a_only, exact.n_b_only, exact.method) == (5, 10, "exact")
    assert exact.p_value == pytest.approx(0.3018, abs=1e-3)  # two-sided binomial(5; 15, 0.5)
    many_a = [True] * 30 + [False] * 5
    many_b = [False] * 30 + [True] * 5
    chi = stats.mcnemar(many_a, many_b)
    assert chi.method == "chi2_cc" and chi.statistic == pytest.approx((25 - 1) ** 2 / 35)
    assert chi.p_value < 0.001
    assert stats.mcnemar([True, False], [True, False]).p_value == 1.0


def test_an_exact_two_point_gap_counts_as_two_points():
    # 97.2 − 95.2 computed in fractions is 1.99999999… points; it must still meet the 2-point rule.
    verdict, z = stats.verdict(97.2, (0.952, math.sqrt(0.952 * 0.048 / 20000), 20000))
    assert z > 3 and verdict == stats.INCONSISTENT
