"""The hook where the later checks (provenance, contamination, endpoint) plug into the report.

A check is a callable `check(context: CheckContext) -> (section_name, section_dict, flags)`:
- `section_name` is one of REPORT_SECTIONS; the dict becomes that section of verity.report/1
  (the endpoint section may be None when the check did not apply);
- `flags` is a list of report flags (dicts with kind, severity, benchmark, summary, evidence;
  build them with `verification.compare.make_flag`).

Checks are found by dotted path ("package.module:function") in CHECK_PATHS, so a new check is
one module plus one line here; a check whose module is not installed is reported as
"not_available", and a check that raises is reported as "error" with its message: one broken
check never loses the measurements or the other checks' findings.
"""

from __future__ import annotations

import importlib
import logging
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verification.claims import ClaimsDoc

log = logging.getLogger(__name__)

REPORT_SECTIONS = ("provenance", "contamination", "endpoint")

# Registered checks, in the order they run. Owners: provenance / contamination / endpoint engineers.
CHECK_PATHS: tuple[str, ...] = (
    "verification.provenance.check:check_provenance",
    "verification.contamination.check:run_check",
    "verification.endpoint.check:check_from_context",
)


@dataclass
class ModelRef:
    """A measured model: where its files are and which exact version."""

    source: str
    repo_id: str | None
    sha: str | None
    path: Path | None


@dataclass
class CheckContext:
    model: ModelRef
    base: ModelRef | None
    candidates: list[ModelRef]
    claims: ClaimsDoc
    intake: dict[str, Any]
    # {slug: measurement dict as in the report's "benchmarks" section} for model and base.
    benchmarks: dict[str, dict[str, Any]]
    base_benchmarks: dict[str, dict[str, Any]] | None
    endpoint_url: str | None
    endpoint_model: str | None
    datasets_dir: Path | None
    backend_name: str
    # A live engine for the submitted model, when the pipeline has one open (checks that generate
    # reuse it instead of starting another); None when measuring ran elsewhere.
    backend: Any = None
    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


Check = Callable[[CheckContext], tuple[str, "dict[str, Any] | None", list[dict[str, Any]]]]


def enabled_sections() -> set[str]:
    """Sections whose checks run: $VERITY_CHECKS ("provenance,endpoint", "none"; default all).
    Operators turn off a check that cannot run on their hardware; tests that exercise only the
    measurement path turn them all off to stay fast."""
    raw = os.environ.get("VERITY_CHECKS", "").strip().lower()
    if not raw:
        return set(REPORT_SECTIONS)
    if raw == "none":
        return set()
    chosen = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = chosen - set(REPORT_SECTIONS)
    if unknown:
        raise ValueError(f"VERITY_CHECKS names unknown check(s) {sorted(unknown)}; known: {REPORT_SECTIONS}")
    return chosen


def load_checks(paths: Sequence[str] = CHECK_PATHS) -> list[tuple[str, Check | None, str | None]]:
    """(path, callable or None, reason it is unavailable)."""
    loaded: list[tuple[str, Check | None, str | None]] = []
    enabled = enabled_sections()
    for path in paths:
        if _section_for_path(path) not in enabled:
            loaded.append((path, None, "disabled by VERITY_CHECKS"))
            continue
        module_name, _, attribute = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                loaded.append((path, None, f"{module_name} is not installed"))
            else:
                loaded.append((path, None, f"import failed: {type(exc).__name__}: {exc}"))
            continue
        except Exception as exc:  # a broken check module must not lose the measurements
            log.exception("check module %s failed to import", module_name)
            loaded.append((path, None, f"import failed: {type(exc).__name__}: {exc}"))
            continue
        func = getattr(module, attribute, None)
        if func is None:
            loaded.append((path, None, f"{module_name} has no {attribute}"))
        else:
            loaded.append((path, func, None))
    return loaded


def default_sections() -> dict[str, Any]:
    return {"provenance": {}, "contamination": {}, "endpoint": None}


def run_checks(
    context: CheckContext, checks: Sequence[Check] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every check; returns (sections, flags, check_log). `checks` overrides the registry."""
    sections = default_sections()
    flags: list[dict[str, Any]] = []
    check_log: list[dict[str, Any]] = []
    entries = (
        [(getattr(c, "__qualname__", repr(c)), c, None) for c in checks]
        if checks is not None
        else load_checks()
    )
    for path, check, unavailable in entries:
        if check is None:
            section = _section_for_path(path)
            status = (
                "disabled"
                if "VERITY_CHECKS" in (unavailable or "")
                else "error"
                if (unavailable or "").startswith("import failed")
                else "not_available"
            )
            if section and not sections.get(section):
                sections[section] = {"status": status, "reason": unavailable}
            check_log.append({"check": path, "status": status, "reason": unavailable})
            continue
        try:
            name, section_dict, check_flags = check(context)
            if name not in REPORT_SECTIONS:
                raise ValueError(f"returned unknown section {name!r}; expected one of {REPORT_SECTIONS}")
            valid_flags = _validated_flags(path, check_flags)
        except Exception as exc:  # one failing check must not lose the rest of the report
            error = _safe_error(context, exc)
            # Frames only (file, line, code): the message, which may quote a private item, is
            # written once, in its safe form.
            frames = "".join(traceback.format_tb(exc.__traceback__, limit=5))
            log.error("check %s failed: %s\n%s", path, error, frames)
            section = _section_for_path(path)
            if section:
                sections[section] = {"status": "error", "error": error}
            check_log.append({"check": path, "status": "error", "error": error, "traceback": frames})
            continue
        sections[name] = section_dict
        flags.extend(valid_flags)
        check_log.append({"check": path, "status": "ok", "section": name, "flags": len(valid_flags)})
    return sections, flags, check_log


def _safe_error(context: CheckContext, exc: BaseException) -> str:
    """The message to store for a failed check: in full, unless the run measured a private set
    (a check may have read its items), then the exception type only."""
    from verification import private_sets

    measured = [*(context.benchmarks or {}), *(context.base_benchmarks or {})]
    if any(private_sets.is_private(slug) for slug in measured):
        return private_sets.safe_error(exc)
    return f"{type(exc).__name__}: {exc}"


def _section_for_path(path: str) -> str | None:
    """The report section a check fills, read from its dotted path (or function name)."""
    for section in REPORT_SECTIONS:
        if section in path:
            return section
    return None


def _validated_flags(path: str, flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from verification.compare import FLAG_KINDS, SEVERITIES

    out = []
    for flag in flags or []:
        if (
            flag.get("kind") not in FLAG_KINDS
            or flag.get("severity") not in SEVERITIES
            or not flag.get("summary")
        ):
            raise ValueError(f"check {path} produced a malformed flag: {flag!r}")
        out.append(
            {
                "kind": flag["kind"],
                "severity": flag["severity"],
                "benchmark": flag.get("benchmark") or None,
                "summary": flag["summary"],
                "evidence": flag.get("evidence") or {},
            }
        )
    return out
