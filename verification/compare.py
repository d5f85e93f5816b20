"""Claims against measurements (methods.md §1 and §2): one verdict per benchmark and the flags
that follow from the evidence. The rules are written out, with their false-flag rates, in
verification/METHODS_VERDICTS.md.

- `judge_claim` is the one place a claim's verdict is decided (the report and maintainers'
  re-comparisons both call it). Verdicts come from `verification.stats.verdict` (Wilson/binomial
  SE, z with SE_d = sqrt(2)·SE) with the family fixed by `claims_family_size`: every claim is
  judged on its own (k = 1), so no other claim of the submitter can move its verdict.
- A claim is judged only against what was reproduced: a claim whose stated setup (shots,
  chain-of-thought, chat template) differs from the setup measured is "not_comparable", shown
  with the setup that was run and its number, never judged and never flagged.
- A benchmark whose harness error rate is above 1% is not a measurement of the model: its verdict
  is "invalid", it raises `invalid_run` and nothing else, and it feeds no comparison (no uplift
  against the base, and the checks never see it: see `is_valid_entry`).
- `score_mismatch` is raised for an inconsistent claim (critical); a discrepant claim is shown
  with its verdict but not flagged; a claim below the measurement is never flagged.
- Each valid entry shows, beside the measurement's 95% Wilson interval, the band of claims that
  are consistent and the line above which a claim is inconsistent (`stats.claim_bands`); a claim
  outside the 95% interval yet called consistent carries a `verdict_reason` saying why.
- The claimed base model's measurement in the same harness gives the uplift; McNemar's test on
  the paired per-item outcomes says whether fine-tune and base differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from verification import stats
from verification.claims import ClaimSpec, ClaimsDoc
from verification.vocabulary import (
    CONSISTENT,
    CRITICAL,
    DISCREPANT,
    FLAG_KINDS,
    INCONSISTENT,
    INVALID,
    INVALID_RUN,
    MAX_ERROR_RATE,
    NOT_COMPARABLE,
    SCORE_MISMATCH,
    SEVERITIES,
    UNCLAIMED,
)


@dataclass
class Measurement:
    """One benchmark measured on one model under one setup."""

    benchmark: str
    version: str
    setup: dict[str, Any]
    measured: float  # points, 0..100 (errors and unparsed answers scored 0)
    ci_low: float
    ci_high: float
    n: int
    n_errors: int
    n_unparsed: int
    se: float  # standard error as a fraction
    dataset_hash: str = ""
    item_correct: dict[int, bool] = field(default_factory=dict)  # index -> correct, for McNemar
    setup_note: str | None = None  # e.g. "claimed setup unsupported, measured under ours"
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.n_errors / self.n if self.n else 0.0

    @property
    def valid(self) -> bool:
        return is_measurement(self.n, self.n_errors)

    def summary(self) -> dict[str, Any]:
        """The report's base-section shape."""
        return {
            "measured": self.measured, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n,
            "n_errors": self.n_errors, "valid": self.valid,
        }


def is_measurement(n: int, n_errors: int) -> bool:
    """methods.md §2: a run whose harness failed on more than MAX_ERROR_RATE of its items (or
    that measured nothing) is not a measurement of the model."""
    return n > 0 and n_errors / n <= MAX_ERROR_RATE


def is_valid_entry(entry: Mapping[str, Any]) -> bool:
    """Whether a report entry (the `benchmarks` or `base` section's) stands for a measurement;
    an entry that records no item count (a base section written before `n_errors` was) is
    judged by its verdict and `valid` alone."""
    if entry.get("verdict") == INVALID or entry.get("valid") is False:
        return False
    if "n" not in entry:
        return True
    return is_measurement(int(entry.get("n") or 0), int(entry.get("n_errors") or 0))


def setup_matches(claimed_setup: Mapping[str, Any], measured_setup: Mapping[str, Any]) -> bool:
    """A measurement reproduces a claim's setup when it agrees on every setting the claim states
    (a claim that states none is judged under the setup measured, the platform's standard)."""
    return all(key in measured_setup and measured_setup[key] == value for key, value in claimed_setup.items())


def measurement_from_scores(
    benchmark: str,
    version: str,
    setup: dict[str, Any],
    scores: Mapping[int, float],
    errors: Sequence[int] | set[int],
    unparsed: Sequence[int] | set[int],
    *,
    dataset_hash: str = "",
    correct: Mapping[int, bool] | None = None,
    partial_credit: bool = False,
    clusters: Mapping[int, Any] | None = None,
    setup_note: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> Measurement:
    """Aggregate per-item scores (index -> 0..1; errored items score 0) into a Measurement."""
    indexes = sorted(scores)
    values = [0.0 if i in set(errors) else float(scores[i]) for i in indexes]
    n = len(values)
    total = sum(values)
    low, high = stats.wilson_interval(total, n)
    cluster_labels = [clusters[i] for i in indexes] if clusters else None
    se = stats.standard_error(values, cluster_labels) if n else 0.0
    measured = 100.0 * total / n if n else 0.0
    correct_map = dict(correct) if correct is not None else {i: scores[i] >= 1.0 for i in indexes}
    return Measurement(
        benchmark=benchmark,
        version=version,
        setup=dict(setup),
        measured=measured,
        ci_low=min(100.0 * low, measured),
        ci_high=max(100.0 * high, measured),
        n=n,
        n_errors=len(set(errors)),
        n_unparsed=len(set(unparsed)),
        se=se,
        dataset_hash=dataset_hash,
        item_correct={i: bool(correct_map.get(i)) and i not in set(errors) for i in indexes},
        setup_note=setup_note,
        metrics=dict(metrics or {}),
    )


def make_flag(
    kind: str,
    severity: str,
    summary: str,
    evidence: dict[str, Any] | None = None,
    benchmark: str | None = None,
) -> dict[str, Any]:
    if kind not in FLAG_KINDS:
        raise ValueError(f"unknown flag kind {kind!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    if not summary:
        raise ValueError("a flag needs a summary")
    return {
        "kind": kind,
        "severity": severity,
        "benchmark": benchmark,
        "summary": summary,
        "evidence": evidence or {},
    }


@dataclass(frozen=True)
class Judgement:
    """A claim judged against one measurement."""

    verdict: str
    z: float | None  # as reported: rounded, and finite (see _finite)
    flag: dict[str, Any] | None  # the score_mismatch or invalid_run flag it raises, if any
    reason: str | None = None  # why, where the verdict alone would mislead (see _verdict_reason)


# Every claim is a family of its own (see claims_family_size).
PER_CLAIM_FAMILY = 1


def claims_family_size(*_ignored: Any) -> int:
    """k of the Bonferroni correction: 1, whatever the submitter claims.

    The family is fixed by the platform, never by the submission: when k counted the submitter's
    own claims, eight honest low claims on other benchmarks turned an inconsistent GSM8K claim
    (74.5 claimed, 68.2 measured, n = 1319, z = 3.46) into a merely discrepant one. Of the two
    fixed families, the per-claim one is chosen over "every claimable benchmark" (k = 10 today,
    inconsistent line 3.64) because
    - a flag is a statement about one published number, and its reader needs that number's own
      error rate: honest claims (one run of the same setup) are flagged at most 0.28% of the
      time per claim (nominal P(Z > 3) = 0.135%; simulated at the benchmarks' n in
      METHODS_VERDICTS.md, `python -m verification.verdict_rates`), and a submission of m such
      claims at most 1 − (1 − 0.0028)^m (2.8% for all ten claimable benchmarks);
    - the line does not move when a benchmark is added to the registry, so verdicts stay
      comparable across time;
    - with k = 10 the issue's 6.3-point over-claim at n = 1319 would go unflagged.
    Arguments (the old signature's claims and measurements) are accepted and ignored."""
    return PER_CLAIM_FAMILY


def judge_claim(
    claimed: float | None,
    m: Measurement,
    k: int | None = None,
    *,
    claimed_setup: Mapping[str, Any] | None = None,
) -> Judgement:
    """The verdict on one claim (points, or None when nothing is claimed) made under
    `claimed_setup` (the settings the author stated; None or {}: none stated) against
    measurement `m`. `k` may only repeat `claims_family_size()`: the family is not the caller's
    choice."""
    family = claims_family_size()
    if k is not None and k != family:
        raise ValueError(f"the multiple-comparison family is fixed at k = {family}, got k = {k}")
    if not m.valid:
        return Judgement(INVALID, None, _invalid_run_flag(m))
    if claimed is None:
        return Judgement(UNCLAIMED, None, None)
    if claimed_setup and not setup_matches(claimed_setup, m.setup):
        return Judgement(NOT_COMPARABLE, None, None, _not_comparable_reason(claimed_setup, m))
    verdict, z = stats.verdict(claimed, (m.measured / 100.0, m.se, m.n), k_benchmarks=family)
    flag = _score_mismatch_flag(m, claimed, z, family) if verdict == INCONSISTENT else None
    return Judgement(verdict, _finite(z), flag, _verdict_reason(verdict, claimed, m))


def _not_comparable_reason(claimed_setup: Mapping[str, Any], m: Measurement) -> str:
    return (
        f"claimed under {dict(claimed_setup)}, which was not run; measured {m.measured:.1f} under "
        f"{dict(m.setup)} (harness and prompt setups move scores by several points, so the claim is not judged)"
    )


def _verdict_reason(verdict: str, claimed: float, m: Measurement) -> str | None:
    """The display's explanation where the 95% interval alone would mislead: a consistent claim
    outside it, or a discrepant claim that raises no flag."""
    bands = _bands(m)
    band = f"{bands['consistent_low']:.1f}–{bands['consistent_high']:.1f}"
    if verdict == CONSISTENT and not m.ci_low <= claimed <= m.ci_high:
        return (
            f"outside the measurement's 95% interval ({m.ci_low:.1f}–{m.ci_high:.1f}) but within the "
            f"consistent band {band}: the claim is itself one run with its own sampling error, so it "
            f"is compared with SE_d = sqrt(2)·SE"
        )
    if verdict == DISCREPANT:
        return (
            f"outside the consistent band {band} but not above {bands['inconsistent_above']:.1f}, "
            f"the line for an inconsistent claim: shown, not flagged"
        )
    return None


def _bands(m: Measurement) -> dict[str, float]:
    """`stats.claim_bands` in points, for a valid measurement."""
    bands = stats.claim_bands(m.measured / 100.0, m.se, m.n, k_benchmarks=claims_family_size())
    return {name: round(100.0 * value, 4) for name, value in asdict(bands).items()}


def compare(
    measurements: Mapping[str, Measurement],
    claims: ClaimsDoc,
    base: Mapping[str, Measurement] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Build the report's `benchmarks` section and the flags it raises."""
    claimed = claims.by_benchmark()
    section: dict[str, dict[str, Any]] = {}
    flags: list[dict[str, Any]] = []
    for slug in sorted(measurements):
        m = measurements[slug]
        claim = claimed.get(slug)
        judgement = (
            judge_claim(claim.score, m, claimed_setup=claim.setup()) if claim else judge_claim(None, m)
        )
        if judgement.flag is not None:
            flags.append(judgement.flag)
        section[slug] = _benchmark_entry(m, claim, judgement)
        base_m = (base or {}).get(slug)
        if base_m is not None:
            section[slug].update(_uplift(m, base_m))
    return section, flags


def _benchmark_entry(m: Measurement, claim: ClaimSpec | None, judgement: Judgement) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "measured": round(m.measured, 4),
        "ci_low": round(m.ci_low, 4),
        "ci_high": round(m.ci_high, 4),
        "n": m.n,
        "n_errors": m.n_errors,
        "n_unparsed": m.n_unparsed,
        "claimed": claim.score if claim else None,
        "z": judgement.z,
        "verdict": judgement.verdict,
        "setup": dict(m.setup),
        "version": m.version,
        "dataset_hash": m.dataset_hash,
    }
    if claim is not None and claim.setup():
        entry["claimed_setup"] = claim.setup()
    if judgement.reason:
        entry["verdict_reason"] = judgement.reason
    if m.valid:
        entry.update(_bands(m))
    if m.setup_note:
        entry["setup_note"] = m.setup_note
    if m.metrics:
        entry["metrics"] = m.metrics
    return entry


def _uplift(m: Measurement, base_m: Measurement) -> dict[str, Any]:
    """The fine-tune against its claimed base in the same harness, with McNemar's test on the
    items both answered; nothing is compared when either run is invalid."""
    if not (m.valid and base_m.valid):
        which = "the base's run" if m.valid else "this run"
        return {"uplift_note": f"{which} is invalid (harness errors above {100 * MAX_ERROR_RATE:.0f}%): no uplift"}
    out: dict[str, Any] = {
        "base_measured": round(base_m.measured, 4),
        "uplift": round(m.measured - base_m.measured, 4),
    }
    paired = sorted(set(m.item_correct) & set(base_m.item_correct))
    if paired:
        test = stats.mcnemar([m.item_correct[i] for i in paired], [base_m.item_correct[i] for i in paired])
        out["mcnemar"] = {**test.as_dict(), "n_paired": len(paired)}
    return out


def base_section(base: Mapping[str, Measurement] | None) -> dict[str, dict[str, Any]] | None:
    if base is None:
        return None
    return {
        slug: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.summary().items()}
        for slug, m in sorted(base.items())
    }


def _score_mismatch_flag(m: Measurement, claimed: float, z: float, k_claims: int) -> dict[str, Any]:
    _, inconsistent_z = stats.bonferroni_thresholds(k_claims)
    return make_flag(
        SCORE_MISMATCH,
        CRITICAL,
        f"{m.benchmark}: claimed {claimed:.1f}, measured {m.measured:.1f} "
        f"(95% CI {m.ci_low:.1f}–{m.ci_high:.1f}, n={m.n}); the claim is inconsistent with the measurement",
        {
            "claimed": claimed,
            "measured": m.measured,
            "ci_low": m.ci_low,
            "ci_high": m.ci_high,
            "n": m.n,
            "z": _finite(z),
            "z_threshold": inconsistent_z,
            "k_benchmarks": k_claims,
            "family": "per_claim",
            "setup": m.setup,
            "benchmark_version": m.version,
            "dataset_hash": m.dataset_hash,
        },
        benchmark=m.benchmark,
    )


def _invalid_run_flag(m: Measurement) -> dict[str, Any]:
    return make_flag(
        INVALID_RUN,
        CRITICAL,
        f"{m.benchmark}: {m.n_errors} of {m.n} items failed in the harness ({100 * m.error_rate:.1f}% > "
        f"{100 * MAX_ERROR_RATE:.0f}%); the numbers are not a measurement of the model",
        {"n": m.n, "n_errors": m.n_errors, "error_rate": m.error_rate, "max_error_rate": MAX_ERROR_RATE},
        benchmark=m.benchmark,
    )


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: an infinite z (no SE at all) is reported as a large finite number."""
    if value is None:
        return None
    if math.isinf(value):
        return math.copysign(1e9, value)
    return round(value, 4)
