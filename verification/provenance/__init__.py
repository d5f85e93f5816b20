"""Provenance checks: config/tokenizer diff, nearest base by weight distance (claimed or not,
sibling bases told apart), LoRA signature, untrained tokens (against a base and from the model
alone), hygiene facts. See core.py; methods.md §4 and §7.

Two entry points:
- `check_provenance(model_dir, base_dir | None, *, candidates, claimed_training, base_name)` ->
  (section, flags), on local directories (this package's API);
- `verification.provenance.check:check_provenance(context)`, the hook the pipeline's check
  registry (verification/checks.py) calls with a CheckContext.
"""

from __future__ import annotations

from verification.provenance.core import check_provenance
from verification.provenance.weights import ProvenanceInputError, shape_signature

__all__ = ["ProvenanceInputError", "check_provenance", "shape_signature"]
