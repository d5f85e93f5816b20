"""Statistics for claimed-vs-measured verdicts (methods.md §1).

- Wilson score interval (Wilson 1927), preferred to the normal approximation below a few hundred
  items and the only one of the two that has a real width at p̂ = 0 or 1.
- Standard errors: binomial for 0/1 scores, sample variance for partial-credit scores (MC2,
  IFEval loose), cluster-robust when items share a group (Miller, "Adding Error Bars to Evals",
  arXiv 2411.00640, eq. for clustered SE).
- z = (claimed − p̂)/SE_d with SE_d = sqrt(2)·SE when the claim came from one run of its own
  (both sides are noisy; our choice, methods.md §1).
- Verdict thresholds 2 and 3 at one benchmark, Bonferroni-corrected for k benchmarks: the
  thresholds are the two-sided normal quantiles for α/k where α is the tail mass beyond 2 (resp. 3).
  k is a mechanism here; the family is fixed in one place, verification.compare.claims_family_size
  (every claim on its own: k = 1).
- The claim bands a page shows (`claim_bands`) come from the same thresholds as the verdict.
- McNemar's test on paired per-item outcomes (exact binomial below 25 discordant pairs, else the
  continuity-corrected chi-square).

All proportions here are fractions in [0, 1] unless a name says `_pts` (percentage points).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scipy import stats as _scipy_stats

from verification.vocabulary import CLAIMED_BELOW, CONSISTENT, DISCREPANT, INCONSISTENT, UNCLAIMED

Z95 = 1.959963984540054

# The verdict thresholds at k = 1 (methods.md §1) and the two-sided tail masses they stand for.
BASE_CONSISTENT_Z = 2.0
BASE_INCONSISTENT_Z = 3.0
# An inconsistent verdict also needs a gap that matters in practice, not only a tiny SE.
MIN_INCONSISTENT_GAP_PTS = 2.0


def wilson_interval(k_or_sum: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (k may be a sum of partial scores).

    At k = 0 the lower bound is 0 and the upper bound is > 0 (and symmetrically at k = n), so a
    measured 0% or 100% still carries its uncertainty."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(k_or_sum / n, 0.0), 1.0)
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if p == 0.0 else max(0.0, centre - half)
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return low, high


def wilson_se(k_or_sum: float, n: int, z: float = Z95) -> float:
    """An SE read off the Wilson interval (half its width / z). Used where the binomial SE
    collapses to 0 (p̂ = 0 or 1), so a 1% claim against 0/50 is not 'infinitely' far."""
    low, high = wilson_interval(k_or_sum, n, z)
    return (high - low) / (2 * z)


def _is_binary(scores: Sequence[float]) -> bool:
    return all(s in (0.0, 1.0) for s in scores)


def standard_error(
    scores: Sequence[float], clusters: Sequence[Hashable] | None = None
) -> float:
    """SE of the mean score.

    0/1 scores: sqrt(p̂(1−p̂)/n). Partial-credit scores: sqrt(s²/n) with the sample variance s²
    (ddof = 1). With `clusters` (one label per item), the cluster-robust SE
    sqrt(Σ_c (Σ_{i∈c}(x_i − x̄))²) / n (Miller 2024), which reduces to the plain SE when every
    cluster has one item (up to the ddof). At p̂ ∈ {0, 1} the binomial SE is 0; callers wanting
    a usable SE there use `effective_se`."""
    n = len(scores)
    if n == 0:
        return 0.0
    mean = sum(scores) / n
    if clusters is not None:
        if len(clusters) != n:
            raise ValueError("clusters must have one label per score")
        sums: dict[Hashable, float] = {}
        for score, label in zip(scores, clusters):
            sums[label] = sums.get(label, 0.0) + (score - mean)
        return math.sqrt(sum(v * v for v in sums.values())) / n
    if _is_binary(scores):
        return math.sqrt(mean * (1 - mean) / n)
    if n < 2:
        return 0.0
    variance = sum((s - mean) ** 2 for s in scores) / (n - 1)
    return math.sqrt(variance / n)


def effective_se(p_hat: float, se: float, n: int) -> float:
    """The SE used for verdicts: the given SE, or the Wilson-based SE when it is 0 (p̂ = 0 or 1,
    or all partial scores equal)."""
    if se > 0 or n <= 0:
        return se
    return wilson_se(p_hat * n, n)


def difference_se(p_hat: float, se: float, n: int, *, claim_from_single_run: bool = True) -> float:
    """SE_d, the SE of claimed − p̂: the measurement's (effective) SE, times sqrt(2) when the
    claim is itself one noisy run of the same size."""
    se_used = effective_se(p_hat, se, n)
    return se_used * math.sqrt(2) if claim_from_single_run else se_used


def claim_z(
    claimed: float, p_hat: float, se: float, n: int = 0, *, claim_from_single_run: bool = True
) -> float:
    """z = (claimed − p̂)/SE_d, fractions in [0, 1]; SE_d = sqrt(2)·SE when the claim is itself
    one noisy run. Returns ±inf only when no SE can be had at all (n = 0)."""
    se_used = difference_se(p_hat, se, n, claim_from_single_run=claim_from_single_run)
    diff = claimed - p_hat
    if se_used <= 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / se_used


def bonferroni_thresholds(k_benchmarks: int = 1) -> tuple[float, float]:
    """(consistent, inconsistent) |z| thresholds for k benchmarks checked together."""
    k = max(1, int(k_benchmarks))
    if k == 1:
        return BASE_CONSISTENT_Z, BASE_INCONSISTENT_Z
    alpha_consistent = 2 * _scipy_stats.norm.sf(BASE_CONSISTENT_Z)
    alpha_inconsistent = 2 * _scipy_stats.norm.sf(BASE_INCONSISTENT_Z)
    return (
        float(_scipy_stats.norm.isf(alpha_consistent / (2 * k))),
        float(_scipy_stats.norm.isf(alpha_inconsistent / (2 * k))),
    )


class _OutcomeLike(Protocol):
    measured: float  # points
    se: float  # fraction
    n: int


def verdict(
    claimed_pts: float | None,
    outcome: _OutcomeLike | tuple[float, float, int],
    k_benchmarks: int = 1,
    *,
    claim_from_single_run: bool = True,
) -> tuple[str, float | None]:
    """Verdict for one claim. `outcome` is a BenchmarkOutcome (measured in points, se as a
    fraction, n) or a tuple (p̂ fraction, se fraction, n). Returns (verdict, z)."""
    if isinstance(outcome, tuple):
        p_hat, se, n = outcome
    else:
        p_hat, se, n = outcome.measured / 100.0, outcome.se, outcome.n
    if claimed_pts is None:
        return UNCLAIMED, None
    if n <= 0:
        raise ValueError("no items were measured: there is no evidence to compare a claim with")
    claimed = claimed_pts / 100.0
    z = claim_z(claimed, p_hat, se, n, claim_from_single_run=claim_from_single_run)
    consistent_z, inconsistent_z = bonferroni_thresholds(k_benchmarks)
    if abs(z) <= consistent_z:
        return CONSISTENT, z
    if z < 0:
        # A claim below our measurement is reported, never flagged.
        return CLAIMED_BELOW, z
    # Rounded: claimed and p̂ arrive in different units, and 97.2 − 95.2 must count as 2 points.
    gap_pts = round((claimed - p_hat) * 100.0, 9)
    if z > inconsistent_z and gap_pts >= MIN_INCONSISTENT_GAP_PTS:
        return INCONSISTENT, z
    return DISCREPANT, z


@dataclass(frozen=True)
class ClaimBands:
    """The claims (fractions) each verdict covers for one measurement, from the same thresholds
    as `verdict` (k_benchmarks = 1): what a page shows beside the measurement's 95% interval."""

    consistent_low: float  # a claim in [consistent_low, consistent_high] is consistent
    consistent_high: float
    inconsistent_above: float  # a claim above this is inconsistent (flagged)


def claim_bands(p_hat: float, se: float, n: int, k_benchmarks: int = 1) -> ClaimBands:
    """The consistent band p̂ ± t_c·SE_d and the inconsistent line max(p̂ + t_i·SE_d, p̂ + 2 points),
    clipped to [0, 1] (the line may lie above 1: no claim can be inconsistent then)."""
    if n <= 0:
        raise ValueError("no items were measured: there is no band of consistent claims")
    se_d = difference_se(p_hat, se, n)
    consistent_z, inconsistent_z = bonferroni_thresholds(k_benchmarks)
    return ClaimBands(
        consistent_low=max(0.0, p_hat - consistent_z * se_d),
        consistent_high=min(1.0, p_hat + consistent_z * se_d),
        inconsistent_above=max(p_hat + inconsistent_z * se_d, p_hat + MIN_INCONSISTENT_GAP_PTS / 100.0),
    )


def two_proportion_se(p1: float, n1: int, p2: float, n2: int) -> float:
    """SE of p1 − p2 for independent samples: sqrt(p1q1/n1 + p2q2/n2) (methods.md §3)."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both samples need at least one item")
    return math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)


@dataclass(frozen=True)
class McNemarResult:
    n_a_only: int  # a correct, b wrong
    n_b_only: int  # b correct, a wrong
    statistic: float
    p_value: float
    method: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_a_only": self.n_a_only,
            "n_b_only": self.n_b_only,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "method": self.method,
        }


def mcnemar(outcomes_a: Sequence[bool], outcomes_b: Sequence[bool]) -> McNemarResult:
    """McNemar's test on paired per-item outcomes (same items, two models).

    Exact two-sided binomial test on the discordant pairs when there are fewer than 25 of them,
    else chi-square with continuity correction, (|b − c| − 1)² / (b + c), 1 d.o.f."""
    if len(outcomes_a) != len(outcomes_b):
        raise ValueError("paired outcomes must have the same length")
    a_only = sum(1 for a, b in zip(outcomes_a, outcomes_b) if a and not b)
    b_only = sum(1 for a, b in zip(outcomes_a, outcomes_b) if b and not a)
    discordant = a_only + b_only
    if discordant == 0:
        return McNemarResult(a_only, b_only, 0.0, 1.0, "exact")
    if discordant < 25:
        p_value = float(_scipy_stats.binomtest(a_only, discordant, 0.5).pvalue)
        return McNemarResult(a_only, b_only, float(min(a_only, b_only)), min(1.0, p_value), "exact")
    statistic = (abs(a_only - b_only) - 1) ** 2 / discordant
    p_value = float(_scipy_stats.chi2.sf(statistic, 1))
    return McNemarResult(a_only, b_only, float(statistic), p_value, "chi2_cc")
