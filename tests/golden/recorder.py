"""Run `verify` the way a user does and reduce its verity.report/1 to what must not change.

Used by tests/golden/test_golden_reports.py both to record the golden files and to compare
with them. The reduction (`digest`) keeps verdicts, flags (kind, severity, benchmark, summary),
measurements (measured, ci, n, n_errors, n_unparsed, ...) and each section's verdict-like
fields; it drops what legitimately differs between runs or machines (timings, package, Python
and code versions, paths, ports, the run log, per-item evidence).

`run_verify` goes through a command-line entry, never through the engine's internals, so the
same golden files judge the code before and after a change of the engine's API:
- `python -m verification verify ...` (verification.cli.main) when the engine's CLI has it;
- otherwise `python manage.py verify ...` (Django's call_command, in this process).
VERITY_GOLDEN_ENTRY=engine|manage forces one of them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD_ENV = "VERITY_RECORD_GOLDEN"
ENTRY_ENV = "VERITY_GOLDEN_ENTRY"
DUMP_ENV = "VERITY_GOLDEN_DUMP"
GOLDEN_DIR = Path(__file__).resolve().parent / "reports"
# Measurements are rounded to 4 decimals by the engine; anything below this is float noise.
ABS_TOLERANCE = 1e-4
REL_TOLERANCE = 1e-6


def recording() -> bool:
    return os.environ.get(RECORD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


# --- the cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One `verify` invocation. `endpoint` may contain "{fault_server}", replaced by the test's
    fault server base URL (its port changes every run)."""

    name: str
    source: str
    benchmarks: str
    limit: int
    checks: str  # VERITY_CHECKS: which report sections run
    claims: Mapping[str, Any] = field(default_factory=dict)
    candidates: Sequence[str] = ()
    endpoint: str | None = None
    expected_kinds: Sequence[str] = ()  # the flag kinds this case exists for (checked while recording too)

    def arguments(self, claims_path: Path, out_path: Path, endpoint_base: str | None = None) -> list[str]:
        args = [
            self.source,
            "--claims", str(claims_path),
            "--benchmarks", self.benchmarks,
            "--limit", str(self.limit),
            "--backend", "transformers",
            "--json", str(out_path),
        ]
        for candidate in self.candidates:
            args += ["--candidate", candidate]
        if self.endpoint:
            args += ["--endpoint", self.endpoint.format(fault_server=endpoint_base or "")]
        return args


# --- running ----------------------------------------------------------------------------------------


class VerifyFailed(AssertionError):
    pass


def engine_cli_has_verify() -> bool:
    """Whether `python -m verification verify` exists (asked through its own --help)."""
    from verification import cli

    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            code = cli.main(["verify", "--help"])
    except SystemExit as exit_:
        code = exit_.code
    return code in (0, None)


def entry_point() -> str:
    forced = os.environ.get(ENTRY_ENV, "").strip().lower()
    if forced in {"engine", "manage"}:
        return forced
    return "engine" if engine_cli_has_verify() else "manage"


def run_verify(args: list[str], out_path: Path) -> dict[str, Any]:
    """Run `verify ARGS` in this process and return the report it wrote to `out_path`."""
    entry = entry_point()
    if entry == "engine":
        from verification import cli

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["verify", *args])
        if code not in (0, None):
            raise VerifyFailed(f"verify exited {code}: {err.getvalue()[-3000:]}")
    else:
        from django.core.management import CommandError, call_command

        try:
            call_command("verify", *args, stderr=io.StringIO())
        except CommandError as error:
            raise VerifyFailed(f"manage.py verify failed: {error}") from None
    return json.loads(out_path.read_text(encoding="utf-8"))


# --- the reduction ----------------------------------------------------------------------------------

_MASKS = (
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"/(?:tmp|var/tmp|work)/[^\s'\"),;]*"), "<path>"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "<sha>"),
)

BENCHMARK_FIELDS = (
    "measured", "ci_low", "ci_high", "n", "n_errors", "n_unparsed", "claimed", "z", "verdict",
    "setup", "version", "dataset_hash", "setup_note", "base_measured", "uplift",
)
BASE_FIELDS = ("measured", "ci_low", "ci_high", "n")
FLAG_FIELDS = ("kind", "severity", "benchmark", "summary")


def mask(value: Any) -> Any:
    """Strings with ports, temporary paths and commit shas replaced by placeholders."""
    if isinstance(value, str):
        for pattern, replacement in _MASKS:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def _pick(source: Mapping[str, Any] | None, keys: Sequence[str]) -> dict[str, Any]:
    source = source or {}
    return {key: source[key] for key in keys if key in source}


def digest(report: dict[str, Any]) -> dict[str, Any]:
    """The parts of a report that the golden files pin down."""
    flags = report.get("flags") or []
    reduced = mask({
        "schema": report.get("schema"),
        "model": _pick(report.get("model"), ("source", "claimed_base")),
        "status": "flagged" if any(f.get("severity") in ("warning", "critical") for f in flags) else "verified",
        "intake": report.get("intake"),
        "benchmarks": {
            slug: _pick(entry, BENCHMARK_FIELDS)
            | ({"mcnemar_p": entry["mcnemar"].get("p_value")} if isinstance(entry.get("mcnemar"), dict) else {})
            for slug, entry in sorted((report.get("benchmarks") or {}).items())
        },
        "base": (
            None if report.get("base") is None
            else {slug: _pick(entry, BASE_FIELDS) for slug, entry in sorted(report["base"].items())}
        ),
        "flags": sorted(
            (_pick(flag, FLAG_FIELDS) for flag in flags),
            key=lambda f: (f.get("kind") or "", f.get("benchmark") or "", f.get("summary") or ""),
        ),
        "provenance": provenance_digest(report.get("provenance")),
        "contamination": contamination_digest(report.get("contamination")),
        "endpoint": endpoint_digest(report.get("endpoint")),
    })
    # The pinned sha says which fixture model was measured: a sha, but not one to mask.
    reduced["model"]["revision"] = (report.get("model") or {}).get("revision")
    return reduced


def outcome(reduced: dict[str, Any]) -> dict[str, Any]:
    """What a golden case decides, without its exact numbers: the status, each flag's kind,
    severity and benchmark, each benchmark's verdict and what defines its items, and each
    check's state and verdict. Tiny models trained on another CPU differ in their last bits
    (another SIMD path sums in another order), so their sha and exact scores differ; what the
    case exists to show must not."""
    benchmarks = reduced.get("benchmarks") or {}
    sections = {name: reduced.get(name) or {} for name in ("provenance", "contamination", "endpoint")}
    return {
        "status": reduced.get("status"),
        "flags": sorted(
            (f.get("kind"), f.get("severity"), f.get("benchmark") or "") for f in reduced.get("flags") or []
        ),
        "benchmarks": {
            slug: _pick(entry, ("verdict", "n", "version", "setup", "dataset_hash"))
            for slug, entry in sorted(benchmarks.items())
        },
        "provenance": _pick(sections["provenance"], ("status",))
        | {"verdict": (sections["provenance"].get("weights") or {}).get("verdict")},
        "contamination": _pick(sections["contamination"], ("status", "flagged")),
        "endpoint": _pick(sections["endpoint"], ("status", "verdict")),
    }


SECTION_STATE = ("status", "reason", "error")


def provenance_digest(section: dict[str, Any] | None) -> dict[str, Any] | None:
    if not section or "weights" not in section:
        return section and _pick(section, SECTION_STATE)
    out = _pick(section, (*SECTION_STATE, "compared_with"))
    weights = section.get("weights") or {}
    out["weights"] = _pick(weights, ("verdict", "claimed", "nearest", "summary", "unresolved_candidates"))
    out["weights"]["candidates"] = [
        _pick(c, ("name", "claimed", "skipped", "derived", "nearer_than_claimed_in"))
        for c in weights.get("candidates") or []
    ]
    out["lora"] = _pick(section.get("lora"), ("verdict", "rank", "label", "changed", "analysed"))
    tokens = section.get("new_tokens") or {}
    out["new_tokens"] = _pick(tokens, ("n_added",)) | {
        "untrained": [_pick(t, ("id", "token")) for t in tokens.get("untrained") or []]
    }
    out["config_diff_fields"] = sorted({row.get("field") for row in section.get("config_diff") or []})
    return out


def contamination_digest(section: dict[str, Any] | None) -> dict[str, Any] | None:
    if not section or "methods" not in section:
        return section and _pick(section, SECTION_STATE)
    out = _pick(section, (*SECTION_STATE, "flagged", "fired", "fired_by_benchmark", "benchmarks_probed"))
    methods = section.get("methods") or {}
    out["method_status"] = {name: method.get("status") for name, method in sorted(methods.items())}
    out["heldout_pairs"] = [
        _pick(pair, ("public", "heldout", "private", "fired", "with_base", "estimate", "z"))
        for pair in (methods.get("heldout_gap") or {}).get("pairs") or []
    ]
    by_benchmark = (methods.get("completion") or {}).get("by_benchmark") or {}
    out["completion_fired"] = {slug: entry.get("fired") for slug, entry in sorted(by_benchmark.items())}
    return out


def endpoint_digest(section: dict[str, Any] | None) -> dict[str, Any] | None:
    if not section or "greedy" not in section:
        return section and _pick(section, (*SECTION_STATE, "verdict"))
    out = _pick(section, (*SECTION_STATE, "verdict", "verdict_reasons", "model", "mode", "n_prompts"))
    out["greedy"] = _pick(section.get("greedy"), ("n_prompts", "n_compared", "n_agree"))
    out["logprobs_available"] = (section.get("logprobs") or {}).get("available")
    out["mmd_p_value"] = (section.get("mmd") or {}).get("p_value")
    return out


# --- golden files -----------------------------------------------------------------------------------


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json"


def save_golden(name: str, data: dict[str, Any]) -> Path:
    path = golden_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n")
    return path


def dump_report(name: str, report: dict[str, Any]) -> None:
    """The whole report, kept for a look into a difference when $VERITY_GOLDEN_DUMP names a folder."""
    folder = os.environ.get(DUMP_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")


def load_golden(name: str) -> dict[str, Any]:
    path = golden_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no golden file {path}; record it with {RECORD_ENV}=1")
    return json.loads(path.read_text(encoding="utf-8"))


def differences(actual: Any, expected: Any, where: str = "$") -> list[str]:
    """Every place the two digests differ (numbers within the tolerances are equal)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                out.append(f"{where}.{key}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{where}.{key}: unexpected {actual[key]!r}")
            else:
                out.extend(differences(actual[key], expected[key], f"{where}.{key}"))
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(actual)} entries, expected {len(expected)}: {actual!r} vs {expected!r}"]
        return [d for i, (a, e) in enumerate(zip(actual, expected)) for d in differences(a, e, f"{where}[{i}]")]
    if _is_number(expected) and _is_number(actual):
        if math.isclose(actual, expected, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE):
            return []
        return [f"{where}: {actual!r}, expected {expected!r}"]
    if actual != expected:
        return [f"{where}: {actual!r}, expected {expected!r}"]
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
