"""The verity.report/1 document: what the CLI writes, what a submission stores, what pages show.

Stable interface (other tools read it):
{"schema": "verity.report/1",
 "model": {"source", "revision": sha-or-null, "claimed_base"},
 "intake": {"format", "dtype", "shards", "bytes", "license", "card", ...},
 "benchmarks": {slug: {"measured", "ci_low", "ci_high", "n", "n_errors", "claimed", "z", "verdict", "setup", ...}},
 "base": {slug: {"measured", "ci_low", "ci_high", "n"}} or null,
 "provenance": {...}, "contamination": {...}, "endpoint": {...} or null,
 "flags": [{"kind", "severity", "benchmark", "summary", "evidence"}],
 "run": {versions, sampling params, dataset hashes, timings}}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from verification.compare import FLAG_KINDS, INVALID, SEVERITIES
from verification.stats import VERDICTS

SCHEMA = "verity.report/1"
TOP_KEYS = (
    "schema",
    "model",
    "intake",
    "benchmarks",
    "base",
    "provenance",
    "contamination",
    "endpoint",
    "flags",
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
        "provenance": sections.get("provenance") or {},
        "contamination": sections.get("contamination") or {},
        "endpoint": sections.get("endpoint"),
        "flags": sorted(flags, key=_flag_order),
        "run": run,
    }
    report = to_json_safe(report)  # -inf log-likelihoods or NaN metrics must not break strict JSON
    validate_report(report)
    return report


def status_for(report: dict[str, Any]) -> str:
    """verified (no warning or critical flag) / flagged."""
    return "flagged" if any(f["severity"] in ("warning", "critical") for f in report["flags"]) else "verified"


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
        if entry["verdict"] not in (*VERDICTS, INVALID):
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
    json.dumps(report, allow_nan=False, default=str)  # must be strict JSON


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_json_safe(report), indent=2, sort_keys=False, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def to_json_safe(value: Any) -> Any:
    """Replace NaN/inf (not JSON) and Paths/sets by JSON-safe values."""
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def _flag_order(flag: dict[str, Any]) -> tuple:
    return (_SEVERITY_ORDER.get(flag["severity"], 3), flag["kind"], flag.get("benchmark") or "")
