"""Paired comparison of two models on the same items ("A beats B" with an error bar).

When two models answered exactly the same items (same benchmark, version, setup and item ids),
their difference is measured far more precisely from the per-item pairs than from two
independent intervals: items both get right or both get wrong cancel out.

- `mcnemar_exact`: McNemar's exact test, a two-sided binomial test of the discordant pairs
  (b = A right / B wrong, c = B right / A wrong) against p = 1/2: p = min(1, 2·P(X <= min(b, c)))
  with X ~ Binomial(b + c, 1/2). Exact at every count, so no large-sample switch.
- `paired_normal_interval`: the normal interval on the per-item differences d_i = a_i − b_i,
  mean(d) ± z·sd(d)/sqrt(n) (sd with n − 1). For 0/1 items this is the Wald interval for the
  difference of paired proportions, ((b − c) ± z·sqrt(b + c − (b − c)²/n)) / n.
- `newcombe_paired_interval`: for 0/1 items, Newcombe's hybrid score interval for the difference
  of paired proportions (Newcombe 1998, Stat Med 17:2635, method 10): the two Wilson intervals
  combined with the (continuity-corrected) phi correlation of the pairs. Unlike the normal interval it never collapses to
  zero width when every discordant pair goes one way, and it stays within [-1, 1]; it is the
  interval shown for 0/1 items.
- `paired_bootstrap_interval`: percentile bootstrap of mean(d), resampling items (pairs kept
  together), seeded so a page shows the same interval every time.

Pure Python (no numpy/scipy) so the numbers are reproducible anywhere the engine runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054
DEFAULT_BOOTSTRAP_RESAMPLES = 2000


# Up to this many discordant pairs the binomial tail is summed in exact integers; beyond, in
# floating point from the largest term down (exact sums of huge integers took seconds at n ~ 7000).
EXACT_TAIL_MAX_N = 1000


def _binomial_half_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), k <= n / 2."""
    if n <= EXACT_TAIL_MAX_N:
        return sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    log_top = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2.0)
    term, total = 1.0, 1.0
    for i in range(k, 0, -1):  # P(i-1) / P(i) = i / (n - i + 1): terms shrink going down
        term *= i / (n - i + 1)
        total += term
        if term < 1e-17 * total:
            break
    return math.exp(log_top) * total


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts."""
    if a_only < 0 or b_only < 0:
        raise ValueError("discordant counts cannot be negative")
    n = a_only + b_only
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binomial_half_tail(min(a_only, b_only), n))


def _differences(outcomes_a: Sequence[float], outcomes_b: Sequence[float]) -> list[float]:
    if len(outcomes_a) != len(outcomes_b):
        raise ValueError("paired outcomes must have the same length")
    if not outcomes_a:
        raise ValueError("a paired comparison needs at least one item")
    values = [float(a) - float(b) for a, b in zip(outcomes_a, outcomes_b)]
    if any(not math.isfinite(v) or abs(v) > 1.0 for v in values):
        raise ValueError("per-item scores must lie in [0, 1]")
    return values


def paired_normal_interval(
    outcomes_a: Sequence[float], outcomes_b: Sequence[float], z: float = Z95
) -> tuple[float, float, float]:
    """(mean difference, low, high) as fractions, from the per-item differences."""
    diffs = _differences(outcomes_a, outcomes_b)
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, max(-1.0, mean - 1.0), min(1.0, mean + 1.0)  # one item says almost nothing
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    half = z * math.sqrt(variance / n)
    return mean, max(-1.0, mean - half), min(1.0, mean + half)


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired_interval(
    both: int, a_only: int, b_only: int, neither: int, z: float = Z95
) -> tuple[float, float, float]:
    """(difference, low, high) as fractions for paired 0/1 outcomes given as the 2x2 counts."""
    counts = (both, a_only, b_only, neither)
    if any(count < 0 for count in counts) or sum(counts) == 0:
        raise ValueError("paired counts must be non-negative with at least one item")
    n = sum(counts)
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = _wilson(both + a_only, n, z)
    l2, u2 = _wilson(both + b_only, n, z)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    # phi of the 2x2 table, continuity-corrected when positive as Newcombe recommends (a positive
    # correlation narrows the interval; uncorrected, coverage fell to 88% at n = 20 in our
    # simulation, tests/verification/test_paired.py); 0 when a margin is empty.
    agree, disagree = both * neither, a_only * b_only
    if not margins:
        phi = 0.0
    elif agree > disagree:
        phi = max(agree - disagree - n / 2, 0.0) / math.sqrt(margins)
    else:
        phi = (agree - disagree) / math.sqrt(margins)
    down = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    up = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    difference = p1 - p2
    return difference, max(-1.0, difference - down), min(1.0, difference + up)


def paired_bootstrap_interval(
    outcomes_a: Sequence[float],
    outcomes_b: Sequence[float],
    *,
    resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean difference, low, high) as fractions: percentile bootstrap over items."""
    diffs = _differences(outcomes_a, outcomes_b)
    if resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError("resamples must be >= 1 and level in (0, 1)")
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1.0 - level) / 2.0
    low = means[max(0, math.floor(tail * resamples))]
    high = means[min(resamples - 1, math.ceil((1.0 - tail) * resamples) - 1)]
    return sum(diffs) / n, low, high


@dataclass(frozen=True)
class PairedDifference:
    """A − B on the same items, in points (0..100 scale)."""

    n: int
    a_only: int  # items A got right and B wrong
    b_only: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float | None  # McNemar exact (0/1 items only)
    method: str

    @property
    def significant(self) -> bool:
        """At the 5% level: McNemar's exact test for 0/1 items (exact at any n), else the
        interval excluding 0."""
        if self.p_value is not None:
            return self.p_value < 0.05
        return self.ci_low > 0 or self.ci_high < 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedSummary:
    """Everything the paired difference needs, as sums a database can compute without sending the
    items: per-item differences d = a − b over the n paired items."""

    n: int
    both: int  # items both got fully right (score 1)
    a_only: int  # items where A scored higher
    b_only: int  # items where B scored higher
    sum_d: float
    sum_d2: float
    binary: bool  # every score is 0 or 1


def summarize(outcomes_a: Sequence[float], outcomes_b: Sequence[float]) -> PairedSummary:
    diffs = _differences(outcomes_a, outcomes_b)
    pairs = [(float(a), float(b)) for a, b in zip(outcomes_a, outcomes_b)]
    return PairedSummary(
        n=len(diffs), both=sum(1 for a, b in pairs if a == b == 1.0), a_only=sum(1 for a, b in pairs if a > b),
        b_only=sum(1 for a, b in pairs if b > a), sum_d=sum(diffs), sum_d2=sum(d * d for d in diffs),
        binary=all(x in (0.0, 1.0) for pair in pairs for x in pair),
    )


def difference_from_summary(summary: PairedSummary, z: float = Z95) -> PairedDifference:
    """The paired difference A − B. For 0/1 items: Newcombe's paired interval and McNemar's exact
    p-value; with partial credit: the normal interval on the per-item differences."""
    n = summary.n
    if n < 1:
        raise ValueError("a paired comparison needs at least one item")
    mean = summary.sum_d / n
    if summary.binary:
        neither = n - summary.both - summary.a_only - summary.b_only
        mean, low, high = newcombe_paired_interval(summary.both, summary.a_only, summary.b_only, neither, z)
    elif n < 2:
        low, high = max(-1.0, mean - 1.0), min(1.0, mean + 1.0)
    else:
        variance = max(0.0, (summary.sum_d2 - n * mean * mean) / (n - 1))
        half = z * math.sqrt(variance / n)
        low, high = max(-1.0, mean - half), min(1.0, mean + half)
    return PairedDifference(
        n=n, a_only=summary.a_only, b_only=summary.b_only,
        diff=100.0 * mean, ci_low=100.0 * low, ci_high=100.0 * high,
        p_value=mcnemar_exact(summary.a_only, summary.b_only) if summary.binary else None,
        method="mcnemar_exact+newcombe_paired" if summary.binary else "paired_normal",
    )


def paired_difference(outcomes_a: Sequence[float], outcomes_b: Sequence[float]) -> PairedDifference:
    """`difference_from_summary` of two lists of per-item scores in the same item order."""
    return difference_from_summary(summarize(outcomes_a, outcomes_b))
