"""Maintainers' triage of flags.

A flag raised by the pipeline is a *question*, not a verdict: maintainers decide what it means
before the public reads it as one. This module holds the rules (`check_*`, which raise) and the
state changes (`do_*`, which write), Zulip style; views and API endpoints only translate HTTP.

Every state change runs inside `transaction.atomic`, locks the flag row with
`SELECT … FOR UPDATE`, checks the transition against the flag's *current* state (not the state
the caller saw when it rendered the page), then writes the flag and one `FlagEvent`. Two
maintainers acting at once are therefore serialised by the row lock: the second one sees the
first one's decision and is refused if its own is no longer legal, so no event is lost and no
impossible state is stored.

The audit trail is append-only twice over: `FlagEvent.save()` refuses updates in Python, and
`flag_event_trigger_sql()` is a database trigger that refuses UPDATE and DELETE from any code
path, raw SQL included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Case, Count, IntegerField, QuerySet, Value, When
from django.utils import timezone

from leaderboard.models import (
    BenchmarkResult,
    Claim,
    EvaluationRun,
    Flag,
    FlagEvent,
    ModelSubmission,
    SampleResult,
)
from leaderboard.services import notifications, ownership
from leaderboard.services.flags import do_raise_flag
from leaderboard.services.leaderboard import do_refresh_leaderboard_entry, split_superseded
from verification.compare import Judgement, claims_family_size, judge_claim, setup_matches
from workers.celery_app import send
from workers.storage import measurement_from_row, measurements_of, run_plan


MAINTAINERS_GROUP = "maintainers"
TRIAGE_PERMISSION_CODENAME = "triage_flag"
TRIAGE_PERMISSION = f"leaderboard.{TRIAGE_PERMISSION_CODENAME}"

MAX_REASON_CHARS = 5000
MAX_REPLY_CHARS = 10000

Status = Flag.Status
Action = FlagEvent.Action

# The flag state machine. Anything not listed is refused.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.OPEN: frozenset({Status.CONFIRMED, Status.DISMISSED, Status.RESOLVED}),
    Status.CONFIRMED: frozenset({Status.RESOLVED, Status.OPEN}),
    Status.DISMISSED: frozenset({Status.OPEN}),
    Status.RESOLVED: frozenset({Status.OPEN}),
}
# The event written for a move *to* a state.
ACTION_FOR_TARGET: dict[str, str] = {
    Status.CONFIRMED: Action.CONFIRMED,
    Status.DISMISSED: Action.DISMISSED,
    Status.RESOLVED: Action.RESOLVED,
    Status.OPEN: Action.REOPENED,
}
# A dismissal is shown to the public with its reason, so it must have one.
REASON_REQUIRED_FOR: frozenset[str] = frozenset({Status.DISMISSED})

SEVERITY_RANK = {Flag.Severity.CRITICAL: 0, Flag.Severity.WARNING: 1, Flag.Severity.INFO: 2}


class TriageError(Exception):
    """A refused triage request; the message is shown to the person who made it."""


class IllegalTransition(TriageError):
    pass


# --------------------------------------------------------------------------------------------
# The maintainers' group and the DB guard on the audit trail
# --------------------------------------------------------------------------------------------


def ensure_maintainers_group(using: str = DEFAULT_DB_ALIAS) -> Group:
    """Create (idempotently) the "maintainers" group holding the triage permission."""
    content_type = ContentType.objects.db_manager(using).get_for_model(Flag)
    permission, _ = Permission.objects.using(using).get_or_create(
        content_type=content_type,
        codename=TRIAGE_PERMISSION_CODENAME,
        defaults={"name": "Can triage flags"},
    )
    group, _ = Group.objects.using(using).get_or_create(name=MAINTAINERS_GROUP)
    group.permissions.add(permission)
    return group


def ensure_maintainers_group_after_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate receiver (connected in LeaderboardConfig.ready)."""
    ensure_maintainers_group(using=using)


def flag_event_trigger_sql(vendor: str = "postgresql") -> str:
    """SQL installing a trigger that refuses UPDATE and DELETE on leaderboard_flagevent, so no
    code path — ORM bulk update, raw SQL, an admin action — can rewrite the audit trail.

    TRUNCATE is left alone on purpose: it is what a test database flush uses, and no
    application code path truncates tables."""
    table = FlagEvent._meta.db_table
    if vendor == "postgresql":
        return f"""
CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{table} is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS {table}_append_only ON {table};
CREATE TRIGGER {table}_append_only
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {table}_append_only();
"""
    if vendor == "sqlite":
        return f"""
DROP TRIGGER IF EXISTS {table}_no_update;
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END;
DROP TRIGGER IF EXISTS {table}_no_delete;
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END;
"""
    raise ValueError(f"no append-only trigger for database vendor {vendor!r}")


def flag_event_trigger_reverse_sql(vendor: str = "postgresql") -> str:
    """Reverse of `flag_event_trigger_sql` (for the migration's reverse_sql)."""
    table = FlagEvent._meta.db_table
    if vendor == "postgresql":
        return f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};\nDROP FUNCTION IF EXISTS {table}_append_only();"
    if vendor == "sqlite":
        return f"DROP TRIGGER IF EXISTS {table}_no_update;\nDROP TRIGGER IF EXISTS {table}_no_delete;"
    raise ValueError(f"no append-only trigger for database vendor {vendor!r}")


# --------------------------------------------------------------------------------------------
# Checks (raise; never write)
# --------------------------------------------------------------------------------------------

UserLike = AbstractBaseUser | AnonymousUser


def is_maintainer(user: UserLike | None) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.has_perm(TRIAGE_PERMISSION))


def check_can_triage(user: UserLike | None) -> None:
    if not is_maintainer(user):
        raise PermissionDenied("Only maintainers can triage flags.")


def is_flag_author(user: UserLike | None, flag: Flag) -> bool:
    """The author of a flag's submission (the account that submitted it)."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and flag.submission.submitter_id is not None
        and flag.submission.submitter_id == user.pk
    )


def is_repo_owner_of(user: UserLike | None, flag: Flag) -> bool:
    """Someone who has shown control of the flagged repository: they may always answer its flags,
    community verifications' included."""
    return ownership.is_repo_owner(user, flag.submission.repo_id)


def check_can_see_thread(user: UserLike | None, flag: Flag) -> None:
    """The thread (events, replies) is for maintainers, the submission's author and the
    repository's owner only."""
    if not (is_maintainer(user) or is_flag_author(user, flag) or is_repo_owner_of(user, flag)):
        raise PermissionDenied("Only the submission's author, the model's owner and maintainers can see this flag's thread.")


check_can_reply = check_can_see_thread


def check_transition(current: str, target: str) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"A flag that is {current} cannot become {target}.")


def check_text(text: str | None, *, required: bool, max_chars: int, what: str = "reason") -> str:
    cleaned = (text or "").strip()
    if required and not cleaned:
        raise TriageError(f"A {what} is required.")
    if len(cleaned) > max_chars:
        raise TriageError(f"The {what} is too long ({len(cleaned)} characters, at most {max_chars}).")
    return cleaned


def check_assignee(username: str | None) -> AbstractBaseUser | None:
    """The maintainer named by `username`, or None to unassign."""
    if not username:
        return None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise TriageError(f"No user named {username!r}.")
    if not is_maintainer(user):
        raise TriageError(f"{username} is not a maintainer; flags can only be assigned to maintainers.")
    return user


def check_claim_setup(shots: Any, cot: Any, chat_template: Any) -> dict[str, Any]:
    """Validate a corrected claim setup. None means "not stated"."""
    if shots is not None:
        if isinstance(shots, bool) or not isinstance(shots, int):
            raise TriageError("shots must be a whole number between 0 and 64.")
        if not 0 <= shots <= 64:
            raise TriageError("shots must be between 0 and 64.")
    for name, value in (("cot", cot), ("chat_template", chat_template)):
        if value is not None and not isinstance(value, bool):
            raise TriageError(f"{name} must be true, false or unstated.")
    return {"shots": shots, "cot": cot, "chat_template": chat_template}


# --------------------------------------------------------------------------------------------
# Reading: the queue
# --------------------------------------------------------------------------------------------

QUEUE_SORTS: dict[str, tuple[str, ...]] = {
    # Oldest critical first: what has waited longest among the worst goes on top.
    "severity": ("severity_rank", "created_at", "id"),
    "oldest": ("created_at", "id"),
    "newest": ("-created_at", "-id"),
    "model": ("submission__repo_id", "severity_rank", "created_at"),
    "kind": ("kind", "severity_rank", "created_at"),
    "benchmark": ("benchmark", "severity_rank", "created_at"),
    "updated": ("-updated_at", "-id"),
}
DEFAULT_SORT = "severity"


@dataclass(frozen=True)
class QueueFilters:
    status: str = Status.OPEN  # "" = every status
    kind: str = ""
    severity: str = ""
    benchmark: str = ""
    model: str = ""  # substring of the repo id
    assignee: str = ""  # "", "me", "none" or a username
    sort: str = DEFAULT_SORT

    @classmethod
    def from_params(cls, params: Any) -> "QueueFilters":
        """From a QueryDict / dict; unknown values are refused rather than silently ignored."""
        status = params.get("status", Status.OPEN)
        if status == "all":
            status = ""
        if status and status not in Status.values:
            raise TriageError(f"Unknown status {status!r}.")
        kind = params.get("kind", "") or ""
        if kind and kind not in Flag.Kind.values:
            raise TriageError(f"Unknown flag kind {kind!r}.")
        severity = params.get("severity", "") or ""
        if severity and severity not in Flag.Severity.values:
            raise TriageError(f"Unknown severity {severity!r}.")
        sort = params.get("sort", "") or DEFAULT_SORT
        if sort not in QUEUE_SORTS:
            raise TriageError(f"Unknown sort {sort!r}; one of {', '.join(QUEUE_SORTS)}.")
        return cls(
            status=status,
            kind=kind,
            severity=severity,
            benchmark=(params.get("benchmark", "") or "").strip()[:64],
            model=(params.get("model", "") or "").strip()[:193],
            assignee=(params.get("assignee", "") or "").strip()[:150],
            sort=sort,
        )


def _with_severity_rank(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(
        severity_rank=Case(
            *(When(severity=severity, then=Value(rank)) for severity, rank in SEVERITY_RANK.items()),
            default=Value(len(SEVERITY_RANK)),
            output_field=IntegerField(),
        )
    )


def _filtered(filters: QueueFilters, viewer: UserLike | None, *, ignore_kind: bool = False) -> QuerySet:
    queryset = Flag.objects.all()
    if filters.status:
        queryset = queryset.filter(status=filters.status)
    if filters.kind and not ignore_kind:
        queryset = queryset.filter(kind=filters.kind)
    if filters.severity:
        queryset = queryset.filter(severity=filters.severity)
    if filters.benchmark:
        queryset = queryset.filter(benchmark=filters.benchmark)
    if filters.model:
        queryset = queryset.filter(submission__repo_id__icontains=filters.model)
    if filters.assignee == "none":
        queryset = queryset.filter(assignee__isnull=True)
    elif filters.assignee == "me":
        queryset = queryset.filter(assignee_id=getattr(viewer, "pk", None))
    elif filters.assignee:
        queryset = queryset.filter(assignee__username=filters.assignee)
    return queryset


def triage_queue(filters: QueueFilters, viewer: UserLike | None = None) -> QuerySet:
    queryset = _with_severity_rank(_filtered(filters, viewer))
    return queryset.select_related("submission", "assignee", "run").order_by(*QUEUE_SORTS[filters.sort])


def queue_counts_by_kind(filters: QueueFilters, viewer: UserLike | None = None) -> dict[str, int]:
    """Flags per kind under every filter but the kind one (so the counts work as kind tabs)."""
    rows = _filtered(filters, viewer, ignore_kind=True).values("kind").annotate(n=Count("id"))
    counts = {kind: 0 for kind in Flag.Kind.values}
    counts.update({row["kind"]: row["n"] for row in rows})
    return counts


# --------------------------------------------------------------------------------------------
# Reading: what the public sees
# --------------------------------------------------------------------------------------------

PUBLIC_LABELS = {
    Status.OPEN: "under review",
    Status.CONFIRMED: "confirmed",
    Status.DISMISSED: "dismissed",
    Status.RESOLVED: "resolved",
}


@dataclass(frozen=True)
class PublicFlag:
    flag: Flag
    label: str
    reason: str  # the decision's reason, shown for dismissed/resolved/confirmed flags
    decided_at: Any  # when the current state was decided (None while under review)


def public_flag(flag: Flag) -> PublicFlag | None:
    """How a flag is shown on the public model page, or None when it is not shown at all (an
    info-level flag that maintainers dismissed: noise, not a finding)."""
    if flag.status == Status.DISMISSED and flag.severity == Flag.Severity.INFO:
        return None
    if flag.status == Status.OPEN:
        reason, decided_at = "", None
    else:
        reason = flag.decision_reason
        decided_at = (
            flag.events.filter(to_status=flag.status).exclude(from_status=flag.status)
            .order_by("-at", "-id").values_list("at", flat=True).first()
        )
    return PublicFlag(flag=flag, label=PUBLIC_LABELS[flag.status], reason=reason, decided_at=decided_at)


def public_flags_for(submission: ModelSubmission) -> list[PublicFlag]:
    shown = (public_flag(flag) for flag in submission.flags.order_by("created_at", "id"))
    return [item for item in shown if item is not None]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _flag_pk(flag: Flag | int) -> int:
    return flag.pk if isinstance(flag, Flag) else int(flag)


def _locked_flag(flag: Flag | int) -> Flag:
    """The flag row, locked until the surrounding transaction ends. Must be called inside
    transaction.atomic."""
    try:
        return Flag.objects.select_for_update(of=("self",)).select_related("submission").get(pk=_flag_pk(flag))
    except Flag.DoesNotExist:
        raise TriageError("No such flag.") from None


def _event(flag: Flag, actor: UserLike | None, action: str, *, from_status: str, to_status: str,
           message: str = "", data: dict[str, Any] | None = None) -> FlagEvent:
    return FlagEvent.objects.create(
        flag=flag,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data or {},
    )


def _refresh_leaderboard(submission: ModelSubmission) -> None:
    """The badge follows decided flags."""
    do_refresh_leaderboard_entry(submission)


def _notify_on_commit(callback: Any, *args: Any) -> None:
    transaction.on_commit(lambda: callback(*args))


def do_transition(flag: Flag | int, actor: UserLike, target: str, reason: str = "") -> Flag:
    """Move a flag to `target` if that is legal from its current state; one event, then the
    author is told and the leaderboard row rebuilt."""
    check_can_triage(actor)
    if target not in TRANSITIONS:
        raise TriageError(f"Unknown flag state {target!r}.")
    reason = check_text(reason, required=target in REASON_REQUIRED_FOR, max_chars=MAX_REASON_CHARS)
    with transaction.atomic():
        locked = _locked_flag(flag)
        current = locked.status
        check_transition(current, target)
        locked.status = target
        # The public reads decision_reason next to the state; a reopened flag has no decision.
        locked.decision_reason = "" if target == Status.OPEN else reason
        locked.save(update_fields=["status", "decision_reason", "updated_at"])
        event = _event(locked, actor, ACTION_FOR_TARGET[target], from_status=current, to_status=target,
                       message=reason)
        _refresh_leaderboard(locked.submission)
        _notify_on_commit(notifications.do_notify_flag_decided, locked, event)
    return locked


def do_confirm(flag: Flag | int, actor: UserLike, reason: str = "") -> Flag:
    return do_transition(flag, actor, Status.CONFIRMED, reason)


def do_dismiss(flag: Flag | int, actor: UserLike, reason: str) -> Flag:
    return do_transition(flag, actor, Status.DISMISSED, reason)


def do_resolve(flag: Flag | int, actor: UserLike, reason: str = "") -> Flag:
    return do_transition(flag, actor, Status.RESOLVED, reason)


def do_reopen(flag: Flag | int, actor: UserLike, reason: str = "") -> Flag:
    return do_transition(flag, actor, Status.OPEN, reason)


def do_assign(flag: Flag | int, actor: UserLike, assignee: AbstractBaseUser | None) -> Flag:
    """Assign the flag to a maintainer (None unassigns). Re-assigning to the current assignee
    is a no-op without an event."""
    check_can_triage(actor)
    if assignee is not None and not is_maintainer(assignee):
        raise TriageError("Flags can only be assigned to maintainers.")
    with transaction.atomic():
        locked = _locked_flag(flag)
        previous_id = locked.assignee_id
        new_id = assignee.pk if assignee is not None else None
        if previous_id == new_id:
            return locked
        previous_name = locked.assignee.get_username() if locked.assignee_id else ""
        locked.assignee = assignee
        locked.save(update_fields=["assignee", "updated_at"])
        _event(
            locked, actor, Action.ASSIGNED, from_status=locked.status, to_status=locked.status,
            data={"from": previous_name, "to": assignee.get_username() if assignee is not None else ""},
        )
    return locked


def do_take(flag: Flag | int, actor: UserLike) -> Flag:
    return do_assign(flag, actor, actor)  # type: ignore[arg-type]


def do_note(flag: Flag | int, actor: UserLike, message: str) -> FlagEvent:
    """An internal maintainers' note on the trail (not sent to the author)."""
    check_can_triage(actor)
    message = check_text(message, required=True, max_chars=MAX_REPLY_CHARS, what="note")
    with transaction.atomic():
        locked = _locked_flag(flag)
        return _event(locked, actor, Action.NOTE, from_status=locked.status, to_status=locked.status,
                      message=message)


def do_reply(flag: Flag | int, actor: UserLike, message: str) -> FlagEvent:
    """A reply on the flag's thread, by the submission's author or a maintainer; the other
    side is told by e-mail."""
    message = check_text(message, required=True, max_chars=MAX_REPLY_CHARS, what="reply")
    with transaction.atomic():
        locked = _locked_flag(flag)
        check_can_reply(actor, locked)
        role = "author" if is_flag_author(actor, locked) else "owner" if is_repo_owner_of(actor, locked) else "maintainer"
        event = _event(locked, actor, Action.REPLY, from_status=locked.status, to_status=locked.status,
                       message=message, data={"role": role})
        _notify_on_commit(notifications.do_notify_reply, locked, event)
    return event


# Submission states in which a measurement is already under way: a second one would race it.
RUN_IN_FLIGHT = (ModelSubmission.Status.QUEUED, ModelSubmission.Status.RUNNING)


def do_request_rerun(flag: Flag | int, actor: UserLike, reason: str = "") -> Flag:
    """Queue a fresh measurement of the submission at its pinned sha.

    The submission row is locked too, so two maintainers asking at once queue one run, not two;
    the task is sent only after the commit, so the worker sees the QUEUED row."""
    check_can_triage(actor)
    reason = check_text(reason, required=False, max_chars=MAX_REASON_CHARS)
    with transaction.atomic():
        locked = _locked_flag(flag)
        submission = ModelSubmission.objects.select_for_update().get(pk=locked.submission_id)
        if submission.status in RUN_IN_FLIGHT:
            raise TriageError(f"A run of this submission is already {submission.status}; wait for it to finish.")
        if submission.status == ModelSubmission.Status.REJECTED:
            raise TriageError("This submission was rejected at intake; there is nothing to re-run.")
        previous_status = submission.status
        submission.status = ModelSubmission.Status.QUEUED
        submission.queued_at = timezone.now()
        submission.attempts = 0  # a fresh run gets its full attempt budget
        submission.save(update_fields=["status", "queued_at", "attempts", "updated_at"])
        _event(
            locked, actor, Action.RERUN_REQUESTED, from_status=locked.status, to_status=locked.status,
            message=reason,
            data={"submission_id": submission.pk, "sha": submission.pinned_sha,
                  "submission_status_before": previous_status},
        )
        submission_id = submission.pk
        transaction.on_commit(lambda: send("verity.verify_submission", submission_id))
    return locked


# --------------------------------------------------------------------------------------------
# Correcting a claim's recorded setup and re-comparing without re-running
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recomparison:
    result: BenchmarkResult
    verdict: str
    z: float | None
    flag: Flag


def do_correct_claim_setup(
    flag: Flag | int,
    actor: UserLike,
    *,
    shots: int | None,
    cot: bool | None,
    chat_template: bool | None,
    reason: str,
) -> Recomparison:
    """Correct the recorded setup of the claim behind a score_mismatch flag and re-compare it
    with what was already measured under that setup (no new run).

    The claim is judged again by the report's own rule (verification.compare.judge_claim) on
    the stored measurement; the flag stays raised (or is reopened) only when the judge raises
    score_mismatch again, and is resolved otherwise. Each change writes an event."""
    check_can_triage(actor)
    setup = check_claim_setup(shots, cot, chat_template)
    reason = check_text(reason, required=True, max_chars=MAX_REASON_CHARS)
    with transaction.atomic():
        locked = _locked_flag(flag)
        claim, old_setup = _correct_claim(locked, actor, setup)
        run = _compared_run(locked)
        result, others = _results_for_claim(run, claim)
        judgement, k_claims = _rejudge(run, claim, result, others)
        comparison = {
            "benchmark": locked.benchmark, "run_id": run.pk, "result_id": result.pk,
            "old_setup": old_setup, "new_setup": claim.setup(), "measured": result.measured,
            "ci_low": result.ci_low, "ci_high": result.ci_high, "n": result.n,
            "claimed": claim.score, "z": judgement.z, "verdict": judgement.verdict, "k_benchmarks": k_claims,
        }
        _event(locked, actor, Action.CLAIM_CORRECTED, from_status=locked.status, to_status=locked.status,
               message=reason, data=comparison)
        _apply_judgement(locked, actor, run, judgement, claim.setup())
    return Recomparison(result=result, verdict=judgement.verdict, z=judgement.z, flag=locked)


def _correct_claim(flag: Flag, actor: UserLike, setup: dict[str, Any]) -> tuple[Claim, dict[str, Any]]:
    """Write the corrected setup on the claim behind `flag`; returns it and its old setup."""
    if flag.kind != Flag.Kind.SCORE_MISMATCH or not flag.benchmark:
        raise TriageError("Only a score_mismatch flag on one benchmark has a claim setup to correct.")
    claim = Claim.objects.select_for_update().filter(
        submission_id=flag.submission_id, benchmark=flag.benchmark
    ).first()
    if claim is None:
        raise TriageError(f"The submission has no claim on {flag.benchmark}.")
    old_setup = claim.setup()
    claim.shots, claim.cot, claim.chat_template = setup["shots"], setup["cot"], setup["chat_template"]
    claim.corrected_by = actor
    claim.save(update_fields=["shots", "cot", "chat_template", "corrected_by"])
    return claim, old_setup


def _compared_run(flag: Flag) -> EvaluationRun:
    """The run that raised the flag, else the submission's latest finished one."""
    finished_runs = EvaluationRun.objects.filter(
        submission_id=flag.submission_id, role=EvaluationRun.Role.SUBMISSION, status=EvaluationRun.Status.DONE
    )
    run = finished_runs.filter(pk=flag.run_id).first() if flag.run_id else None
    run = run or finished_runs.order_by("-finished_at", "-id").first()
    if run is None:
        raise TriageError("The submission has no finished run to compare against.")
    return run


def _results_for_claim(run: EvaluationRun, claim: Claim) -> tuple[BenchmarkResult, list[BenchmarkResult]]:
    """The run's standing result measured under the claim's setup (the largest, if several), and
    the run's other standing results of that benchmark. A result a re-scoring superseded is left
    as it was: it is the record of the earlier scoring, not a measurement to judge again."""
    locked = BenchmarkResult.objects.select_for_update().filter(run=run, benchmark=claim.benchmark)
    results, _ = split_superseded(list(locked))
    setup = claim.setup()
    matching = [result for result in results if setup_matches(setup, result.setup or {})]
    if not matching:
        raise TriageError(
            f"Run {run.pk} measured {claim.benchmark} under no setup matching {setup or 'the claim'}; "
            "request a re-run under the corrected setup instead."
        )
    # Largest first; at equal size the latest, so a re-scored result stands over the one it re-scored.
    result = max(matching, key=lambda item: (item.n, item.id))
    return result, [other for other in results if other.pk != result.pk]


def _rejudge(
    run: EvaluationRun, claim: Claim, result: BenchmarkResult, others: list[BenchmarkResult]
) -> tuple[Judgement, int]:
    """Judge the claim against `result` as the report would, within the same family of claims,
    and store the verdict; the benchmark's other results no longer stand for the claim (they
    were measured under the setup that was wrongly recorded)."""
    measurements = measurements_of(run, run_plan(run))
    measurements[claim.benchmark] = measurement_from_row(result)
    claimed = Claim.objects.filter(submission_id=run.submission_id).values_list("benchmark", flat=True)
    k_claims = claims_family_size(claimed, measurements)
    for other in others:
        if other.claimed is not None:
            _store_judgement(other, None, judge_claim(None, measurement_from_row(other), k_claims))
    judgement = judge_claim(claim.score, measurements[claim.benchmark], k_claims)
    _store_judgement(result, claim.score, judgement)
    return judgement, k_claims


def _store_judgement(result: BenchmarkResult, claimed: float | None, judgement: Judgement) -> None:
    result.claimed, result.z, result.verdict = claimed, judgement.z, judgement.verdict
    result.save(update_fields=["claimed", "z", "verdict"])


def _apply_judgement(
    flag: Flag, actor: UserLike, run: EvaluationRun, judgement: Judgement, setup: dict[str, Any]
) -> None:
    """Keep or reopen the score_mismatch flag when the judge raises it again, else resolve it;
    a flag the judge raises instead (invalid_run) goes through the one flag writer."""
    raised = judgement.flag
    still_mismatch = raised is not None and raised["kind"] == Flag.Kind.SCORE_MISMATCH
    if raised is not None and not still_mismatch:
        do_raise_flag(flag.submission, run, raised)
    if still_mismatch:
        flag.severity = raised["severity"]
    current = flag.status
    target = _state_after_rejudging(current, still_mismatch)
    decided: FlagEvent | None = None
    if target is not None:
        outcome = f"Claim setup corrected; re-compared under {setup or 'no stated setup'}: {judgement.verdict}" + (
            f" (z = {judgement.z:.2f})." if judgement.z is not None else "."
        )
        flag.status = target
        flag.decision_reason = "" if target == Status.OPEN else outcome
        decided = _event(flag, actor, ACTION_FOR_TARGET[target], from_status=current, to_status=target,
                         message=outcome, data={"verdict": judgement.verdict})
    flag.save(update_fields=["status", "decision_reason", "severity", "updated_at"])
    _refresh_leaderboard(flag.submission)
    if decided is not None:
        _notify_on_commit(notifications.do_notify_flag_decided, flag, decided)


def _state_after_rejudging(current: str, still_mismatch: bool) -> str | None:
    """Reopen a decided flag whose mismatch stands again; resolve one that no longer holds."""
    if still_mismatch:
        return Status.OPEN if current != Status.OPEN and Status.OPEN in TRANSITIONS[current] else None
    return Status.RESOLVED if Status.RESOLVED in TRANSITIONS[current] else None


# --------------------------------------------------------------------------------------------
# The flag page's data
# --------------------------------------------------------------------------------------------


def flag_comparison(flag: Flag) -> dict[str, Any]:
    """The claim and the measurement side by side, for the flag's benchmark: the run's standing
    results, and those a re-scoring superseded (`superseded`: (result, the version that replaced
    it)), shown apart so the old scoring is not read as the current one."""
    if not flag.benchmark:
        return {}
    claim = Claim.objects.filter(submission_id=flag.submission_id, benchmark=flag.benchmark).first()
    run = flag.run
    if run is None:
        run = (
            EvaluationRun.objects.filter(submission_id=flag.submission_id, role=EvaluationRun.Role.SUBMISSION)
            .order_by("-created_at", "-id")
            .first()
        )
    results = list(BenchmarkResult.objects.filter(run=run, benchmark=flag.benchmark).order_by("id")) if run else []
    standing, replaced_by = split_superseded(results)
    superseded = [(old, replaced_by[old.id].benchmark_version) for old in results if old.id in replaced_by]
    return {"claim": claim, "run": run, "results": standing, "superseded": superseded}


def flag_samples(flag: Flag, limit: int = 20) -> list[SampleResult]:
    """Per-item samples behind a finding: the ones the evidence names (`sample_indices` /
    `samples`), else the flag's run's samples on its benchmark (errors and wrong answers first)."""
    if flag.run_id is None or not flag.benchmark:
        return []
    queryset = SampleResult.objects.filter(run_id=flag.run_id, benchmark=flag.benchmark)
    named = (flag.evidence or {}).get("sample_indices")
    if isinstance(named, list) and all(isinstance(index, int) for index in named):
        return list(queryset.filter(index__in=named[:limit]).order_by("index"))
    return list(queryset.order_by("correct", "index")[:limit])


def flag_thread(flag: Flag, viewer: UserLike | None = None) -> QuerySet:
    """The flag's events in order, as `viewer` may read them: maintainers' internal notes only for
    maintainers (authors and owners read the thread too)."""
    events = flag.events.select_related("actor").order_by("at", "id")
    if not is_maintainer(viewer):
        events = events.exclude(action=Action.NOTE)
    return events
