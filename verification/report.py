"""The verity.report/1 document: what the CLI writes, what a submission stores, what pages show.

Stable interface (other tools read it):
{"schema": "verity.report/1",
 "model": {"source", "revision": sha-or-null, "claimed_base"},
 "intake": {"format", "dtype", "shards", "bytes", "license", "card", ...},
 "benchmarks": {slug: {"measured", "ci_low", "ci_high", "n", "n_errors", "claimed", "z", "verdict", "setup", ...}},
 "base": {slug: {"measured", "ci_low", "ci_high", "n"}} or null,
 "provenance": {...}, "contamination": {...}, "endpoint": {...} or null,
 "flags": [{"kind", "severity", "benchmark", "summary", "evidence"}],
 "missing_checks": [{"check", "status", "reason"}],
 "run": {versions, sampling params, dataset hashes, timings, "checks": [check log]}}

A benchmark entry may also carry "claimed_setup", "verdict_reason", "setup_note" and the claim
bands "consistent_low", "consistent_high", "inconsistent_above" (verification.compare).

Status (`status_for`): "flagged" when a warning or critical flag stands; else "incomplete" when
anything that applies to the submission did not run to its end (`missing_checks`: a check that
was disabled by the operator, not installed, crashed, or reported a status other than "ok" —
an endpoint unreachable or with more than 1% failed requests, a base that could not be
examined —, a part of a check it lists under "missing", or a claim whose setup was not run);
else "verified". A check that was disabled counts as missing: the badge means the same on
every deployment, and an operator's choice is not a property of the model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from verification.vocabulary import (
    CHECK_OK,
    FLAG_KINDS,
    FLAGGED,
    FLAGGING_SEVERITIES,
    INCOMPLETE,
    NOT_COMPARABLE,
    REPORT_SECTIONS,
    SEVERITIES,
    VERDICTS,
    VERIFIED,
)

SCHEMA = "verity.report/1"
TOP_KEYS = (
    "schema",
    "model",
    "intake",
    "benchmarks",
    "base",
    *REPORT_SECTIONS,
    "safety",
    "flags",
    "missing_checks",
    "run",
)
BENCHMARK_KEYS = ("measured", "ci_low", "ci_high", "n", "n_errors", "claimed", "z", "verdict", "setup")


class ReportError(ValueError):
    pass


def build_report(
    *,
    source: str,
    revision: str | None,
    claimed_base: str | None,
    intake: dict[str, Any],
    benchmarks: dict[str, dict[str, Any]],
    base: dict[str, dict[str, Any]] | None,
    sections: dict[str, Any],
    flags: list[dict[str, Any]],
    run: dict[str, Any],
) -> dict[str, Any]:
    report = {
        "schema": SCHEMA,
        "model": {"source": source, "revision": revision, "claimed_base": claimed_base},
        "intake": intake,
        "benchmarks": benchmarks,
        "base": base,
        **_check_sections(sections),
        "safety": sections.get("safety"),
        "flags": sorted(flags, key=_flag_order),
        "missing_checks": [],
        "run": run,
    }
    report["missing_checks"] = missing_checks(report)
    report = to_json_safe(report)  # -inf log-likelihoods or NaN metrics must not break strict JSON
    validate_report(report)
    return report


def _check_sections(sections: dict[str, Any]) -> dict[str, Any]:
    """The later checks' sections; the endpoint one stays null when that check did not apply."""
    return {
        name: sections.get(name) if name == "endpoint" else sections.get(name) or {}
        for name in REPORT_SECTIONS
    }


def status_for(report: dict[str, Any]) -> str:
    """flagged (a warning or critical flag) / incomplete (no such flag, but something that
    applies did not run: `missing_checks`) / verified."""
    if any(f["severity"] in FLAGGING_SEVERITIES for f in report["flags"]):
        return FLAGGED
    return INCOMPLETE if missing_checks(report) else VERIFIED


def missing_checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What applies to this submission but did not run to its end, each as {check, status,
    reason} (the warning a page shows); [] when everything ran. Read from the check log the
    pipeline writes in run.checks (verification.checks.run_checks: each entry says whether its
    check applies) and from the sections; a report with no check log ran no check at all."""
    log = (report.get("run") or {}).get("checks")
    if log is None:
        return [{"check": "checks", "status": "not_run", "reason": "the report records no check"}]
    missing: list[dict[str, Any]] = []
    for entry in log:
        if not entry.get("applies", True):
            continue
        name = entry.get("section") or entry.get("check") or "?"
        section = report.get(name) if name in REPORT_SECTIONS else {}
        status, reason = _check_outcome(entry, section)
        if status != CHECK_OK:
            missing.append({"check": name, "status": status, "reason": reason})
            continue
        missing.extend(
            {"check": name, "status": "partial", "reason": str(part)} for part in (section or {}).get("missing") or []
        )
    return missing + _unjudged_claims(report) + _benchmarks_not_run(report)


def _benchmarks_not_run(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Planned benchmarks that could not be run (HumanEval where no sandbox can be made)."""
    not_run = (report.get("run") or {}).get("not_run") or {}
    return [{"check": slug, "status": "not_run", "reason": str(why)} for slug, why in sorted(not_run.items())]


def _check_outcome(entry: dict[str, Any], section: Any) -> tuple[str, str | None]:
    """(status, reason) of one applicable check: the log's when the check did not return, else
    its section's own status (a section without one ran)."""
    if entry.get("status") != CHECK_OK:
        return str(entry.get("status") or "error"), entry.get("reason") or entry.get("error")
    if not isinstance(section, dict):
        return "not_run", "the check applies but returned no section"
    return str(section.get("status") or CHECK_OK), section.get("reason") or section.get("error")


def _unjudged_claims(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Claims made under a setup that was not run: shown, not judged, so not verified either."""
    return [
        {"check": "claims", "status": NOT_COMPARABLE,
         "reason": f"{slug}: {entry.get('verdict_reason') or 'the claimed setup was not run'}"}
        for slug, entry in sorted((report.get("benchmarks") or {}).items())
        if entry.get("verdict") == NOT_COMPARABLE
    ]


def validate_report(report: dict[str, Any]) -> None:
    """Structural check of a report; raises ReportError naming the first problem."""
    missing = [key for key in TOP_KEYS if key not in report]
    if missing:
        raise ReportError(f"report misses {', '.join(missing)}")
    if report["schema"] != SCHEMA:
        raise ReportError(f"schema is {report['schema']!r}, expected {SCHEMA}")
    for slug, entry in report["benchmarks"].items():
        absent = [key for key in BENCHMARK_KEYS if key not in entry]
        if absent:
            raise ReportError(f"benchmarks.{slug} misses {', '.join(absent)}")
        if entry["verdict"] not in VERDICTS:
            raise ReportError(f"benchmarks.{slug}.verdict {entry['verdict']!r} is not a verdict")
        if not (0 <= entry["ci_low"] <= entry["measured"] <= entry["ci_high"] <= 100):
            raise ReportError(f"benchmarks.{slug}: interval does not bracket the measurement")
    for flag in report["flags"]:
        if (
            flag.get("kind") not in FLAG_KINDS
            or flag.get("severity") not in SEVERITIES
            or not flag.get("summary")
        ):
            raise ReportError(f"malformed flag {flag!r}")
    for item in report["missing_checks"]:
        if not isinstance(item, dict) or not item.get("check") or not item.get("status"):
            raise ReportError(f"malformed missing_checks entry {item!r}")
    json.dumps(report, allow_nan=False, default=str)  # must be strict JSON


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_json_safe(report), indent=2, sort_keys=False, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def to_json_safe(value: Any, max_str_chars: int | None = None) -> Any:
    """Replace NaN/inf (not JSON) by None and Paths/sets by JSON values, recursively. With
    `max_str_chars`, longer strings are cut there (and end in "…"): for text that came from
    outside and is stored and shown."""
    if isinstance(value, dict):
        return {str(k): to_json_safe(v, max_str_chars) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_json_safe(v, max_str_chars) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if max_str_chars is not None and isinstance(value, str) and len(value) > max_str_chars:
        return value[:max_str_chars] + "…"
    return value


# Most serious first.
_SEVERITY_ORDER = {severity: rank for rank, severity in enumerate(reversed(SEVERITIES))}


def _flag_order(flag: dict[str, Any]) -> tuple:
    return (_SEVERITY_ORDER.get(flag["severity"], 3), flag["kind"], flag.get("benchmark") or "")
