"""The pipeline's hook for provenance (registered in verification/checks.py CHECK_PATHS).

Adapts a CheckContext to `verification.provenance.core.check_provenance`: the claimed base is
`context.base`, the alternatives are `context.candidates` (the --candidate sources and the
registered KnownBase rows, already resolved to local directories by the pipeline), the claimed
training comes from the claims document and the hygiene facts from intake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verification.provenance.core import DEFAULT_MAX_LORA_MATRICES
from verification.provenance.core import check_provenance as check_directories

if TYPE_CHECKING:
    from verification.checks import CheckContext, ModelRef


def model_name(ref: "ModelRef") -> str:
    return ref.repo_id or ref.source


def candidate_name(ref: "ModelRef", model: "ModelRef") -> str:
    """A candidate's name in the report; a known base of the model's own repo at another revision
    is named with its sha, so "derived from X" never reads as "derived from itself"."""
    name = model_name(ref)
    if ref.repo_id is not None and ref.repo_id == model.repo_id and ref.sha and ref.sha != model.sha:
        return f"{name}@{ref.sha[:12]}"
    return name


def check_provenance(context: "CheckContext") -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Runs with or without a claimed base: every model is compared with the known bases.

    The section's status is "ok" when the comparison with every candidate that could be had and
    the from-the-model-alone token checks ran; with no candidate at all (an honest model trained
    from scratch, or one whose shapes match no registered base) that is all there is to check,
    and the section says so in its verdict (no_candidates). A candidate or claimed base that
    could not be had is listed under "missing", so the submission is incomplete, not verified."""
    if context.model.path is None:
        return "provenance", {"status": "skipped", "reason": "the submitted model has no local files"}, []
    if context.base is not None and context.base.path is None:
        reason = f"the claimed base {model_name(context.base)} has no local files"
        return "provenance", {"status": "skipped", "reason": reason}, []
    if context.base is None and context.claims.base_model:
        # A base is claimed but could not be had: judging the model as if it claimed none would
        # report an "undeclared" lineage that is in fact declared.
        reason = f"the claimed base {context.claims.base_model} could not be fetched"
        return "provenance", {"status": "skipped", "reason": reason}, []
    # A registered base submitted as itself is marked by the pipeline (ModelRef.is_model): it is
    # not compared with itself, and it is exempt from the undeclared-lineage warning.
    itself = next((model_name(ref) for ref in context.candidates if ref.is_model), None)
    others = [ref for ref in context.candidates if not ref.is_model]
    candidates = {candidate_name(ref, context.model): ref.path for ref in others if ref.path is not None}
    options = (context.options or {}).get("provenance", {})
    section, flags = check_directories(
        context.model.path,
        context.base.path if context.base is not None else None,
        candidates=candidates,
        claimed_training=context.claims.training,
        base_name=model_name(context.base) if context.base is not None else None,
        intake=context.intake,
        max_lora_matrices=int(options.get("max_lora_matrices", DEFAULT_MAX_LORA_MATRICES)),
        registered_as=itself,
    )
    unresolved = [model_name(ref) for ref in others if ref.path is None]
    if unresolved:
        section["weights"]["unresolved_candidates"] = unresolved
        section["missing"] = [
            f"lineage: the known base {name} could not be fetched, so the weights were not compared with it"
            for name in unresolved
        ]
    return "provenance", section, flags
