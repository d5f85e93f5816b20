"""workers.steps and workers.liveness on the real PostgreSQL: intake rejection, idempotent claims,
the sweep that re-queues lost work, and the weights_changed re-check."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from leaderboard.models import Claim, EvaluationRun, Flag, FlagEvent, ModelSubmission
from workers import liveness, steps
from tests.workers.pipeline_helpers import pickle_only_repo, variant_repo

pytestmark = pytest.mark.django_db


def _submission(repo_id: str, status: str = ModelSubmission.Status.RECEIVED, **fields) -> ModelSubmission:
    return ModelSubmission.objects.create(repo_id=repo_id, requested_revision="main", status=status, **fields)


def _run(submission: ModelSubmission, status: str, heartbeat_age_s: float) -> EvaluationRun:
    return EvaluationRun.objects.create(
        submission=submission,
        model_repo=submission.repo_id,
        status=status,
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age_s),
        benchmarks=[
            {
                "slug": "arc_challenge",
                "version": "1",
                "setup": {"shots": 0, "cot": False, "chat_template": False},
            }
        ],
    )


def test_refused_model_is_rejected_with_its_reason_and_gets_no_runs(tiny_base, hf_cache, tmp_path, settings):
    marker = tmp_path / "unpickled.marker"
    pickle_only_repo(tiny_base.path, tmp_path, hf_cache, "verity-test/svc-pickle", marker)
    submission = _submission("verity-test/svc-pickle")
    Claim.objects.create(submission=submission, benchmark="arc_challenge", score=50)
    assert steps.start_verification(submission.id, enqueue=lambda run_id: None) == []
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.REJECTED
    assert "pickle" in submission.rejection_reason and submission.intake["refused"] == "pickle_weights"
    assert not submission.runs.exists() and not marker.exists()
    # a second delivery of the same task changes nothing
    assert steps.start_verification(submission.id, enqueue=lambda run_id: None) == []
    assert (
        steps.start_verification(10**9, enqueue=lambda run_id: None) == []
    )  # missing row: logged, no error


def test_intake_pins_the_sha_and_plans_claimed_plus_core(
    tiny_base, settings, django_capture_on_commit_callbacks
):
    settings.CORE_BENCHMARKS = ("arc_challenge",)
    submission = _submission(tiny_base.repo_id)
    Claim.objects.create(submission=submission, benchmark="mmlu", score=80, shots=0)
    sent: list[int] = []
    with django_capture_on_commit_callbacks(execute=True):
        run_ids = steps.start_verification(submission.id, enqueue=sent.append)
    assert sent == run_ids and len(run_ids) == 1
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.RUNNING and submission.pinned_sha == tiny_base.sha
    assert submission.intake["format"] == "safetensors" and submission.intake["shards"] == 1
    run = EvaluationRun.objects.get(id=run_ids[0])
    assert run.status == EvaluationRun.Status.QUEUED and run.model_sha == tiny_base.sha
    assert [(p["slug"], p["setup"]["shots"]) for p in run.benchmarks] == [("mmlu", 0), ("arc_challenge", 0)]


def test_a_run_is_claimed_once_and_taken_over_only_when_its_worker_is_silent(tiny_base, settings):
    settings.RUN_STALE_AFTER_S = 30
    submission = _submission(tiny_base.repo_id, ModelSubmission.Status.RUNNING)
    run = _run(submission, EvaluationRun.Status.QUEUED, 0)
    assert liveness.claim_run(run.id) is not None
    assert liveness.claim_run(run.id) is None  # duplicate delivery while the first worker is alive
    EvaluationRun.objects.filter(id=run.id).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    taken = liveness.claim_run(run.id)
    assert taken is not None and taken.status == EvaluationRun.Status.RUNNING
    assert liveness.claim_run(run.id) is None
    assert liveness.claim_run(10**9) is None


def test_sweep_requeues_dead_and_lost_runs_but_not_live_ones(tiny_base, settings):
    settings.RUN_STALE_AFTER_S = 30
    settings.RUN_REQUEUE_AFTER_S = 30
    submission = _submission(tiny_base.repo_id, ModelSubmission.Status.RUNNING)
    dead = _run(submission, EvaluationRun.Status.RUNNING, 120)
    alive = _run(submission, EvaluationRun.Status.RUNNING, 1)
    lost = _run(submission, EvaluationRun.Status.QUEUED, 120)
    fresh = _run(submission, EvaluationRun.Status.QUEUED, 1)
    old = _submission("verity-test/never-picked-up")
    ModelSubmission.objects.filter(id=old.id).update(updated_at=timezone.now() - timedelta(seconds=300))
    runs, subs = [], []
    result = liveness.sweep(enqueue_run=runs.append, enqueue_submission=subs.append)
    assert sorted(runs) == sorted([dead.id, lost.id]) and subs == [old.id]
    assert result["dead_runs"] == [dead.id] and result["lost_runs"] == [lost.id]
    dead.refresh_from_db()
    assert dead.status == EvaluationRun.Status.QUEUED and "re-queued" in dead.log[-1]["step"]
    for untouched in (alive, fresh):
        before = untouched.status
        untouched.refresh_from_db()
        assert untouched.status == before
    # right after a sweep nothing is due again (no re-queue storm)
    runs.clear()
    subs.clear()
    liveness.sweep(enqueue_run=runs.append, enqueue_submission=subs.append)
    assert runs == [] and subs == []


def test_moved_default_branch_raises_weights_changed_once(tiny_base, hf_cache, tmp_path):
    repo = "verity-test/svc-moving"
    verified_sha = variant_repo(tiny_base.path, tmp_path, hf_cache, repo)
    submission = _submission(repo, ModelSubmission.Status.VERIFIED, pinned_sha=verified_sha)
    assert steps.recheck_weights() == []  # unchanged: nothing to say

    new_sha = variant_repo(tiny_base.path, tmp_path, hf_cache, repo, add={"NOTES.txt": "retrained"})
    assert new_sha != verified_sha
    from workers.tasks import recheck_weights

    assert recheck_weights() == {"flagged": [submission.id]}
    flag = Flag.objects.get(submission=submission)
    assert flag.kind == Flag.Kind.WEIGHTS_CHANGED and flag.severity == Flag.Severity.WARNING
    assert flag.evidence["verified_sha"] == verified_sha and flag.evidence["current_sha"] == new_sha
    assert FlagEvent.objects.filter(flag=flag, action=FlagEvent.Action.RAISED).count() == 1
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.FLAGGED
    assert steps.recheck_weights() == []  # the same move is flagged once
    assert Flag.objects.filter(submission=submission).count() == 1


def test_in_process_run_and_rerun_publish_once_and_note_repeated_findings(
    tiny_base, tmp_path, monkeypatch, settings, django_capture_on_commit_callbacks
):
    settings.CHECKS = ()
    settings.CORE_BENCHMARKS = ()
    settings.INFERENCE_BACKEND = "transformers"
    settings.DEFAULT_EVAL_LIMIT = 16  # enough items for a 99-point claim to be significantly above
    settings.MODEL_CACHE_DIR = tmp_path / "model_cache"
    submission = _submission(tiny_base.repo_id)
    Claim.objects.create(submission=submission, benchmark="arc_challenge", score=99.0)

    def measure_and_publish() -> str:
        with django_capture_on_commit_callbacks(execute=False):
            [run_id] = steps.start_verification(submission.id, enqueue=lambda _id: None)
        assert steps.finalize(submission.id) == "waiting"  # nothing published before the run ends
        assert steps.execute_run(run_id) == EvaluationRun.Status.DONE
        assert steps.execute_run(run_id) == "skipped"  # a duplicate delivery does nothing
        return steps.finalize(submission.id)

    assert measure_and_publish() == ModelSubmission.Status.FLAGGED
    flag = Flag.objects.get(submission=submission)
    assert flag.kind == "score_mismatch" and flag.benchmark == "arc_challenge"
    assert steps.finalize(submission.id) == ModelSubmission.Status.FLAGGED  # idempotent

    # a maintainer's re-run (triage sets QUEUED): a fresh run, the same finding noted, not duplicated
    ModelSubmission.objects.filter(id=submission.id).update(status=ModelSubmission.Status.QUEUED)
    assert measure_and_publish() == ModelSubmission.Status.FLAGGED
    assert Flag.objects.filter(submission=submission).count() == 1
    assert flag.events.filter(action=FlagEvent.Action.NOTE, message__startswith="seen again").count() == 1
    runs = list(submission.runs.order_by("id"))
    assert len(runs) == 2 and all(r.status == EvaluationRun.Status.DONE for r in runs)
    submission.refresh_from_db()
    assert submission.report["run"]["run_id"] == runs[-1].id
