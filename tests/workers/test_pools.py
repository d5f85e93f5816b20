"""Placement by size in the workers, on the real PostgreSQL: intake places the model on a worker
pool (VERITY_POOLS), its run is sent to that pool's queue (and re-sent there by the sweep), a
model too large for every pool is rejected at intake, and without pools nothing changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from leaderboard.models import Claim, EvaluationRun, ModelSubmission
from verification import intake as intake_mod
from verification.config import Pool
from workers import celery_app, liveness, steps

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_messages(monkeypatch) -> list[tuple[str, list, str]]:
    """What would reach the broker: (task name, arguments, queue), from `send` itself."""
    messages: list[tuple[str, list, str]] = []
    assert not celery_app.app.conf.task_always_eager
    monkeypatch.setattr(
        celery_app.app, "send_task", lambda name, args, queue: messages.append((name, list(args), queue))
    )
    return messages


@pytest.fixture
def tiny_parameters(tiny_base) -> int:
    return intake_mod.inspect_source(tiny_base.repo_id, tiny_base.sha).parameters


def _only_large_fits(parameters: int) -> tuple[Pool, ...]:
    return (Pool("gpu-small", 1, parameters - 1), Pool("gpu-large", 8, parameters * 10))


def _submission(repo_id: str, **fields) -> ModelSubmission:
    submission = ModelSubmission.objects.create(
        repo_id=repo_id, requested_revision="main", status=ModelSubmission.Status.RECEIVED, **fields
    )
    Claim.objects.create(submission=submission, benchmark="arc_challenge", score=50)
    return submission


def _start(submission: ModelSubmission, capture) -> list[int]:
    with capture(execute=True):
        return steps.start_verification(submission.id)


def test_intake_places_the_model_on_the_pool_that_fits_and_sends_it_there(
    tiny_base, tiny_parameters, settings, sent_messages, django_capture_on_commit_callbacks
):
    settings.CORE_BENCHMARKS = ()
    settings.POOLS = _only_large_fits(tiny_parameters)
    submission = _submission(tiny_base.repo_id)
    run_ids = _start(submission, django_capture_on_commit_callbacks)
    assert len(run_ids) == 1
    run = EvaluationRun.objects.get(id=run_ids[0])
    assert run.pool == "gpu-large"
    submission.refresh_from_db()
    assert submission.intake["placement"]["queue"] == "gpu-large"
    assert submission.intake["placement"]["tensor_parallel_size"] == 8
    assert sent_messages == [("verity.measure_run", [run.id], "gpu-large")]
    # the conclusion loads the same weights: it goes to the same pool
    EvaluationRun.objects.filter(id=run.id).update(status=EvaluationRun.Status.DONE)
    sent_messages.clear()
    with django_capture_on_commit_callbacks(execute=True):
        liveness.wake_waiting_submissions(run.id)
    assert sent_messages == [("verity.finalize_submission", [submission.id], "gpu-large")]


def test_the_enqueue_callback_gets_a_run_of_the_chosen_pool(
    tiny_base, tiny_parameters, settings, django_capture_on_commit_callbacks
):
    settings.CORE_BENCHMARKS = ()
    settings.POOLS = _only_large_fits(tiny_parameters)
    submission = _submission(tiny_base.repo_id)
    queued: list[str] = []
    with django_capture_on_commit_callbacks(execute=True):
        steps.start_verification(submission.id, enqueue=lambda run_id: queued.append(liveness.run_queue(run_id)))
    assert queued == ["gpu-large"]


def test_a_model_too_large_for_every_pool_is_rejected_at_intake(
    tiny_base, tiny_parameters, settings, sent_messages, django_capture_on_commit_callbacks
):
    settings.POOLS = (Pool("gpu-small", 1, tiny_parameters - 1), Pool("gpu-medium", 2, tiny_parameters - 1))
    submission = _submission(tiny_base.repo_id)
    assert _start(submission, django_capture_on_commit_callbacks) == []
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.REJECTED
    assert submission.intake["refused"] == "too_large_for_pools"
    assert "cannot hold it" in submission.rejection_reason and "gpu-" in submission.rejection_reason
    assert not submission.runs.exists() and sent_messages == []


def test_a_model_larger_than_the_model_cache_is_rejected_at_intake(
    tiny_base, tiny_parameters, settings, sent_messages, django_capture_on_commit_callbacks
):
    settings.POOLS = _only_large_fits(tiny_parameters)
    settings.MODEL_CACHE_BYTES = 1024
    submission = _submission(tiny_base.repo_id)
    assert _start(submission, django_capture_on_commit_callbacks) == []
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.REJECTED
    assert submission.intake["refused"] == "too_large_for_cache" and "MODEL_CACHE_BYTES" in submission.rejection_reason
    assert not submission.runs.exists() and sent_messages == []


def test_a_claimed_base_too_large_for_every_pool_is_reported_not_measured(
    tiny_base, tiny_other_base, tiny_parameters, settings, monkeypatch, sent_messages,
    django_capture_on_commit_callbacks,
):
    settings.CORE_BENCHMARKS = ()
    settings.POOLS = (Pool("gpu-only", 1, tiny_parameters),)
    inspect = intake_mod.inspect_source

    def seventy_billion_base(source, *args, **kwargs):
        result = inspect(source, *args, **kwargs)
        return replace(result, parameters=70 * 10**9) if source == tiny_other_base.repo_id else result

    monkeypatch.setattr(intake_mod, "inspect_source", seventy_billion_base)
    submission = _submission(tiny_base.repo_id, claimed_base=tiny_other_base.repo_id)
    run_ids = _start(submission, django_capture_on_commit_callbacks)
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.RUNNING and len(run_ids) == 1
    base_error = submission.intake["base_error"]
    assert "not measured" in base_error and "70B parameters" in base_error and "gpu-only" in base_error
    assert submission.intake["base_sha"] is None
    assert sent_messages == [("verity.measure_run", run_ids, "gpu-only")]


def test_without_pools_nothing_changes(tiny_base, settings, sent_messages, django_capture_on_commit_callbacks):
    settings.CORE_BENCHMARKS = ()
    settings.POOLS = ()
    submission = _submission(tiny_base.repo_id)
    run_ids = _start(submission, django_capture_on_commit_callbacks)
    run = EvaluationRun.objects.get(id=run_ids[0])
    assert run.pool == "" and "placement" not in submission.__class__.objects.get(id=submission.id).intake
    assert sent_messages == [("verity.measure_run", [run.id], "gpu")]


def test_the_sweep_resends_a_lost_run_to_its_pools_queue(tiny_base, settings, sent_messages):
    settings.RUN_STALE_AFTER_S = 30
    settings.RUN_REQUEUE_AFTER_S = 30
    submission = ModelSubmission.objects.create(
        repo_id=tiny_base.repo_id, requested_revision="main", status=ModelSubmission.Status.RUNNING
    )
    old = timezone.now() - timedelta(seconds=120)
    lost_large = EvaluationRun.objects.create(
        submission=submission, model_repo=tiny_base.repo_id, status=EvaluationRun.Status.QUEUED, heartbeat_at=old,
        pool="gpu-large",
    )
    lost_default = EvaluationRun.objects.create(
        submission=submission, model_repo=tiny_base.repo_id, status=EvaluationRun.Status.QUEUED, heartbeat_at=old,
    )
    result = liveness.sweep(enqueue_submission=lambda submission_id: None)
    assert sorted(result["lost_runs"]) == sorted([lost_large.id, lost_default.id])
    assert sorted(m for m in sent_messages if m[0] == "verity.measure_run") == sorted(
        [("verity.measure_run", [lost_large.id], "gpu-large"), ("verity.measure_run", [lost_default.id], "gpu")]
    )
