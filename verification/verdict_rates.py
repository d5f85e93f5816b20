"""How often the claim verdicts go wrong, by simulation through the real judge
(`verification.compare.judge_claim`): the numbers written in verification/METHODS_VERDICTS.md.

- Honest claims: the author's number is one run of the same setup on the same n items (a
  binomial draw at the model's true accuracy, published to 0.1 point), and ours is another; the
  share called inconsistent is the false-flag rate, the share called discrepant is shown
  without a flag. "exact" claims publish the true accuracy itself (no noise on the author's side).
- Over-claims: the author publishes the true accuracy plus a gap; the share called inconsistent
  is the rule's power at that gap.

    .venv/bin/python -m verification.verdict_rates [trials]

prints the tables (seeded: the same numbers every time).
"""

from __future__ import annotations

import sys
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from verification import stats
from verification.compare import Measurement, judge_claim
from verification.vocabulary import CONSISTENT, DISCREPANT, INCONSISTENT

# (true accuracy, items): the benchmarks' sizes (GSM8K 1319, MMLU 14042, ARC-Challenge 1172,
# HumanEval 164, MATH-500 500, GPQA diamond 198) at low, middle and high accuracy.
HONEST_GRID: tuple[tuple[float, int], ...] = (
    (0.30, 164), (0.70, 164), (0.50, 198), (0.40, 500), (0.85, 500), (0.682, 1319),
    (0.95, 1319), (0.60, 1172), (0.65, 14042), (0.90, 14042),
)
OVERCLAIM_GAPS_PTS: tuple[float, ...] = (2.0, 4.0, 6.3, 8.0)
DEFAULT_TRIALS = 20_000
SEED = 20261129


@dataclass(frozen=True)
class Rates:
    p: float
    n: int
    trials: int
    consistent: float
    discrepant: float
    inconsistent: float


def measurement(correct: int, n: int) -> Measurement:
    """Our measurement of `correct` right answers out of `n` (0/1 scores, no harness errors)."""
    p_hat = correct / n
    low, high = stats.wilson_interval(correct, n)
    se = (p_hat * (1 - p_hat) / n) ** 0.5
    return Measurement("sim", "1", {}, 100 * p_hat, min(100 * low, 100 * p_hat), max(100 * high, 100 * p_hat),
                       n, 0, 0, se)


def _draws(seed_parts: tuple, n: int, p: float, trials: int) -> list[int]:
    rng = np.random.default_rng([SEED, zlib.crc32(repr(seed_parts).encode())])
    return [int(x) for x in rng.binomial(n, p, size=trials)]


def _rates(p: float, n: int, trials: int, verdicts: Counter) -> Rates:
    return Rates(p, n, trials, verdicts[CONSISTENT] / trials, verdicts[DISCREPANT] / trials,
                 verdicts[INCONSISTENT] / trials)


def honest_rates(p: float, n: int, trials: int = DEFAULT_TRIALS, *, exact: bool = False) -> Rates:
    """Verdicts on honest claims at true accuracy `p` and `n` items (claims below our number are
    counted with the consistent ones: never flagged)."""
    ours = _draws(("ours", p, n), n, p, trials)
    theirs = [round(n * p)] * trials if exact else _draws(("theirs", p, n), n, p, trials)
    verdicts: Counter = Counter()
    for mine, claim in zip(ours, theirs):
        claimed = round(100 * p, 1) if exact else round(100 * claim / n, 1)
        verdict = judge_claim(claimed, measurement(mine, n)).verdict
        verdicts[verdict if verdict in (DISCREPANT, INCONSISTENT) else CONSISTENT] += 1
    return _rates(p, n, trials, verdicts)


def overclaim_power(p: float, n: int, gap_pts: float, trials: int = DEFAULT_TRIALS) -> float:
    """The share of claims of true accuracy + `gap_pts` that are called inconsistent."""
    claimed = round(100 * p + gap_pts, 1)
    ours = _draws(("over", p, n, gap_pts), n, p, trials)
    return sum(judge_claim(claimed, measurement(mine, n)).verdict == INCONSISTENT for mine in ours) / trials


def family_rate(per_claim: float, m: int) -> float:
    """The chance that at least one of m independent honest claims is flagged."""
    return 1 - (1 - per_claim) ** m


def markdown_tables(trials: int = DEFAULT_TRIALS) -> str:
    lines = [
        f"Honest claims ({trials} simulated per row; one run of the same setup vs ours):", "",
        "| true accuracy | n | consistent or below | discrepant (shown) | inconsistent (flagged) | exact claim flagged |",
        "|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for p, n in HONEST_GRID:
        noisy, exact = honest_rates(p, n, trials), honest_rates(p, n, trials, exact=True)
        worst = max(worst, noisy.inconsistent)
        lines.append(f"| {p:.3g} | {n} | {noisy.consistent:.2%} | {noisy.discrepant:.2%} | "
                     f"{noisy.inconsistent:.3%} | {exact.inconsistent:.3%} |")
    lines += ["", f"Largest per-claim false-flag rate above: {worst:.3%}; a submission of m honest claims is "
              f"flagged somewhere with probability 1 − (1 − rate)^m: {family_rate(worst, 10):.2%} at m = 10.", ""]
    lines += [f"Over-claims at GSM8K's n = 1319, true accuracy 68.2% ({trials} per gap):", "",
              "| claimed above the truth (points) | flagged inconsistent |", "|---|---|"]
    lines += [f"| {gap} | {overclaim_power(0.682, 1319, gap, trials):.1%} |" for gap in OVERCLAIM_GAPS_PTS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(markdown_tables(int(args[0]) if args else DEFAULT_TRIALS))


if __name__ == "__main__":
    main()
