"""Liveness and bounds of the pipeline's work: who works on a run or a submission (idempotent
claims, each one counted), proof that the work still advances (heartbeats that stop when the work
hangs), time limits that engine code cannot swallow, cancellation, and the sweep that re-sends
work whose worker or message was lost.

Every re-send is safe to duplicate: tasks claim their row by compare-and-swap, so a second
delivery of the same message does nothing. Every claim is counted (`attempts` on runs and
submissions): work that keeps dying (OOM, a hard time limit, a worker killed) ends FAILED with its
reason after VERITY_MAX_RUN_ATTEMPTS / VERITY_MAX_SUBMISSION_ATTEMPTS claims instead of looping.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from leaderboard.models import EvaluationRun, ModelSubmission
from leaderboard.services.notifications import announce_finish
from workers.celery_app import TASK_QUEUES, send

log = logging.getLogger(__name__)

Status = ModelSubmission.Status
RunStatus = EvaluationRun.Status
UNFINISHED_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)
PENDING = (Status.RECEIVED, Status.QUEUED, Status.RUNNING)
MAX_LOG_ENTRIES = 200
MAX_REASON_CHARS = 2000


class RunLost(Exception):
    """This worker no longer owns the run (the submission was withdrawn, or the run was handed to
    another worker after this one went silent): stop without writing anything more."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def log_entry(step: str) -> dict[str, str]:
    return {"at": timezone.now().isoformat(), "step": step[:500]}


def append_log(run_id: int, step: str) -> None:
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().filter(id=run_id).first()
        if run is None:
            return
        run.log = (list(run.log) + [log_entry(step)])[-MAX_LOG_ENTRIES:]
        run.current_step = step[:200]
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["log", "current_step", "heartbeat_at"])


def run_queue(run_id: int) -> str:
    """The queue measuring a run goes to: its worker pool's when placement chose one, else the
    task's own (`gpu`)."""
    pool = EvaluationRun.objects.filter(id=run_id).values_list("pool", flat=True).first()
    return pool or TASK_QUEUES["verity.measure_run"]


def submission_queue(submission_id: int) -> str:
    """The queue concluding a submission goes to: its own run's pool (the checks load its
    weights), else the task's own."""
    pool = (
        EvaluationRun.objects.filter(submission_id=submission_id, role=EvaluationRun.Role.SUBMISSION)
        .order_by("-created_at")
        .values_list("pool", flat=True)
        .first()
    )
    return pool or TASK_QUEUES["verity.finalize_submission"]


# Tasks that load a model's weights, with the queue of the row they are sent for.
_POOL_QUEUES: dict[str, Callable[[int], str]] = {
    "verity.measure_run": run_queue,
    "verity.finalize_submission": submission_queue,
}


def pool_queue(task_name: str, object_id: int) -> str | None:
    """Where a task for this row goes: its pool's queue for the tasks that load weights, None
    (the task's own queue) for the others."""
    pick = _POOL_QUEUES.get(task_name)
    return pick(object_id) if pick is not None else None


def send_to_pool(task_name: str, object_id: int) -> None:
    """Send a task for a row (a run, a submission) to the queue of its worker pool."""
    send(task_name, object_id, queue=pool_queue(task_name, object_id))


def send_on_commit(task_name: str, object_id: int) -> None:
    """Send a task once the current transaction commits, to its row's pool; a broker that is down
    is logged, not raised: the row is already in a state the sweep re-sends."""

    def deliver() -> None:
        try:
            send_to_pool(task_name, object_id)
        except Exception:  # noqa: BLE001 - kombu's connection errors have no one base class
            log.exception("could not send %s(%s); the sweep will re-send it", task_name, object_id)

    transaction.on_commit(deliver)


# --- runs: claims and attempts --------------------------------------------------------------------


def claim_run(run_id: int) -> EvaluationRun | None:
    """queued -> running exactly once, counting the attempt; a running run whose heartbeat is
    stale (its worker died or hangs) is taken over by compare-and-swap on the heartbeat. A run
    out of attempts ends FAILED instead (and its submissions are told)."""
    now = timezone.now()
    me = worker_id()
    claimed = EvaluationRun.objects.filter(
        id=run_id, status=RunStatus.QUEUED, attempts__lt=settings.MAX_RUN_ATTEMPTS
    ).update(status=RunStatus.RUNNING, heartbeat_at=now, worker_host=me, started_at=now, attempts=F("attempts") + 1)
    if claimed == 1:
        return EvaluationRun.objects.get(id=run_id)
    run = EvaluationRun.objects.filter(id=run_id).first()
    if run is None:
        log.warning("measure_run: run %s does not exist", run_id)
        return None
    if run.status == RunStatus.QUEUED:  # out of attempts
        give_up_run(run, _last_step(run))
        return None
    if run.status == RunStatus.RUNNING and _stale(run.heartbeat_at, now):
        if run.attempts >= settings.MAX_RUN_ATTEMPTS:
            give_up_run(run, f"worker {run.worker_host or '?'} went silent during: {_last_step(run)}")
            return None
        if _take_over(run, now, me):
            log.info("run %s taken over from a silent worker (%s)", run_id, run.worker_host)
            return EvaluationRun.objects.get(id=run_id)
    log.info("run %s is %s (worker %s); not claimed", run_id, run.status, run.worker_host)
    return None


def _last_step(run: EvaluationRun) -> str:
    return run.log[-1]["step"] if run.log else run.current_step or "?"


def _stale(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and moment < now - timedelta(seconds=settings.RUN_STALE_AFTER_S)


def _take_over(run: EvaluationRun, now: datetime, me: str) -> bool:
    return (
        EvaluationRun.objects.filter(id=run.id, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
            heartbeat_at=now, worker_host=me, attempts=F("attempts") + 1
        )
        == 1
    )


def give_up_run(run: EvaluationRun, cause: str) -> bool:
    """End a run that used up its attempts: FAILED with the reason, its submissions told."""
    reason = (
        f"stopped after {run.attempts} attempts (VERITY_MAX_RUN_ATTEMPTS={settings.MAX_RUN_ATTEMPTS}); "
        f"last: {cause}"
    )[:MAX_REASON_CHARS]
    ended = EvaluationRun.objects.filter(id=run.id, status=run.status, heartbeat_at=run.heartbeat_at).update(
        status=RunStatus.FAILED, error=reason, finished_at=timezone.now(), current_step="failed"
    )
    if ended:
        append_log(run.id, reason)
        log.warning("run %s %s", run.id, reason)
        wake_waiting_submissions(run.id)
    return bool(ended)


def owns(run_id: int) -> bool:
    return EvaluationRun.objects.filter(id=run_id, status=RunStatus.RUNNING, worker_host=worker_id()).exists()


def requeue_owned_run(run_id: int, why: str) -> bool:
    """Hand a run this worker holds back to the queue (its stored items are kept)."""
    requeued = EvaluationRun.objects.filter(id=run_id, status=RunStatus.RUNNING, worker_host=worker_id()).update(
        status=RunStatus.QUEUED, heartbeat_at=timezone.now()
    )
    if requeued:
        append_log(run_id, why)
    return bool(requeued)


def wake_waiting_submissions(run_id: int) -> None:
    """Send finalize (on commit) for the submissions that may now be complete."""
    run = EvaluationRun.objects.get(id=run_id)
    waiting = {run.submission_id} if run.submission_id else set()
    if run.role == EvaluationRun.Role.BASE:
        waiting.update(
            ModelSubmission.objects.filter(status=Status.RUNNING, claimed_base=run.model_repo).values_list(
                "id", flat=True
            )
        )
    for submission_id in sorted(waiting):
        send_on_commit("verity.finalize_submission", submission_id)


# --- submissions: claims, failure, withdrawal -----------------------------------------------------


def claim_submission_step(submission: ModelSubmission, from_status: str, what: str) -> int | None:
    """Count one more attempt at a submission's step (intake or conclusion) by compare-and-swap;
    returns the attempt's number, or None when another worker won the row or it is out of attempts
    (then it ends FAILED with the reason)."""
    if submission.attempts >= settings.MAX_SUBMISSION_ATTEMPTS:
        fail_submission(
            submission.id,
            f"{what} did not finish in {submission.attempts} attempts "
            f"(VERITY_MAX_SUBMISSION_ATTEMPTS={settings.MAX_SUBMISSION_ATTEMPTS}): its worker died or hit its "
            "time limit each time",
        )
        return None
    claimed = ModelSubmission.objects.filter(
        id=submission.id, status=from_status, attempts=submission.attempts, updated_at=submission.updated_at
    ).update(status=Status.RUNNING, attempts=F("attempts") + 1, updated_at=timezone.now())
    return submission.attempts + 1 if claimed else None


def submission_is_silent(submission: ModelSubmission) -> bool:
    """No heartbeat from the worker of its intake or conclusion for RUN_STALE_AFTER_S."""
    return _stale(submission.updated_at, timezone.now())


def fail_submission(submission_id: int, reason: str) -> bool:
    """A pending submission ends FAILED; the reason is shown on its page and kept in its intake."""
    with transaction.atomic():
        locked = ModelSubmission.objects.select_for_update().filter(id=submission_id).first()
        if locked is None or locked.status not in PENDING:
            return False
        locked.status = Status.FAILED
        locked.finished_at = timezone.now()
        locked.report = None
        locked.rejection_reason = reason[:MAX_REASON_CHARS]
        locked.intake = {**(locked.intake or {}), "error": reason[:MAX_REASON_CHARS]}
        locked.save(update_fields=["status", "finished_at", "report", "rejection_reason", "intake", "updated_at"])
        announce_finish(submission_id)  # the author's and watchers' e-mail, once committed
    log.warning("submission %s failed: %s", submission_id, reason)
    return True


def cancel_submission(submission_id: int, reason: str = "withdrawn by the author") -> bool:
    """Withdraw a pending submission: it ends REJECTED with `reason`, its queued runs are never
    claimed and its running ones stop at their next stored chunk (the worker finds it no longer
    owns them). A base run another pending submission waits for is left to finish. Returns False
    when the submission is not pending (nothing to cancel)."""
    with transaction.atomic():
        locked = ModelSubmission.objects.select_for_update().filter(id=submission_id).first()
        if locked is None or locked.status not in PENDING:
            return False
        locked.status = Status.REJECTED
        locked.rejection_reason = reason[:MAX_REASON_CHARS]
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "rejection_reason", "finished_at", "updated_at"])
        for run in locked.runs.filter(status__in=UNFINISHED_RUN):
            if run.role == EvaluationRun.Role.BASE and _base_still_wanted(run, submission_id):
                continue
            EvaluationRun.objects.filter(id=run.id, status__in=UNFINISHED_RUN).update(
                status=RunStatus.FAILED, error=f"cancelled: {reason}"[:MAX_REASON_CHARS],
                finished_at=timezone.now(), current_step="cancelled",
            )
            append_log(run.id, f"cancelled: {reason}")
    return True


def _base_still_wanted(run: EvaluationRun, withdrawn_id: int) -> bool:
    return (
        ModelSubmission.objects.filter(status__in=PENDING, claimed_base=run.model_repo)
        .exclude(id=withdrawn_id)
        .exists()
    )


# --- heartbeats -----------------------------------------------------------------------------------


class Heartbeat:
    """Refreshes a row's liveness timestamp from a thread while the main thread works.

    With a `probe` (a value that changes whenever the work advances: items stored, steps logged,
    bytes downloaded) it beats only while the work shows progress: when the probe has not changed
    for `window_s`, the main thread is taken to hang, the beats stop, and the sweep hands the work
    to another worker. Without one (intake, conclusion) a hang is bounded by the task's hard
    time limit instead."""

    def __init__(
        self, name: str, beat: Callable[[], Any], probe: Callable[[], Any] | None = None,
        window_s: float | None = None,
    ):
        self.beat = beat
        self.probe = probe
        self.window_s = window_s if window_s is not None else settings.RUN_PROGRESS_WINDOW_S
        self.withheld = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        last_value: Any = object()
        last_change = time.monotonic()
        try:
            while not self._stop.wait(settings.RUN_HEARTBEAT_S):
                if self.probe is not None:
                    value = self.probe()
                    if value != last_value:
                        last_value, last_change = value, time.monotonic()
                    if time.monotonic() - last_change > self.window_s:
                        self._withhold(time.monotonic() - last_change)
                        continue
                self.withheld = False
                self._beat_once()
        finally:
            connection.close()

    def _withhold(self, silent_s: float) -> None:
        if not self.withheld:
            log.warning("%s: no progress for %.0fs; heartbeat withheld", self._thread.name, silent_s)
        self.withheld = True

    def _beat_once(self) -> None:
        try:
            self.beat()
        except DatabaseError as exc:  # the database restarted: reconnect at the next beat
            log.warning("%s: heartbeat not written (%s)", self._thread.name, exc)
            connection.close()


def run_heartbeat(run_id: int, probe: Callable[[], Any], status: Callable[[], str | None] | None = None) -> Heartbeat:
    """The run's heartbeat; with `status` (what a long step is doing right now: "downloading
    org/m: 12.40 GB of 140.00 GB") each beat also shows it as the run's current step."""
    me = worker_id()

    def beat() -> None:
        now_doing = status() if status is not None else None
        EvaluationRun.objects.filter(id=run_id, status=RunStatus.RUNNING, worker_host=me).update(
            heartbeat_at=timezone.now(), **({"current_step": now_doing[:200]} if now_doing else {})
        )

    return Heartbeat(f"run-{run_id}", beat, probe)


def submission_heartbeat(submission_id: int) -> Heartbeat:
    return Heartbeat(
        f"submission-{submission_id}",
        lambda: ModelSubmission.objects.filter(id=submission_id, status=Status.RUNNING).update(
            updated_at=timezone.now()
        ),
    )


# --- time limits ----------------------------------------------------------------------------------


class SoftLimitWatch:
    """Notes that Celery's soft time limit fired inside the block even where engine code caught
    the exception (checks and backends catch broadly so one failure does not sink a report), so
    the step re-raises or re-queues instead of publishing what the limit cut short. The limit is
    a signal to the worker's main thread; elsewhere (the CLI, in-process tests) there is none."""

    SIGNAL = getattr(signal, "SIGUSR1", None)

    def __init__(self) -> None:
        self.hit = False
        self._previous: Any = None

    def __enter__(self) -> SoftLimitWatch:
        if self.SIGNAL is None or threading.current_thread() is not threading.main_thread():
            return self
        previous = signal.getsignal(self.SIGNAL)
        if not callable(previous):
            return self

        def noted(signum: int, frame: Any) -> None:
            self.hit = True
            previous(signum, frame)

        signal.signal(self.SIGNAL, noted)
        self._previous = previous
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(self.SIGNAL, self._previous)

    def check(self) -> None:
        """Raise the soft time limit if it fired, whoever caught it."""
        if self.hit:
            raise SoftTimeLimitExceeded("soft time limit reached")


def caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """`exc` is one of `kinds` or was raised while handling one (engine code may wrap errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


# --- the sweep ------------------------------------------------------------------------------------


def sweep(
    enqueue_run: Callable[[int], None] | None = None, enqueue_submission: Callable[[int], None] | None = None
) -> dict[str, list[int]]:
    """Re-queue runs that lost their worker or their broker message, submissions never picked
    up or whose intake died, and submissions whose runs finished but whose conclusion was lost;
    work out of attempts ends FAILED. Each call changes only rows silent for a full interval."""
    now = timezone.now()
    send_run = enqueue_run or (lambda run_id: send_to_pool("verity.measure_run", run_id))
    send_sub = enqueue_submission or (lambda sid: send("verity.verify_submission", sid))
    dead, given_up = _requeue_dead_runs(now)
    lost = _resend_lost_runs(now)
    for run_id in dead + lost:
        send_run(run_id)
    unclaimed = _resend_unclaimed_submissions(now, send_sub)
    intakes = _requeue_dead_intakes(now, send_sub)
    stuck = _resend_unfinalized_submissions(now)
    return {
        "dead_runs": dead, "lost_runs": lost, "given_up_runs": given_up, "submissions": unclaimed,
        "intakes": intakes, "finalize": stuck,
    }


def _requeue_dead_runs(now: datetime) -> tuple[list[int], list[int]]:
    dead: list[int] = []
    given_up: list[int] = []
    silent = now - timedelta(seconds=settings.RUN_STALE_AFTER_S)
    for run in EvaluationRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=silent):
        cause = f"worker {run.worker_host or '?'} went silent during: {_last_step(run)}"
        if run.attempts >= settings.MAX_RUN_ATTEMPTS:
            if give_up_run(run, cause):
                given_up.append(run.id)
            continue
        if (
            EvaluationRun.objects.filter(id=run.id, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
                status=RunStatus.QUEUED, heartbeat_at=now
            )
            == 1
        ):
            append_log(run.id, f"worker {run.worker_host or '?'} silent; re-queued")
            dead.append(run.id)
    return dead, given_up


def _resend_lost_runs(now: datetime) -> list[int]:
    lost: list[int] = []
    waiting = now - timedelta(seconds=settings.RUN_REQUEUE_AFTER_S)
    for run in EvaluationRun.objects.filter(status=RunStatus.QUEUED, heartbeat_at__lt=waiting):
        if (
            EvaluationRun.objects.filter(id=run.id, status=RunStatus.QUEUED, heartbeat_at=run.heartbeat_at).update(
                heartbeat_at=now
            )
            == 1
        ):
            append_log(run.id, "not picked up in time (broker message lost?); enqueued again")
            lost.append(run.id)
    return lost


def _resend_unclaimed_submissions(now: datetime, send_sub: Callable[[int], None]) -> list[int]:
    """Submissions never picked up (broker down when they were sent, message lost). The row is
    touched so each one is sent again at most once per REQUEUE_AFTER, not at every sweep."""
    unclaimed = list(
        ModelSubmission.objects.filter(
            status__in=(Status.RECEIVED, Status.QUEUED),
            updated_at__lt=now - timedelta(seconds=settings.RUN_REQUEUE_AFTER_S),
        ).values_list("id", flat=True)
    )
    for submission_id in unclaimed:
        ModelSubmission.objects.filter(id=submission_id).update(updated_at=now)
        send_sub(submission_id)
    return unclaimed


def _requeue_dead_intakes(now: datetime, send_sub: Callable[[int], None]) -> list[int]:
    """Submissions RUNNING without a run whose intake worker went silent (killed mid-intake, or
    the database dropped it): queued again, or FAILED when out of attempts (at the claim)."""
    requeued: list[int] = []
    silent = now - timedelta(seconds=settings.RUN_STALE_AFTER_S)
    for submission in ModelSubmission.objects.filter(status=Status.RUNNING, updated_at__lt=silent, runs__isnull=True):
        if (
            ModelSubmission.objects.filter(
                id=submission.id, status=Status.RUNNING, updated_at=submission.updated_at
            ).update(status=Status.QUEUED, updated_at=now)
            == 1
        ):
            log.warning("submission %s: intake worker silent; queued again", submission.id)
            send_sub(submission.id)
            requeued.append(submission.id)
    return requeued


def _resend_unfinalized_submissions(now: datetime) -> list[int]:
    """A submission whose runs all finished but whose conclusion was lost (its message, or a
    worker that died concluding: a live conclusion's heartbeat keeps the row fresh).

    The row is not touched here (its timestamp is the conclusion's heartbeat, which a new
    conclusion reads to know whether another one is alive); instead each silent submission is
    re-sent once per REQUEUE_AFTER of silence: at the one sweep whose moment falls in the first
    SWEEP_INTERVAL of each such period."""
    silent = now - timedelta(seconds=settings.RUN_STALE_AFTER_S)
    stuck = []
    for s in ModelSubmission.objects.filter(status=Status.RUNNING, updated_at__lt=silent):
        overdue = (now - s.updated_at).total_seconds() - settings.RUN_STALE_AFTER_S
        if overdue % settings.RUN_REQUEUE_AFTER_S >= settings.SWEEP_INTERVAL_S:
            continue
        if s.runs.exists() and not s.runs.filter(status__in=UNFINISHED_RUN).exists():
            stuck.append(s.id)
    for submission_id in stuck:
        send_to_pool("verity.finalize_submission", submission_id)
    return stuck
