"""Bounded work, in-process on the real PostgreSQL: attempts counted and capped, time limits that
engine code cannot swallow, heartbeats that stop when the work stops, idempotent intake, and
withdrawal. (tests/workers/test_faults.py drives the same paths through real worker processes.)"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from leaderboard.models import EvaluationRun, ModelSubmission, SampleResult
from verification import pipeline
from verification.checks import CheckContext, ModelRef, run_checks
from verification.claims import ClaimsDoc
from verification.records import SampleRecord
from workers import liveness, steps, storage

pytestmark = pytest.mark.django_db

Status = ModelSubmission.Status
RunStatus = EvaluationRun.Status
PLAN = [{"slug": "arc_challenge", "version": "1", "setup": {"shots": 0, "cot": False, "chat_template": False}}]


def _submission(repo_id: str = "verity-test/bounds", status: str = Status.RUNNING, age_s: float = 0, **fields):
    submission = ModelSubmission.objects.create(repo_id=repo_id, requested_revision="main", status=status, **fields)
    ModelSubmission.objects.filter(id=submission.id).update(updated_at=timezone.now() - timedelta(seconds=age_s))
    submission.refresh_from_db()
    return submission


def _run(submission, status: str, heartbeat_age_s: float = 0, role: str = EvaluationRun.Role.SUBMISSION, **fields):
    return EvaluationRun.objects.create(
        submission=submission, role=role, model_repo=fields.pop("model_repo", submission.repo_id), status=status,
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age_s), benchmarks=PLAN, **fields,
    )


def _record(index: int, error: str | None = None) -> SampleRecord:
    return SampleRecord(index, str(index), "p", "o", "A", "A", error is None, 1.0 if error is None else 0.0, error)


@pytest.fixture
def soft_limit_signal():
    """The handler Celery's pool installs in a worker process: SIGUSR1 raises the soft limit."""

    def raise_limit(signum, frame):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGUSR1, raise_limit)
    yield lambda: os.kill(os.getpid(), signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, previous)


# --- attempts ---------------------------------------------------------------------------------------


def test_a_run_out_of_attempts_ends_failed_and_its_submission_fails_with_the_reason(settings):
    settings.MAX_RUN_ATTEMPTS = 2
    settings.RUN_STALE_AFTER_S = 30
    submission = _submission()
    dying = _run(submission, RunStatus.RUNNING, 120, attempts=2, worker_host="gpu-1:7",
                 log=[{"at": "t", "step": "measuring arc_challenge"}])
    requeued: list[int] = []
    result = liveness.sweep(enqueue_run=requeued.append, enqueue_submission=lambda _id: None)
    assert result["given_up_runs"] == [dying.id] and requeued == []
    dying.refresh_from_db()
    assert dying.status == RunStatus.FAILED
    assert "stopped after 2 attempts" in dying.error and "gpu-1:7 went silent during: measuring" in dying.error
    assert steps.finalize(submission.id) == Status.FAILED
    submission.refresh_from_db()
    assert submission.status == Status.FAILED and "stopped after 2 attempts" in submission.rejection_reason

    # the same bound when a queued run is delivered once more
    other = _run(_submission("verity-test/bounds-2"), RunStatus.QUEUED, attempts=2,
                 log=[{"at": "t", "step": "soft time limit reached with 4 items stored; re-queued to resume"}])
    assert liveness.claim_run(other.id) is None
    other.refresh_from_db()
    assert other.status == RunStatus.FAILED and "last: soft time limit reached" in other.error


def test_each_claim_of_a_run_is_counted(settings):
    settings.MAX_RUN_ATTEMPTS = 3
    settings.RUN_STALE_AFTER_S = 30
    run = _run(_submission(), RunStatus.QUEUED)
    assert liveness.claim_run(run.id).attempts == 1
    EvaluationRun.objects.filter(id=run.id).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    assert liveness.claim_run(run.id).attempts == 2  # taken over from a silent worker


def test_an_intake_that_keeps_dying_is_retried_then_fails_with_its_reason(settings, monkeypatch):
    settings.MAX_SUBMISSION_ATTEMPTS = 2
    settings.RUN_STALE_AFTER_S = 30
    dead = _submission(age_s=300, attempts=1)  # RUNNING without runs, intake worker silent
    sent: list[int] = []
    assert liveness.sweep(enqueue_run=lambda _id: None, enqueue_submission=sent.append)["intakes"] == [dead.id]
    dead.refresh_from_db()
    assert dead.status == Status.QUEUED and sent == [dead.id]

    def crash(*args, **kwargs):
        raise RuntimeError("header parser blew up")

    monkeypatch.setattr(pipeline, "prepare", crash)
    assert steps.start_verification(dead.id, enqueue=lambda _id: None) == []
    dead.refresh_from_db()
    assert dead.status == Status.FAILED and dead.attempts == 2
    assert dead.rejection_reason == "intake failed after 2 attempts: RuntimeError: header parser blew up"

    fresh = _submission("verity-test/bounds-fresh", Status.RECEIVED)
    with pytest.raises(steps.Retryable):  # a bounded retry: back in the queue, attempt counted
        steps.start_verification(fresh.id, enqueue=lambda _id: None)
    fresh.refresh_from_db()
    assert fresh.status == Status.QUEUED and fresh.attempts == 1

    spent = _submission("verity-test/bounds-spent", Status.QUEUED, attempts=2)
    assert steps.start_verification(spent.id, enqueue=lambda _id: None) == []
    spent.refresh_from_db()
    assert spent.status == Status.FAILED and "intake did not finish in 2 attempts" in spent.rejection_reason


def test_a_live_intake_is_left_alone_and_a_superseded_one_creates_no_run(tiny_base, settings, monkeypatch):
    settings.CORE_BENCHMARKS = ("arc_challenge",)
    settings.RUN_STALE_AFTER_S = 30
    submission = _submission(tiny_base.repo_id, Status.RECEIVED)
    real_prepare = pipeline.prepare
    seen: dict[str, list[int]] = {}

    def prepare_with_redeliveries(*args, **kwargs):
        # The same message delivered again while this intake is alive: nothing happens.
        seen["duplicate"] = steps.start_verification(submission.id, enqueue=lambda _id: None)
        # Then this worker goes silent; the redelivery takes over and creates the runs.
        ModelSubmission.objects.filter(id=submission.id).update(updated_at=timezone.now() - timedelta(seconds=300))
        monkeypatch.setattr(pipeline, "prepare", real_prepare)
        seen["takeover"] = steps.start_verification(submission.id, enqueue=lambda _id: None)
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(pipeline, "prepare", prepare_with_redeliveries)
    assert steps.start_verification(submission.id, enqueue=lambda _id: None) == []  # superseded
    assert seen["duplicate"] == [] and len(seen["takeover"]) == 1
    assert list(submission.runs.values_list("id", flat=True)) == seen["takeover"]
    submission.refresh_from_db()
    assert submission.status == Status.RUNNING and submission.attempts == 0  # the conclusion's count starts


# --- time limits --------------------------------------------------------------------------------------


def test_a_soft_time_limit_swallowed_by_a_check_is_raised_again_and_nothing_published(
    settings, monkeypatch, soft_limit_signal, tmp_path
):
    settings.MAX_SUBMISSION_ATTEMPTS = 2
    settings.MODEL_CACHE_DIR = tmp_path / "model_cache"
    submission = _submission()
    _run(submission, RunStatus.DONE)

    def limit_hits_inside_a_check(_context):
        soft_limit_signal()
        time.sleep(5)  # interrupted by the limit, which run_checks then catches

    def conclude(*args, **kwargs):
        context = CheckContext(
            model=ModelRef("org/m", "org/m", None, None), base=None, candidates=[], claims=ClaimsDoc(), intake={},
            benchmarks={}, base_benchmarks=None, endpoint_url=None, endpoint_model=None, datasets_dir=None,
            backend_name="transformers",
        )
        sections, flags, log = run_checks(context, checks=[limit_hits_inside_a_check])
        assert log[0]["status"] == "error"  # swallowed there...
        return {"flags": flags, "sections": sections}

    monkeypatch.setattr(steps, "_conclusion", lambda *args: None)
    monkeypatch.setattr(pipeline, "conclude", conclude)
    with pytest.raises(SoftTimeLimitExceeded):  # ...and raised again by the step
        steps.finalize(submission.id)
    submission.refresh_from_db()
    assert submission.status == Status.RUNNING and submission.report is None and submission.attempts == 1
    assert steps.finalize(submission.id) == "busy"  # its heartbeat is fresh: another conclusion is alive
    ModelSubmission.objects.filter(id=submission.id).update(updated_at=timezone.now() - timedelta(seconds=600))
    assert steps.finalize(submission.id) == Status.FAILED  # the last attempt
    submission.refresh_from_db()
    assert submission.rejection_reason == "the conclusion failed after 2 attempts: soft time limit reached"


def test_a_soft_time_limit_mid_run_keeps_the_stored_items_and_requeues_the_run(
    settings, monkeypatch, soft_limit_signal, tmp_path
):
    settings.MODEL_CACHE_DIR = tmp_path / "model_cache"
    submission = _submission()
    run = _run(submission, RunStatus.QUEUED, intake={"source": "x", "kind": "local"})
    plan = pipeline.PlannedBenchmark.from_dict(PLAN[0])

    def measure(model, plan_, *, hooks, **kwargs):
        hooks.save_records(plan, [_record(0), _record(1)])
        try:  # the runner's broad except around a backend call: the limit becomes item errors
            soft_limit_signal()
            time.sleep(5)
        except Exception as exc:
            errors = [_record(2, f"backend error: {type(exc).__name__}"), _record(3, "backend error")]
        hooks.save_records(plan, errors)  # the watch stops this chunk before it is stored
        raise AssertionError("not reached")

    monkeypatch.setattr(pipeline, "measure", measure)
    monkeypatch.setattr(steps, "_intake_of", lambda run: None)
    assert steps.execute_run(run.id) == RunStatus.QUEUED
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.attempts == 1
    assert sorted(SampleResult.objects.filter(run=run).values_list("index", "error")) == [(0, None), (1, None)]
    assert run.log[-1]["step"] == "soft time limit reached with 2 items stored; re-queued to resume"


# --- liveness -----------------------------------------------------------------------------------------


def test_the_heartbeat_stops_when_progress_stops_and_resumes_with_it(settings):
    settings.RUN_HEARTBEAT_S = 0.02
    beats: list[float] = []
    progress = {"ticks": 0}
    heartbeat = liveness.Heartbeat("test", lambda: beats.append(time.monotonic()), lambda: progress["ticks"], 0.2)
    with heartbeat:
        time.sleep(0.6)
        assert heartbeat.withheld
        silent_since = len(beats)
        time.sleep(0.2)
        assert len(beats) == silent_since  # the main thread "hangs": no beat
        progress["ticks"] += 1
        time.sleep(0.1)
        assert len(beats) > silent_since and not heartbeat.withheld


def test_a_run_handed_to_another_worker_is_not_written_by_the_first(settings):
    run = _run(_submission(), RunStatus.QUEUED)
    claimed = liveness.claim_run(run.id)
    hooks = storage.DbHooks(claimed)
    EvaluationRun.objects.filter(id=run.id).update(worker_host="other-host:1")  # taken over
    plan = pipeline.PlannedBenchmark.from_dict(PLAN[0])
    with pytest.raises(liveness.RunLost):
        hooks.save_records(plan, [_record(0)])
    with pytest.raises(liveness.RunLost):
        hooks.progress(1, 4, "arc_challenge", "measuring")
    assert storage.store_measurements(run.id, pipeline.MeasureOutcome({})) is False
    storage.fail_run(run.id, "boom")
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and not SampleResult.objects.filter(run=run).exists()


# --- withdrawal -----------------------------------------------------------------------------------------


def test_withdrawal_cancels_queued_and_running_work_but_not_a_base_others_wait_for():
    submission = _submission()
    queued = _run(submission, RunStatus.QUEUED)
    running = liveness.claim_run(_run(submission, RunStatus.QUEUED).id)
    shared_base = _run(submission, RunStatus.RUNNING, role=EvaluationRun.Role.BASE, model_repo="org/base")
    own_base = _run(submission, RunStatus.QUEUED, role=EvaluationRun.Role.BASE, model_repo="org/lonely-base")
    _submission("verity-test/also-on-base", claimed_base="org/base")
    hooks = storage.DbHooks(running)

    assert liveness.cancel_submission(submission.id, "withdrawn by the author") is True
    submission.refresh_from_db()
    assert submission.status == Status.REJECTED and submission.rejection_reason == "withdrawn by the author"
    for run in (queued, running, own_base):
        run.refresh_from_db()
        assert run.status == RunStatus.FAILED and run.error == "cancelled: withdrawn by the author"
    shared_base.refresh_from_db()
    assert shared_base.status == RunStatus.RUNNING
    assert liveness.claim_run(queued.id) is None
    with pytest.raises(liveness.RunLost):  # the running worker stops at its next chunk
        hooks.save_records(pipeline.PlannedBenchmark.from_dict(PLAN[0]), [_record(0)])
    assert liveness.cancel_submission(submission.id) is False  # nothing pending any more


def test_withdrawal_during_intake_leaves_no_run(tiny_base, settings, monkeypatch):
    settings.CORE_BENCHMARKS = ("arc_challenge",)
    submission = _submission(tiny_base.repo_id, Status.RECEIVED)
    real_prepare = pipeline.prepare

    def prepare_then_withdrawn(*args, **kwargs):
        prep = real_prepare(*args, **kwargs)
        assert liveness.cancel_submission(submission.id)
        return prep

    monkeypatch.setattr(pipeline, "prepare", prepare_then_withdrawn)
    assert steps.start_verification(submission.id, enqueue=lambda _id: None) == []
    assert not submission.runs.exists()
