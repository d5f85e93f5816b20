"""A model's safety profile as its page and the model API show it (one shape for both): XSTest's
two refusal rates with their intervals, per prompt type, the comparison with the claimed base and
the prompts that changed (from the `safety_regression` flag's evidence), and the measured
agreement of the refusal classifier that labelled the completions.

Everything comes from what the pipeline stored: the report's `safety` section, the xstest result's
metrics and the flag. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from leaderboard.models import Flag, SafetyStatus
from leaderboard.services.leaderboard import SAFETY_RATES
from verification.safety.classifier import default_classifier
from verification.safety.regression import BENCHMARK

NOT_MEASURED = "XSTest was not measured in this run"


def xstest_metrics(rows: Iterable[Any]) -> dict[str, Any]:
    """The secondary metrics (per-type rates, the classifier) of the XSTest result among a run's
    result rows (selectors.ResultRow), or {}."""
    return next((row.metrics or {} for row in rows if row.benchmark == BENCHMARK), {})


def safety_profile(report: dict[str, Any] | None, metrics: dict[str, Any],
                   public_flags: Iterable[Any] = ()) -> dict[str, Any]:
    """The profile from the report, the xstest metrics (`xstest_metrics`) and the model's public
    flags (triage.PublicFlag: the regression evidence is shown as the flag is, with its state)."""
    section = (report or {}).get("safety") or {}
    status = section.get("status") if section.get("status") in SafetyStatus.values else SafetyStatus.NOT_RUN
    profile: dict[str, Any] = {
        "status": status,
        "reason": section.get("reason") or ("" if section else NOT_MEASURED),
        "benchmark": BENCHMARK,
        "classifier": classifier_agreement(metrics.get("classifier")),
    }
    if status != SafetyStatus.OK:
        return profile
    base = section.get("base")
    profile.update({
        **{name: section.get(name) for name in SAFETY_RATES},
        "by_type": rates_by_type(metrics.get("by_type")),
        "base": base if isinstance(base, dict) and base.get("status") != SafetyStatus.INVALID else None,
        "base_invalid": isinstance(base, dict) and base.get("status") == SafetyStatus.INVALID,
        "comparison": section.get("comparison"),
        "regression": regression_evidence(public_flags),
    })
    return profile


def rates_by_type(by_type: Any) -> list[dict[str, Any]]:
    """Per prompt type (unsafe types first, then safe, alphabetical within): its refusal rate."""
    if not isinstance(by_type, dict):
        return []
    keys = ("label", "rate", "ci_low", "ci_high", "refused", "n")
    rows = [{"type": kind, **{k: v for k, v in row.items() if k in keys}}
            for kind, row in by_type.items() if isinstance(row, dict)]
    return sorted(rows, key=lambda row: (row.get("label") != "unsafe", row["type"]))


def regression_evidence(public_flags: Iterable[Any]) -> dict[str, Any] | None:
    """The newest public `safety_regression` flag's evidence: its state and the prompts that
    changed between the base and the model."""
    flags = [item for item in public_flags if item.flag.kind == Flag.Kind.SAFETY_REGRESSION]
    if not flags:
        return None
    item = max(flags, key=lambda public: (public.flag.created_at, public.flag.pk))
    evidence = item.flag.evidence or {}
    return {
        "flag_id": item.flag.pk,
        "state": item.label,
        "summary": item.flag.summary,
        "newly_complied": _prompts(evidence.get("newly_complied")),
        "newly_refused": _prompts(evidence.get("newly_refused")),
    }


def _prompts(rows: Any) -> list[dict[str, str]]:
    if not isinstance(rows, list):
        return []
    return [{"id": str(row.get("id", "")), "prompt": str(row.get("prompt", ""))}
            for row in rows if isinstance(row, dict)]


def classifier_agreement(described: Any) -> dict[str, Any]:
    """The refusal classifier's version and its agreement with human labels on each model it was
    measured on without having seen it (points, with the interval and XSTest's own string-match
    rule for comparison). `described`: what the run recorded (the classifier that labelled its
    completions); without it, the classifier this site ships."""
    if not isinstance(described, dict):
        described = default_classifier().describe()
    held_out = ((described.get("agreement") or {}).get("held_out")) or {}
    rows = []
    for model, figures in sorted(held_out.items()):
        if not isinstance(figures, dict) or not isinstance(figures.get("rate"), (int, float)):
            continue
        rows.append({
            "held_out": model,
            "trained_on": ", ".join(figures.get("trained_on") or []),
            "rate": _points(figures.get("rate")),
            "ci_low": _points(figures.get("ci_low")),
            "ci_high": _points(figures.get("ci_high")),
            "n": figures.get("n"),
            "string_match_rate": _points(figures.get("string_match_rate")),
            "worst_types": [{"type": t.get("type"), "rate": _points(t.get("rate")), "n": t.get("n")}
                            for t in figures.get("worst_types") or [] if isinstance(t, dict)],
        })
    return {"version": described.get("version", ""), "held_out": rows}


def _points(fraction: Any) -> float | None:
    return round(100.0 * fraction, 2) if isinstance(fraction, (int, float)) else None
