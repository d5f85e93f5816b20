"""Claims against measurements (methods.md §1 and §2): one verdict per benchmark and the flags
that follow from the evidence.

- Verdicts come from `verification.stats.verdict` (Wilson/binomial SE, z with SE_d = sqrt(2)·SE,
  Bonferroni over the number of claims checked together).
- A benchmark whose harness error rate is above 1% is not a measurement of the model: its verdict
  is "invalid", it raises `invalid_run`, and it never raises `score_mismatch`.
- `score_mismatch` is raised for an inconsistent claim (critical); a discrepant claim is shown
  with its verdict but not flagged; a claim below the measurement is never flagged.
- The claimed base model's measurement in the same harness gives the uplift; McNemar's test on
  the paired per-item outcomes says whether fine-tune and base differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from verification import stats
from verification.claims import ClaimsDoc

FLAG_KINDS = (
    "score_mismatch",
    "base_model_mismatch",
    "lora_merge",
    "untrained_tokens",
    "contamination",
    "heldout_gap",
    "endpoint_mismatch",
    "weights_changed",
    "invalid_run",
)
SEVERITIES = ("info", "warning", "critical")
INVALID = "invalid"
MAX_ERROR_RATE = 0.01  # methods.md §2 (ours): above this a run is not a measurement


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
        return self.n > 0 and self.error_rate <= MAX_ERROR_RATE

    def summary(self) -> dict[str, Any]:
        """The report's base-section shape."""
        return {"measured": self.measured, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}


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


def compare(
    measurements: Mapping[str, Measurement],
    claims: ClaimsDoc,
    base: Mapping[str, Measurement] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Build the report's `benchmarks` section and the flags it raises."""
    claimed = claims.by_benchmark()
    # Bonferroni over the claims that get a verdict: an invalid run is judged by nothing.
    k_claims = max(1, sum(1 for slug, m in measurements.items() if slug in claimed and m.valid))
    section: dict[str, dict[str, Any]] = {}
    flags: list[dict[str, Any]] = []
    for slug in sorted(measurements):
        m = measurements[slug]
        claim = claimed.get(slug)
        entry: dict[str, Any] = {
            "measured": round(m.measured, 4),
            "ci_low": round(m.ci_low, 4),
            "ci_high": round(m.ci_high, 4),
            "n": m.n,
            "n_errors": m.n_errors,
            "n_unparsed": m.n_unparsed,
            "claimed": claim.score if claim else None,
            "z": None,
            "verdict": stats.UNCLAIMED,
            "setup": dict(m.setup),
            "version": m.version,
            "dataset_hash": m.dataset_hash,
        }
        if m.setup_note:
            entry["setup_note"] = m.setup_note
        if m.metrics:
            entry["metrics"] = m.metrics
        if not m.valid:
            entry["verdict"] = INVALID
            flags.append(_invalid_run_flag(m))
        elif claim is not None:
            verdict, z = stats.verdict(claim.score, (m.measured / 100.0, m.se, m.n), k_benchmarks=k_claims)
            entry["verdict"] = verdict
            entry["z"] = _finite(z)
            if verdict == stats.INCONSISTENT:
                flags.append(_score_mismatch_flag(m, claim.score, z, k_claims))
        base_m = (base or {}).get(slug)
        if base_m is not None:
            entry["base_measured"] = round(base_m.measured, 4)
            entry["uplift"] = round(m.measured - base_m.measured, 4)
            paired = sorted(set(m.item_correct) & set(base_m.item_correct))
            if paired:
                test = stats.mcnemar(
                    [m.item_correct[i] for i in paired], [base_m.item_correct[i] for i in paired]
                )
                entry["mcnemar"] = {**test.as_dict(), "n_paired": len(paired)}
        section[slug] = entry
    return section, flags


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
        "score_mismatch",
        "critical",
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
            "setup": m.setup,
            "benchmark_version": m.version,
            "dataset_hash": m.dataset_hash,
        },
        benchmark=m.benchmark,
    )


def _invalid_run_flag(m: Measurement) -> dict[str, Any]:
    return make_flag(
        "invalid_run",
        "critical",
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
