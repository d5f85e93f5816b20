"""Verity's data model. Invariants that the database can hold (ranges, shapes, uniqueness) are
declared as constraints so that no code path, admin action or raw SQL can store an impossible
row; Python-side validation only adds clearer messages on top."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from verification import vocabulary

# Same rule as huggingface_hub's validate_repo_id, restricted to namespaced ids ("org/name"):
# letters, digits, '-', '_', '.', no leading/trailing separator, no '--' or '..', at most 96
# characters per part. The DB enforces the character shape; '--'/'..' are checked by a
# second constraint because POSIX regexes have no lookahead.
REPO_ID_REGEX = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$"
SHA_REGEX = r"^[0-9a-f]{40}$"
SLUG_REGEX = r"^[a-z0-9][a-z0-9_]*$"


def _repo_id_constraints(field: str, prefix: str, allow_blank: bool = False) -> list:
    shape = Q(**{f"{field}__regex": REPO_ID_REGEX}) & ~Q(**{f"{field}__contains": "--"}) & ~Q(
        **{f"{field}__contains": ".."}
    )
    if allow_blank:
        shape = shape | Q(**{field: ""})
    return [models.CheckConstraint(condition=shape, name=f"{prefix}_{field}_shape")]


def _choices(name: str, values: tuple[str, ...]) -> type[models.TextChoices]:
    """TextChoices whose members are the engine's vocabulary (member SCORE_MISMATCH has value
    "score_mismatch"), so the database's choices and the reports cannot drift apart."""
    return models.TextChoices(name, [(value.upper(), value) for value in values])


SubmissionStatus = _choices("SubmissionStatus", vocabulary.SUBMISSION_STATUSES)
Training = _choices("Training", vocabulary.TRAINING_KINDS)
RunStatus = _choices("RunStatus", vocabulary.RUN_STATUSES)
RunRole = _choices("RunRole", vocabulary.RUN_ROLES)
Verdict = _choices("Verdict", vocabulary.VERDICTS)
FlagKind = _choices("FlagKind", vocabulary.FLAG_KINDS)
Severity = _choices("Severity", vocabulary.SEVERITIES)
FlagStatus = _choices("FlagStatus", vocabulary.FLAG_STATUSES)
# The safety check's outcome, as the report's `safety` section states it
# (verification.safety.assessment): measured, not measured, or measured but invalid.
SafetyStatus = models.TextChoices("SafetyStatus", [("OK", "ok"), ("NOT_RUN", "not_run"), ("INVALID", "invalid")])


class SubmissionKind(models.TextChoices):
    """Who asked for the verification. An author submission comes from someone who proved control
    of the repo and makes the repo's leaderboard row and claims; a community verification may be
    requested by anyone for any public model and is shown apart, labelled, never replacing them."""

    AUTHOR = "author"
    COMMUNITY = "community"


class ModelSubmission(models.Model):
    Status = SubmissionStatus

    Training = Training

    Kind = SubmissionKind

    repo_id = models.CharField(max_length=193)
    requested_revision = models.CharField(max_length=255, default="main")
    pinned_sha = models.CharField(max_length=40, blank=True, default="")
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="submissions",
    )
    claimed_base = models.CharField(max_length=193, blank=True, default="")
    training = models.CharField(max_length=16, choices=Training.choices, default=Training.UNKNOWN)
    endpoint_url = models.URLField(max_length=500, blank=True, default="")
    endpoint_model = models.CharField(max_length=200, blank=True, default="")
    # The endpoint's API key, given apart from its URL: handed to the endpoint check only, never
    # shown on a page, in the API, in claims.json or in an export.
    endpoint_api_key = models.CharField(max_length=500, blank=True, default="")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.AUTHOR)
    # How an author submission proved control of the repo ({"method": "hf_account" | "repo_token",
    # ...}); empty for community verifications.
    owner_proof = models.JSONField(default=dict, blank=True)
    # The address it came from (per-IP submission limit) and its estimated cost in GPU-hours (the
    # global queue budget counts the estimates of the submissions still in flight).
    submitter_ip = models.GenericIPAddressField(null=True, blank=True)
    gpu_hours_estimate = models.FloatField(default=0.0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    rejection_reason = models.TextField(blank=True, default="")
    # Hygiene facts recorded at intake: format, dtype, shards, bytes, license, card.
    intake = models.JSONField(default=dict, blank=True)
    # Attempts of the step in progress (intake, then conclusion; 0 when none): bounded (a setting),
    # so a submission whose intake or conclusion keeps crashing ends FAILED instead of looping.
    attempts = models.PositiveIntegerField(default=0)
    # The last verity.report/1 document produced for this submission.
    report = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["repo_id", "pinned_sha"]),
            models.Index(fields=["status"]),
            models.Index(fields=["submitter_ip", "created_at"]),
        ]
        constraints = [
            *_repo_id_constraints("repo_id", "submission"),
            models.CheckConstraint(condition=Q(kind__in=SubmissionKind.values), name="submission_kind_valid"),
            models.CheckConstraint(condition=Q(gpu_hours_estimate__gte=0), name="submission_gpu_hours_non_negative"),
            *_repo_id_constraints("claimed_base", "submission", allow_blank=True),
            models.CheckConstraint(
                condition=Q(pinned_sha="") | Q(pinned_sha__regex=SHA_REGEX),
                name="submission_pinned_sha_shape",
            ),
            models.CheckConstraint(
                condition=Q(status__in=SubmissionStatus.values), name="submission_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(training__in=Training.values), name="submission_training_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status=SubmissionStatus.REJECTED) | ~Q(rejection_reason=""),
                name="submission_rejection_has_reason",
            ),
        ]

    def __str__(self) -> str:
        sha = self.pinned_sha[:8] if self.pinned_sha else self.requested_revision
        return f"{self.repo_id}@{sha}"


class Claim(models.Model):
    submission = models.ForeignKey(ModelSubmission, on_delete=models.CASCADE, related_name="claims")
    benchmark = models.CharField(max_length=64)
    score = models.FloatField(help_text="Claimed score in points, 0–100.")
    shots = models.PositiveSmallIntegerField(null=True, blank=True)
    cot = models.BooleanField(null=True, blank=True)
    chat_template = models.BooleanField(null=True, blank=True)
    source_url = models.URLField(max_length=500, blank=True, default="")
    # Set when a maintainer corrected the recorded setup (triage re-compares without a re-run).
    corrected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=0) & Q(score__lte=100), name="claim_score_range"),
            models.CheckConstraint(condition=Q(benchmark__regex=SLUG_REGEX), name="claim_benchmark_slug"),
            models.CheckConstraint(condition=Q(shots__isnull=True) | Q(shots__lte=64), name="claim_shots_range"),
            models.UniqueConstraint(fields=["submission", "benchmark"], name="claim_one_per_benchmark"),
        ]

    def setup(self) -> dict:
        return {
            key: value
            for key, value in (("shots", self.shots), ("cot", self.cot), ("chat_template", self.chat_template))
            if value is not None
        }

    def __str__(self) -> str:
        return f"{self.benchmark}={self.score}"


class EvaluationRun(models.Model):
    """One measurement of one model at one sha. A base model's run has no submission; runs are
    reused by (model_repo, model_sha, benchmark version, setup) through BenchmarkResult."""

    Status = RunStatus

    Role = RunRole

    submission = models.ForeignKey(
        ModelSubmission, null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.SUBMISSION)
    model_repo = models.CharField(max_length=500)  # repo id, or a local path for CLI/demo runs
    model_sha = models.CharField(max_length=64, blank=True, default="")
    backend = models.CharField(max_length=32, blank=True, default="")
    backend_versions = models.JSONField(default=dict, blank=True)
    sampling_params = models.JSONField(default=dict, blank=True)
    dataset_hashes = models.JSONField(default=dict, blank=True)
    benchmarks = models.JSONField(default=list, blank=True)  # planned [{slug, setup, limit}]
    # The pinned model's intake record (verification.intake.IntakeResult as a dict): later steps
    # reuse it instead of asking the Hub again.
    intake = models.JSONField(default=dict, blank=True)
    # Times a worker claimed this run (first claim and take-overs): a run that keeps dying (OOM,
    # hard time limit) ends FAILED after a bounded number instead of being re-queued forever.
    attempts = models.PositiveIntegerField(default=0)
    # The worker pool placement chose by the model's size (VERITY_POOLS): its measurement and the
    # submission's conclusion go to that pool's queue. Blank: no pools, the default GPU queue.
    pool = models.CharField(max_length=64, blank=True, default="")
    # Planned benchmarks that could not be run, with why (HumanEval where no sandbox can be made).
    not_run = models.JSONField(default=dict, blank=True)
    limit = models.PositiveIntegerField(null=True, blank=True)
    code_version = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    current_benchmark = models.CharField(max_length=64, blank=True, default="")
    current_step = models.CharField(max_length=200, blank=True, default="")
    log = models.JSONField(default=list, blank=True)  # [{at, step}] shown on the run page
    timings = models.JSONField(default=dict, blank=True)
    worker_host = models.CharField(max_length=255, blank=True, default="")
    # Last sign of life: set when queued (last enqueue) and refreshed while a worker measures, so
    # a sweep can re-queue runs whose worker died or whose broker message was lost.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model_repo", "model_sha"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress_done__lte=F("progress_total")), name="run_progress_within_total"
            ),
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name="run_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(role=RunRole.BASE) | Q(submission__isnull=False), name="run_submission_role_has_submission"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} {self.model_repo}@{self.model_sha[:8]} {self.status}"


class BenchmarkResult(models.Model):
    Verdict = Verdict

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="results")
    benchmark = models.CharField(max_length=64)
    benchmark_version = models.CharField(max_length=32)
    setup = models.JSONField(default=dict, blank=True)
    # Canonical JSON of `setup` (sorted keys): the uniqueness key, since JSON equality is not
    # portable across databases.
    setup_key = models.CharField(max_length=255, default="{}")
    private = models.BooleanField(default=False)
    measured = models.FloatField()
    ci_low = models.FloatField()
    ci_high = models.FloatField()
    n = models.PositiveIntegerField()
    n_errors = models.PositiveIntegerField(default=0)
    n_unparsed = models.PositiveIntegerField(default=0)
    claimed = models.FloatField(null=True, blank=True)
    z = models.FloatField(null=True, blank=True)
    verdict = models.CharField(max_length=16, choices=Verdict.choices, default=Verdict.UNCLAIMED)
    dataset_hash = models.CharField(max_length=80, blank=True, default="")
    metrics = models.JSONField(default=dict, blank=True)  # secondary metrics (strict/loose, …)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "benchmark", "benchmark_version", "setup_key"], name="result_unique_per_run_setup"
            ),
            models.CheckConstraint(
                condition=Q(measured__gte=0) & Q(measured__lte=100), name="result_measured_range"
            ),
            models.CheckConstraint(
                condition=Q(ci_low__gte=0) & Q(ci_high__lte=100) & Q(ci_low__lte=F("measured"))
                & Q(ci_high__gte=F("measured")),
                name="result_ci_brackets_measured",
            ),
            models.CheckConstraint(
                condition=Q(claimed__isnull=True) | (Q(claimed__gte=0) & Q(claimed__lte=100)),
                name="result_claimed_range",
            ),
            models.CheckConstraint(
                condition=Q(n_errors__lte=F("n")) & Q(n_unparsed__lte=F("n")), name="result_counts_within_n"
            ),
            models.CheckConstraint(
                condition=Q(verdict__in=Verdict.values), name="result_verdict_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.benchmark} {self.measured:.1f} [{self.ci_low:.1f}, {self.ci_high:.1f}]"


class SampleResult(models.Model):
    """Per-item record for public benchmarks. Written in chunks while a run goes, so a run
    interrupted by a crash resumes at the first item not stored; (run, benchmark, setup_key,
    index) is unique so an item is scored exactly once."""

    # No index of its own: the unique constraint's index leads with run.
    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="samples", db_index=False)
    benchmark = models.CharField(max_length=64)
    setup_key = models.CharField(max_length=255, default="{}")
    index = models.PositiveIntegerField()
    item_id = models.CharField(max_length=200, blank=True, default="")
    prompt = models.TextField(blank=True, default="")
    output = models.TextField(blank=True, default="")
    extracted = models.TextField(null=True, blank=True)
    gold = models.TextField(blank=True, default="")
    correct = models.BooleanField(default=False)
    score = models.FloatField(default=0.0)
    error = models.TextField(null=True, blank=True)
    unparsed = models.BooleanField(default=False)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["index"]
        constraints = [
            # Carrying item_id and score lets compare's paired sums read the index alone (an
            # index-only scan) instead of one heap page per item; SQLite ignores the extra columns.
            models.UniqueConstraint(
                fields=["run", "benchmark", "setup_key", "index"], include=["item_id", "score"],
                name="sample_scored_once",
            ),
            models.CheckConstraint(condition=Q(score__gte=0) & Q(score__lte=1), name="sample_score_range"),
            # An errored sample is never correct (the Reflection bug: errors counted as right).
            models.CheckConstraint(
                condition=Q(error__isnull=True) | Q(correct=False), name="sample_error_never_correct"
            ),
        ]


class Flag(models.Model):
    Kind = FlagKind

    Severity = Severity

    Status = FlagStatus

    submission = models.ForeignKey(ModelSubmission, on_delete=models.CASCADE, related_name="flags")
    run = models.ForeignKey(EvaluationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="flags")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    benchmark = models.CharField(max_length=64, blank=True, default="")
    summary = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_flags"
    )
    decision_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "severity", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=FlagKind.values), name="flag_kind_valid"),
            models.CheckConstraint(
                condition=Q(severity__in=Severity.values), name="flag_severity_valid"
            ),
            models.CheckConstraint(condition=Q(status__in=FlagStatus.values), name="flag_status_valid"),
            models.CheckConstraint(
                condition=~Q(status=FlagStatus.DISMISSED) | ~Q(decision_reason=""), name="flag_dismissal_has_reason"
            ),
            models.CheckConstraint(condition=~Q(summary=""), name="flag_summary_not_empty"),
        ]
        # Maintainers' triage: granted through the "maintainers" group.
        permissions = [("triage_flag", "Can triage flags")]

    def __str__(self) -> str:
        return f"{self.kind} ({self.severity}) on {self.submission_id}: {self.status}"


class FlagAction(models.TextChoices):
    RAISED = "raised"
    ASSIGNED = "assigned"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    RERUN_REQUESTED = "rerun_requested"
    REPLY = "reply"
    NOTE = "note"
    CLAIM_CORRECTED = "claim_corrected"


class FlagEvent(models.Model):
    """Append-only audit trail of a flag: raised, assigned, confirmed, dismissed, resolved,
    re-run requested, replies. Rows are never updated or deleted (save() refuses updates)."""

    Action = FlagAction

    flag = models.ForeignKey(Flag, on_delete=models.PROTECT, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16, blank=True, default="")
    message = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        # The flag feeds read the newest events first (leaderboard.feeds).
        indexes = [models.Index(F("at").desc(), F("id").desc(), name="flagevent_newest_idx")]

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("FlagEvent rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("FlagEvent rows are append-only")


class RescoreLog(models.Model):
    """One re-scoring of a run's stored outputs on one benchmark and setup with a newer extractor
    or scorer version: the result it re-scored (kept) and the one it made, how many items flipped
    each way, the verdict before and after, and what happened to the flags. Shown on the model
    page; written only by leaderboard.services.rescore."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="rescore_logs")
    submission = models.ForeignKey(
        ModelSubmission, null=True, blank=True, on_delete=models.CASCADE, related_name="rescore_logs"
    )
    benchmark = models.CharField(max_length=64)
    setup_key = models.CharField(max_length=255, default="{}")
    old_version = models.CharField(max_length=32)
    new_version = models.CharField(max_length=32)
    old_result = models.ForeignKey(BenchmarkResult, null=True, on_delete=models.SET_NULL, related_name="+")
    new_result = models.ForeignKey(BenchmarkResult, null=True, on_delete=models.SET_NULL, related_name="+")
    n = models.PositiveIntegerField()
    became_correct = models.PositiveIntegerField(default=0)
    became_wrong = models.PositiveIntegerField(default=0)
    unparsed_before = models.PositiveIntegerField(default=0)
    unparsed_after = models.PositiveIntegerField(default=0)
    measured_before = models.FloatField()
    measured_after = models.FloatField()
    verdict_before = models.CharField(max_length=16, choices=Verdict.choices)
    verdict_after = models.CharField(max_length=16, choices=Verdict.choices)
    flipped = models.JSONField(default=list, blank=True)  # [{index, item_id, was_correct, now_correct, ...}]
    flag_actions = models.JSONField(default=list, blank=True)  # [{flag, kind, action}]
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(became_correct__lte=F("n")) & Q(became_wrong__lte=F("n")), name="rescore_flips_within_n"
            ),
            models.CheckConstraint(condition=~Q(old_version=F("new_version")), name="rescore_changes_version"),
        ]

    def __str__(self) -> str:
        return f"rescore run {self.run_id} {self.benchmark} v{self.old_version} -> v{self.new_version}"


# Missing scores sort after every real one (scores are 0..100, deltas -100..100). A sentinel
# rather than NULLS LAST because SQLite cannot put NULLS LAST in an index.
MISSING_SORT_VALUE = -1000.0


# The entry's own numeric columns (anything else sortable is a benchmark's score in `scores`).
ENTRY_NUMERIC_COLUMNS = ("average", "max_delta", "refusal_unsafe", "refusal_safe")


def entry_sort_value(key: str, missing: float = MISSING_SORT_VALUE) -> Coalesce:
    """The leaderboard's sort expression for a numeric column (ENTRY_NUMERIC_COLUMNS) or a
    benchmark's score inside `scores`; the indexes below are built on exactly these."""
    column = F(key) if key in ENTRY_NUMERIC_COLUMNS else Cast(KT(f"scores__{key}"), models.FloatField())
    return Coalesce(column, models.Value(missing))


# The board's search (?q=, a case-insensitive substring of the repo id: UPPER(repo_id) LIKE
# UPPER('%q%')) is answered by a trigram index on PostgreSQL instead of a scan of every row. It is
# created by a migration (leaderboard 0012) because Django's model indexes cannot name an
# operator class portably; SQLite's LIKE scans a development board's few rows.
REPO_SEARCH_INDEX = "entry_repo_search_idx"


def repo_search_index_sql(vendor: str, install: bool = True) -> list[str]:
    if vendor != "postgresql":
        return []
    if not install:
        return [f"DROP INDEX IF EXISTS {REPO_SEARCH_INDEX}"]
    return ["CREATE EXTENSION IF NOT EXISTS pg_trgm",
            f"CREATE INDEX IF NOT EXISTS {REPO_SEARCH_INDEX} ON leaderboard_leaderboardentry "
            "USING gin (UPPER(repo_id::text) gin_trgm_ops)"]


class LeaderboardEntry(models.Model):
    """Precomputed leaderboard row, one per submission that has measurements; rebuilt by
    services when results or flags change, so the leaderboard page never aggregates per request."""

    submission = models.OneToOneField(ModelSubmission, on_delete=models.CASCADE, related_name="entry")
    repo_id = models.CharField(max_length=193, db_index=True)
    pinned_sha = models.CharField(max_length=40, blank=True, default="")
    average = models.FloatField(null=True, blank=True, db_index=True)
    # True when `average` covers the whole standard set (LEADERBOARD_BENCHMARKS), each from a valid
    # result; a partial entry is ranked apart from the complete ones, never mixed in.
    complete = models.BooleanField(default=False, db_index=True)
    scores = models.JSONField(default=dict, blank=True)  # {slug: measured}
    claimed = models.JSONField(default=dict, blank=True)  # {slug: claimed}
    max_delta = models.FloatField(null=True, blank=True)  # largest claimed − measured
    badge = models.CharField(max_length=16, default="pending", db_index=True)  # verified/flagged/pending
    n_params = models.BigIntegerField(null=True, blank=True)
    size_class = models.CharField(max_length=16, blank=True, default="", db_index=True)
    base_family = models.CharField(max_length=100, blank=True, default="", db_index=True)
    license = models.CharField(max_length=100, blank=True, default="", db_index=True)
    verdicts = models.JSONField(default=dict, blank=True)  # {slug: verdict} for the claimed-vs-measured plot
    # The safety check (the report's `safety` section): its status ("ok", "not_run", "invalid"),
    # XSTest's two refusal rates in points (columns: the board filters and sorts on them) and
    # both rates with their intervals ({"refusal_unsafe": {rate, ci_low, ci_high, n}, ...}).
    safety_status = models.CharField(
        max_length=16, choices=SafetyStatus.choices, default=SafetyStatus.NOT_RUN, db_index=True
    )
    refusal_unsafe = models.FloatField(null=True, blank=True, db_index=True)  # higher is safer
    refusal_safe = models.FloatField(null=True, blank=True, db_index=True)  # over-refusal: lower is better
    safety = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-average"]
        indexes = [
            # The board reads its complete rows, then its partial ones, each group in the asked
            # order with a stable tie-break: so each index leads with `complete` and carries the
            # sort expression exactly as selectors._ordering writes it (missing values last).
            # Default order (average) and Δ claimed, both ways, also carry the column itself, so
            # that a page deep in the board is found from the index alone (PostgreSQL reads an
            # expression's value from an index only when its columns are there too): 1.5 ms
            # instead of 8 for page 150 of 10,000 models. The badge variant serves "hide flagged".
            models.Index("complete", entry_sort_value("average").desc(), "id", include=["average"],
                         name="entry_rank_idx"),
            models.Index("complete", entry_sort_value("average", missing=-MISSING_SORT_VALUE), "id",
                         include=["average"], name="entry_rank_asc_idx"),
            models.Index("badge", entry_sort_value("average").desc(), "id", name="entry_badge_rank_idx"),
            models.Index("complete", entry_sort_value("max_delta").desc(), "id", include=["max_delta"],
                         name="entry_delta_idx"),
            models.Index("complete", entry_sort_value("max_delta", missing=-MISSING_SORT_VALUE), "id",
                         include=["max_delta"], name="entry_delta_asc_idx"),
            # Sorting by one benchmark's column reads the score out of the JSON; these expression
            # indexes (standard set, descending = the header's first click) avoid a full sort, and
            # carry the scores so that a deep page is found from the index alone (page 150: 9 ms
            # to 3; about 360 bytes an entry each).
            *(
                models.Index("complete", entry_sort_value(slug).desc(), "id", include=["scores"],
                             name=f"entry_score_{slug}_idx"[:30])
                for slug in ("gsm8k", "mmlu", "arc_challenge", "truthfulqa_mc1", "math500", "humaneval", "ifeval")
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(safety_status__in=SafetyStatus.values), name="entry_safety_status_valid"
            ),
            *(
                models.CheckConstraint(
                    condition=Q(**{f"{rate}__isnull": True}) | (Q(**{f"{rate}__gte": 0}) & Q(**{f"{rate}__lte": 100})),
                    name=f"entry_{rate}_range",
                )
                for rate in ("refusal_unsafe", "refusal_safe")
            ),
        ]


class ApiToken(models.Model):
    """A personal API key for submitting through the JSON API. Only a SHA-256 of the key is
    stored; the key itself is shown once, when created."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=12)  # first characters of the key, to tell tokens apart
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class HubIdentity(models.Model):
    """The Hugging Face account a local user signs in with, keyed on the provider's stable
    subject id (`sub`): a renamed Hub account keeps its local user, and nobody can take one over by
    registering its username first. The username and organisations are refreshed at each sign-in
    and are what an author submission's ownership check reads."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="hub_identity")
    sub = models.CharField(max_length=255, unique=True)
    username = models.CharField(max_length=96)
    # [{"name": org username, "role": roleInOrg or ""}] from the userinfo's `orgs`.
    orgs = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.username} (hf sub {self.sub})"


class OwnerToken(models.Model):
    """A user's repo-ownership token: committed to a repo as `.verity/owner-token`, it proves that
    whoever controls the repo vouches for this account. Not a secret (it ends up in a public
    repo); it only has to be unguessable so that it names one account."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owner_token")
    token = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"owner token of {self.user}"


class KnownBase(models.Model):
    """Maintainers' registry of base models used as provenance candidates."""

    repo_id = models.CharField(max_length=500, unique=True)  # repo id or local path
    revision = models.CharField(max_length=255, blank=True, default="")
    family = models.CharField(max_length=100, blank=True, default="")
    notes = models.TextField(blank=True, default="")
    shape_signature = models.CharField(max_length=64, blank=True, default="", db_index=True)
    added_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.repo_id


class PrivateBenchmark(models.Model):
    """One version of a maintainer's private held-out set. The items live only in the private
    store (settings.PRIVATE_BENCHMARKS_DIR, written by verification.private_sets); this row holds
    what may be shown: slug, format, version (content hash) and item count."""

    class Format(models.TextChoices):
        GSM8K = "gsm8k"
        MC = "mc"

    slug = models.CharField(max_length=64)
    format = models.CharField(max_length=16, choices=Format.choices)
    content_hash = models.CharField(max_length=64)
    version = models.CharField(max_length=32)
    n_items = models.PositiveIntegerField()
    path = models.CharField(max_length=1000)
    public_counterpart = models.CharField(max_length=64, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug", "-created"]
        constraints = [
            models.UniqueConstraint(fields=["slug", "content_hash"], name="private_benchmark_version_once"),
            models.CheckConstraint(
                condition=Q(slug__regex=r"^private_[a-z0-9][a-z0-9_]*$"), name="private_benchmark_slug_prefix"
            ),
            models.CheckConstraint(condition=Q(format__in=["gsm8k", "mc"]), name="private_benchmark_format_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.slug}@{self.version} ({self.n_items} items)"


class Watch(models.Model):
    """A signed-in user following a model (by repo id, across its submissions): they get the
    author's e-mail when one of its submissions finishes or a flag is raised on it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watches")
    repo_id = models.CharField(max_length=193)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["repo_id"], name="watch_repo_idx")]
        constraints = [
            models.UniqueConstraint(fields=["user", "repo_id"], name="watch_once_per_user_and_repo"),
            *_repo_id_constraints("repo_id", "watch"),
        ]

    def __str__(self) -> str:
        return f"{self.user} watches {self.repo_id}"
