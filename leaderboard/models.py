"""Verity's data model. Invariants that the database can hold (ranges, shapes, uniqueness) are
declared as constraints so that no code path, admin action or raw SQL can store an impossible
row; Python-side validation only adds clearer messages on top."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

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


class SubmissionStatus(models.TextChoices):
    RECEIVED = "received"
    QUEUED = "queued"
    RUNNING = "running"
    VERIFIED = "verified"
    FLAGGED = "flagged"
    FAILED = "failed"
    REJECTED = "rejected"


class Training(models.TextChoices):
    FULL = "full"
    LORA = "lora"
    MERGE = "merge"
    UNKNOWN = "unknown"


class ModelSubmission(models.Model):
    Status = SubmissionStatus

    Training = Training

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
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    rejection_reason = models.TextField(blank=True, default="")
    # Hygiene facts recorded at intake: format, dtype, shards, bytes, license, card.
    intake = models.JSONField(default=dict, blank=True)
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
        ]
        constraints = [
            *_repo_id_constraints("repo_id", "submission"),
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
                condition=~Q(status="rejected") | ~Q(rejection_reason=""),
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
    # Set when a maintainer corrected the recorded setup (issue: triage re-compare).
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


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RunRole(models.TextChoices):
    SUBMISSION = "submission"
    BASE = "base"


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
                condition=Q(role="base") | Q(submission__isnull=False), name="run_submission_role_has_submission"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} {self.model_repo}@{self.model_sha[:8]} {self.status}"


class Verdict(models.TextChoices):
    CONSISTENT = "consistent"
    DISCREPANT = "discrepant"
    INCONSISTENT = "inconsistent"
    UNCLAIMED = "unclaimed"
    CLAIMED_BELOW = "claimed_below"
    INVALID = "invalid"


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

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="samples")
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
            models.UniqueConstraint(
                fields=["run", "benchmark", "setup_key", "index"], name="sample_scored_once"
            ),
            models.CheckConstraint(condition=Q(score__gte=0) & Q(score__lte=1), name="sample_score_range"),
            # An errored sample is never correct (the Reflection bug: errors counted as right).
            models.CheckConstraint(
                condition=Q(error__isnull=True) | Q(correct=False), name="sample_error_never_correct"
            ),
        ]


class FlagKind(models.TextChoices):
    SCORE_MISMATCH = "score_mismatch"
    BASE_MODEL_MISMATCH = "base_model_mismatch"
    LORA_MERGE = "lora_merge"
    UNTRAINED_TOKENS = "untrained_tokens"
    CONTAMINATION = "contamination"
    HELDOUT_GAP = "heldout_gap"
    ENDPOINT_MISMATCH = "endpoint_mismatch"
    WEIGHTS_CHANGED = "weights_changed"
    INVALID_RUN = "invalid_run"


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class FlagStatus(models.TextChoices):
    OPEN = "open"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    RESOLVED = "resolved"


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
                condition=~Q(status="dismissed") | ~Q(decision_reason=""), name="flag_dismissal_has_reason"
            ),
            models.CheckConstraint(condition=~Q(summary=""), name="flag_summary_not_empty"),
        ]
        # Maintainers' triage (issue 6): granted through the "maintainers" group.
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

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("FlagEvent rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("FlagEvent rows are append-only")


# Missing scores sort after every real one (scores are 0..100, deltas -100..100). A sentinel
# rather than NULLS LAST because SQLite cannot put NULLS LAST in an index.
MISSING_SORT_VALUE = -1000.0


def entry_sort_value(key: str, missing: float = MISSING_SORT_VALUE) -> Coalesce:
    """The leaderboard's sort expression for a numeric column ("average", "max_delta") or a
    benchmark's score inside `scores`; the indexes below are built on exactly these."""
    column = F(key) if key in ("average", "max_delta") else Cast(KT(f"scores__{key}"), models.FloatField())
    return Coalesce(column, models.Value(missing))


class LeaderboardEntry(models.Model):
    """Precomputed leaderboard row, one per submission that has measurements; rebuilt by
    services when results or flags change, so the leaderboard page never aggregates per request."""

    submission = models.OneToOneField(ModelSubmission, on_delete=models.CASCADE, related_name="entry")
    repo_id = models.CharField(max_length=193, db_index=True)
    pinned_sha = models.CharField(max_length=40, blank=True, default="")
    average = models.FloatField(null=True, blank=True, db_index=True)
    scores = models.JSONField(default=dict, blank=True)  # {slug: measured}
    claimed = models.JSONField(default=dict, blank=True)  # {slug: claimed}
    max_delta = models.FloatField(null=True, blank=True)  # largest claimed − measured
    badge = models.CharField(max_length=16, default="pending", db_index=True)  # verified/flagged/pending
    n_params = models.BigIntegerField(null=True, blank=True)
    size_class = models.CharField(max_length=16, blank=True, default="", db_index=True)
    base_family = models.CharField(max_length=100, blank=True, default="", db_index=True)
    license = models.CharField(max_length=100, blank=True, default="", db_index=True)
    verdicts = models.JSONField(default=dict, blank=True)  # {slug: verdict} for the claimed-vs-measured plot
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-average"]
        indexes = [
            # The leaderboard's default order (average, nulls last) with a stable tie-break; the
            # badge variant serves "hide flagged".
            models.Index(entry_sort_value("average").desc(), "id", name="entry_rank_idx"),
            models.Index("badge", entry_sort_value("average").desc(), "id", name="entry_badge_rank_idx"),
            models.Index(entry_sort_value("max_delta").desc(), "id", name="entry_delta_idx"),
            # Sorting by one benchmark's column reads the score out of the JSON; these expression
            # indexes (standard set, descending = the header's first click) avoid a full sort.
            *(
                models.Index(entry_sort_value(slug).desc(), "id", name=f"entry_score_{slug}_idx"[:30])
                for slug in ("gsm8k", "mmlu", "arc_challenge", "truthfulqa_mc1", "math500", "humaneval", "ifeval")
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
