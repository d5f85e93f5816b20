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


def check_provenance(context: "CheckContext") -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    if context.base is None:
        return "provenance", {"status": "skipped", "reason": "no claimed base model"}, []
    if context.model.path is None or context.base.path is None:
        missing = "submitted model" if context.model.path is None else f"claimed base {model_name(context.base)}"
        return "provenance", {"status": "skipped", "reason": f"the {missing} has no local files"}, []
    candidates = {
        model_name(ref): ref.path for ref in context.candidates if ref.path is not None
    }
    options = (context.options or {}).get("provenance", {})
    section, flags = check_directories(
        context.model.path,
        context.base.path,
        candidates=candidates,
        claimed_training=context.claims.training,
        base_name=model_name(context.base),
        intake=context.intake,
        max_lora_matrices=int(options.get("max_lora_matrices", DEFAULT_MAX_LORA_MATRICES)),
    )
    unresolved = [model_name(ref) for ref in context.candidates if ref.path is None]
    if unresolved:
        section["weights"]["unresolved_candidates"] = unresolved
    return "provenance", section, flags
