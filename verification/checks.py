"""The hook where the later checks (provenance, contamination, endpoint) plug into the report.

A check is a callable `check(context: CheckContext) -> (section_name, section_dict, flags)`:
- `section_name` is one of REPORT_SECTIONS; the dict becomes that section of verity.report/1
  (the endpoint section may be None when the check did not apply);
- `flags` is a list of report flags (dicts with kind, severity, benchmark, summary, evidence;
  build them with `verification.compare.make_flag`).

A section says "status": "ok" when its check ran to its end; any other status (skipped, error,
unreachable, refused, ...) says it could not, and a section may list under "missing" (a list of
sentences) the parts that could not run, such as a comparison the endpoint refused data for.
Either makes the submission "incomplete" (verification.report.status_for) when the check
`applies`; a flag is kept for findings about the model, never for a check that could not run.

Checks are found by dotted path ("package.module:function") in CHECK_PATHS, so a new check is
one module plus one line here; a check whose module is not installed is reported as
"not_available", and a check that raises is reported as "error" with its message: one broken
check never loses the measurements or the other checks' findings.
"""

from __future__ import annotations

import importlib
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from verification.claims import ClaimsDoc
from verification.vocabulary import FLAG_KINDS, REPORT_SECTIONS, SEVERITIES
from verification.interrupts import reraise_interrupt

log = logging.getLogger(__name__)

# Registered checks, in the order they run.
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
    # A lineage candidate that is the submitted model itself: a registered known base submitted
    # (or re-measured) at its registered repo and revision. It names the base the model is and is
    # never compared with the model (distance 0 would read as "a copy of a known base").
    is_model: bool = False


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


def load_checks(
    paths: Sequence[str] = CHECK_PATHS, enabled: Sequence[str] | None = None
) -> list[tuple[str, Check | None, str | None]]:
    """(path, callable or None, reason it is unavailable). `enabled` names the sections whose
    checks run (the operator's VERITY_CHECKS; None: all): operators turn off a check that cannot
    run on their hardware, tests of the measurement path turn them all off to stay fast."""
    loaded: list[tuple[str, Check | None, str | None]] = []
    enabled = REPORT_SECTIONS if enabled is None else tuple(enabled)
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
            reraise_interrupt(exc)
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
    # The endpoint section is null when no endpoint was submitted.
    return {name: None if name == "endpoint" else {} for name in REPORT_SECTIONS}


def run_checks(
    context: CheckContext, checks: Sequence[Check] | None = None, enabled: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every enabled check; returns (sections, flags, check_log). `checks` overrides the
    registry.

    The checks see only the valid measurements (`comparable_context`): an invalid run is not a
    measurement and feeds no comparison (the held-out gap, say). Every log entry names its
    section and says whether its check `applies` to this submission, and a section no check
    filled is logged as "not_run": the report's status (verification.report.status_for) needs
    every applicable check to have run."""
    sections = default_sections()
    flags: list[dict[str, Any]] = []
    check_log: list[dict[str, Any]] = []
    entries = (
        [(getattr(c, "__qualname__", repr(c)), c, None) for c in checks]
        if checks is not None
        else load_checks(enabled=enabled)
    )
    comparable = comparable_context(context)
    for path, check, unavailable in entries:
        if check is None:
            check_log.append(_record_unavailable(path, unavailable, sections))
        else:
            check_log.append(_run_one(path, check, comparable, context, sections, flags))
    ran = {entry.get("section") for entry in check_log}
    check_log.extend(
        {"check": name, "section": name, "status": "not_run", "reason": "no check for this section ran"}
        for name in REPORT_SECTIONS
        if name not in ran
    )
    for entry in check_log:
        entry["applies"] = applies(entry.get("section"), context)
    return sections, flags, check_log


def applies(section: str | None, context: CheckContext) -> bool:
    """Whether the check filling `section` applies to this submission (the one rule the status
    relies on): provenance always (every model is compared with the known bases, a base claimed
    or not, and its tokens are checked from the model alone; a claimed base that could not be
    had makes its comparison missing, not void), the endpoint check when an endpoint is named,
    contamination always; a section this module does not know applies."""
    if section == "endpoint":
        return bool(context.endpoint_url or context.claims.endpoint)
    return True


def comparable_context(context: CheckContext) -> CheckContext:
    """The context without the invalid measurements (model's and base's)."""
    from verification.compare import is_valid_entry

    def valid(entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {slug: entry for slug, entry in entries.items() if is_valid_entry(entry)}

    return replace(
        context,
        benchmarks=valid(context.benchmarks or {}),
        base_benchmarks=None if context.base_benchmarks is None else valid(context.base_benchmarks),
    )


def _record_unavailable(path: str, unavailable: str | None, sections: dict[str, Any]) -> dict[str, Any]:
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
    return {"check": path, "section": section, "status": status, "reason": unavailable}


def _run_one(
    path: str, check: Check, comparable: CheckContext, context: CheckContext,
    sections: dict[str, Any], flags: list[dict[str, Any]],
) -> dict[str, Any]:
    """Run one check on the comparable context; its section and flags go into `sections` and
    `flags`, and the log entry is returned. Errors are made safe against the full `context`
    (an invalid private set's items may still have been read)."""
    try:
        name, section_dict, check_flags = check(comparable)
        if name not in REPORT_SECTIONS:
            raise ValueError(f"returned unknown section {name!r}; expected one of {REPORT_SECTIONS}")
        valid_flags = _validated_flags(path, check_flags)
    except Exception as exc:  # one failing check must not lose the rest of the report
        reraise_interrupt(exc)
        error = _safe_error(context, exc)
        # Frames only (file, line, code): the message, which may quote a private item, is
        # written once, in its safe form.
        frames = "".join(traceback.format_tb(exc.__traceback__, limit=5))
        log.error("check %s failed: %s\n%s", path, error, frames)
        section = _section_for_path(path)
        if section:
            sections[section] = {"status": "error", "error": error}
        return {"check": path, "section": section, "status": "error", "error": error, "traceback": frames}
    sections[name] = section_dict
    flags.extend(valid_flags)
    return {"check": path, "status": "ok", "section": name, "flags": len(valid_flags)}


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
