"""The words Verity's reports, database rows and pages share: flag kinds, severities, verdicts,
statuses, report sections and the error-rate limit.

Every other module (the engine, the Django models' choices, the site) takes these names from
here, so a new flag kind or verdict is one line in this file; tests prove the model choices
match.
"""

from __future__ import annotations

# --- flags ------------------------------------------------------------------------------------

SCORE_MISMATCH = "score_mismatch"
BASE_MODEL_MISMATCH = "base_model_mismatch"
LORA_MERGE = "lora_merge"
UNTRAINED_TOKENS = "untrained_tokens"
CONTAMINATION = "contamination"
HELDOUT_GAP = "heldout_gap"
ENDPOINT_MISMATCH = "endpoint_mismatch"
WEIGHTS_CHANGED = "weights_changed"
INVALID_RUN = "invalid_run"
SAFETY_REGRESSION = "safety_regression"
FLAG_KINDS = (
    SCORE_MISMATCH,
    BASE_MODEL_MISMATCH,
    LORA_MERGE,
    UNTRAINED_TOKENS,
    CONTAMINATION,
    HELDOUT_GAP,
    ENDPOINT_MISMATCH,
    WEIGHTS_CHANGED,
    INVALID_RUN,
    SAFETY_REGRESSION,
)

# From least to most serious.
INFO = "info"
WARNING = "warning"
CRITICAL = "critical"
SEVERITIES = (INFO, WARNING, CRITICAL)
# A flag of these severities makes a submission "flagged" rather than "verified".
FLAGGING_SEVERITIES = (WARNING, CRITICAL)

# A flag's state in maintainers' triage.
OPEN = "open"
CONFIRMED = "confirmed"
DISMISSED = "dismissed"
RESOLVED = "resolved"
FLAG_STATUSES = (OPEN, CONFIRMED, DISMISSED, RESOLVED)

# --- verdicts on a claim (methods.md §1) --------------------------------------------------------

CONSISTENT = "consistent"
DISCREPANT = "discrepant"
INCONSISTENT = "inconsistent"
UNCLAIMED = "unclaimed"
CLAIMED_BELOW = "claimed_below"
INVALID = "invalid"  # the run is not a measurement of the model: no claim is judged against it
# The claim states a setup (shots, chain-of-thought, chat template) that was not run: the number
# measured under another setup is shown, never judged against the claim.
NOT_COMPARABLE = "not_comparable"
VERDICTS = (CONSISTENT, DISCREPANT, INCONSISTENT, UNCLAIMED, CLAIMED_BELOW, INVALID, NOT_COMPARABLE)

# methods.md §2 (ours): a run whose harness failed on more than this fraction of its items (or of
# its requests) is not a measurement.
MAX_ERROR_RATE = 0.01

# --- submissions and runs ---------------------------------------------------------------------

RECEIVED = "received"
QUEUED = "queued"
RUNNING = "running"
VERIFIED = "verified"
FLAGGED = "flagged"
# No flag was raised, but a check that applies did not run and pass (disabled, unavailable,
# crashed, endpoint unreachable, ...): never shown as verified.
INCOMPLETE = "incomplete"
FAILED = "failed"
REJECTED = "rejected"
SUBMISSION_STATUSES = (RECEIVED, QUEUED, RUNNING, VERIFIED, FLAGGED, INCOMPLETE, FAILED, REJECTED)

DONE = "done"
RUN_STATUSES = (QUEUED, RUNNING, DONE, FAILED)

# Whose model a run measures: the submission's own, or its claimed base (for the uplift).
SUBMISSION = "submission"
BASE = "base"
RUN_ROLES = (SUBMISSION, BASE)

TRAINING_KINDS = ("full", "lora", "merge", "unknown")

# --- the report -------------------------------------------------------------------------------

# The sections the later checks fill, in the order they run.
REPORT_SECTIONS = ("provenance", "contamination", "endpoint")
# A check's section says "status": CHECK_OK when the check ran to its end; any other status
# (skipped, disabled, not_available, error, unreachable, refused, not_run) means it did not.
CHECK_OK = "ok"
