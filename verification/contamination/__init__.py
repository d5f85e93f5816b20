"""Contamination evidence for the report's `contamination` section (methods.md §3).

Entry point: `check_contamination(model_dir, base_dir, *, datasets_dir, limit, public_outcomes,
heldout_outcomes, seed) -> (section, flags)`; see verification.contamination.check.
"""

from __future__ import annotations

from verification.contamination.check import check_contamination, run_check
from verification.contamination.lm import token_distribution_stats
from verification.contamination.plot import public_vs_heldout_plot

__all__ = ["check_contamination", "public_vs_heldout_plot", "run_check", "token_distribution_stats"]
