"""The pipeline through real Celery worker processes on Redis, results in PostgreSQL.

Fault tests run against a PRIVATE redis-server on a free loopback port, so killing workers and
restarting Redis never disturbs anyone else's broker."""

from __future__ import annotations

import json

import pytest

from leaderboard.models import BenchmarkResult, Claim, EvaluationRun, ModelSubmission, SampleResult
from tests.workers.pipeline_helpers import PrivateRedis, engine_score, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIMIT = 12
FINISHED = (
    ModelSubmission.Status.VERIFIED,
    ModelSubmission.Status.FLAGGED,
    ModelSubmission.Status.INCOMPLETE,
    ModelSubmission.Status.FAILED,
    ModelSubmission.Status.REJECTED,
)
# What a measured submission ends as: with VERITY_CHECKS=none a report without a finding is
# "incomplete" (the checks that apply did not run).
PUBLISHED = (ModelSubmission.Status.VERIFIED, ModelSubmission.Status.FLAGGED, ModelSubmission.Status.INCOMPLETE)


@pytest.fixture
def honest_arc_12(tiny_base, hf_tiny, datasets_dir) -> float:
    """tiny-base's real score on the first LIMIT ARC items: an honest claim by construction."""
    return engine_score(hf_tiny, "arc_challenge", LIMIT, datasets_dir)


def _pipeline_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {
        "INFERENCE_BACKEND": "transformers",
        "DEFAULT_EVAL_LIMIT": str(LIMIT),
        "MODEL_CACHE_DIR": str(tmp_path / "model_cache"),
        "VERITY_CHECKS": "none",
        "VERITY_CORE_BENCHMARKS": "none",
        "OMP_NUM_THREADS": "1",
    }
    env.update(extra)
    return env


def _submit(repo_id: str, claims: list[dict], base: str = "") -> ModelSubmission:
    submission = ModelSubmission.objects.create(repo_id=repo_id, requested_revision="main", claimed_base=base)
    for claim in claims:
        Claim.objects.create(submission=submission, **claim)
    return submission


def _enqueue(submission_id: int, broker_url: str | None = None) -> None:
    from workers.celery_app import app
    from workers.tasks import verify_submission

    if broker_url is None:
        verify_submission.delay(submission_id)
        return
    with app.connection_for_write(broker_url) as connection:
        verify_submission.apply_async((submission_id,), connection=connection)


def _finished(*ids: int) -> bool:
    return ModelSubmission.objects.filter(id__in=ids, status__in=FINISHED).count() == len(ids)


def _beat_args(tmp_path) -> tuple[str, ...]:
    return ("-B", "-s", str(tmp_path / "beat-schedule"))


def test_submission_is_verified_by_a_real_worker_and_stored_in_postgres(
    tiny_base, tiny_other_base, honest_arc_12, start_worker, tmp_path, private_redis
):
    worker = start_worker("default,gpu", extra_env=_pipeline_env(tmp_path, REDIS_URL=private_redis.url))
    claims = [
        {"benchmark": "arc_challenge", "score": round(honest_arc_12, 1)},
        {"benchmark": "mmlu", "score": 95.0, "shots": 0},
    ]
    first = _submit(tiny_base.repo_id, claims, base=tiny_other_base.repo_id)
    _enqueue(first.id, private_redis.url)
    wait_for(
        lambda: _finished(first.id),
        timeout=240,
        interval=1,
        message="submission done",
        workers=[worker],
    )
    first.refresh_from_db()
    assert first.status == ModelSubmission.Status.FLAGGED, worker.log_text()[-3000:]
    assert first.pinned_sha == tiny_base.sha

    own = first.runs.get(role=EvaluationRun.Role.SUBMISSION)
    assert own.status == EvaluationRun.Status.DONE and own.progress_done == own.progress_total == 2 * LIMIT
    assert [entry["step"] for entry in own.log][0] == "queued" and own.log[-1]["step"] == "done"
    results = {r.benchmark: r for r in own.results.all()}
    assert results["arc_challenge"].verdict == "consistent" and results["arc_challenge"].n == LIMIT
    assert results["arc_challenge"].measured == pytest.approx(honest_arc_12, abs=1e-6)
    assert results["mmlu"].verdict == "inconsistent" and results["mmlu"].claimed == 95.0
    assert SampleResult.objects.filter(run=own).count() == 2 * LIMIT
    flags = list(first.flags.all())
    assert [(f.kind, f.benchmark, f.severity) for f in flags] == [("score_mismatch", "mmlu", "critical")]
    assert flags[0].events.filter(action="raised").count() == 1

    report = first.report
    assert report["schema"] == "verity.report/1" and report["model"]["revision"] == tiny_base.sha
    assert report["benchmarks"]["arc_challenge"]["verdict"] == "consistent"
    assert set(report["base"]) == {"arc_challenge", "mmlu"}
    base_run = EvaluationRun.objects.get(role=EvaluationRun.Role.BASE, model_repo=tiny_other_base.repo_id)
    assert base_run.status == EvaluationRun.Status.DONE
    json.dumps(report, allow_nan=False)

    # A second submission on the same base reuses the cached base measurement: measured once.
    second = _submit(
        tiny_base.repo_id, [{"benchmark": "arc_challenge", "score": 99.0}], base=tiny_other_base.repo_id
    )
    _enqueue(second.id, private_redis.url)
    wait_for(lambda: _finished(second.id), timeout=180, interval=1, message="second submission done",
             workers=[worker])
    second.refresh_from_db()
    assert (
        EvaluationRun.objects.filter(role=EvaluationRun.Role.BASE, model_repo=tiny_other_base.repo_id).count()
        == 1
    )
    assert second.report["base"]["arc_challenge"]["measured"] == report["base"]["arc_challenge"]["measured"]
    assert second.report["benchmarks"]["arc_challenge"]["verdict"] == "inconsistent"


def test_kill_9_mid_benchmark_then_another_worker_resumes_and_scores_each_item_once(
    tiny_base, start_worker, tmp_path
):
    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        env = _pipeline_env(
            tmp_path,
            REDIS_URL=redis.url,
            VERITY_CHUNK_SIZE="2",
            DEFAULT_EVAL_LIMIT="8",
            VERITY_STALE_AFTER_S="4",
            VERITY_HEARTBEAT_S="1",
            VERITY_SWEEP_INTERVAL_S="1",
            VERITY_REQUEUE_AFTER_S="4",
        )
        first = start_worker("default,gpu", extra_env=env)
        submission = _submit(tiny_base.repo_id, [{"benchmark": "gsm8k", "score": 50.0, "shots": 0}])
        _enqueue(submission.id, redis.url)
        run = wait_for(
            lambda: EvaluationRun.objects.filter(submission=submission).first(),
            timeout=120,
            message=f"run created\n{first.log_text()[-2000:]}",
        )
        wait_for(
            lambda: SampleResult.objects.filter(run=run).count() >= 2,
            timeout=180,
            interval=0.2,
            message=f"first chunk stored\n{first.log_text()[-2000:]}",
        )
        first.kill9()
        stored_at_kill = SampleResult.objects.filter(run=run).count()
        rows_at_kill = {
            (benchmark, index): row_id
            for benchmark, index, row_id in SampleResult.objects.filter(run=run).values_list("benchmark", "index", "id")
        }
        run.refresh_from_db()
        assert run.status == EvaluationRun.Status.RUNNING and 2 <= stored_at_kill < 8
        dead_host = run.worker_host

        second = start_worker("default,gpu", extra_env=env, extra_args=_beat_args(tmp_path))
        wait_for(
            lambda: _finished(submission.id),
            timeout=240,
            interval=1,
            message=f"resumed run done\n{second.log_text()[-3000:]}",
        )
        run.refresh_from_db()
        assert run.status == EvaluationRun.Status.DONE and run.worker_host != dead_host
        # gsm8k brings gsm_fresh (the held-out gap), resumed from its recorded seed: each scored once
        for slug in ("gsm8k", "gsm_fresh"):
            indexes = list(SampleResult.objects.filter(run=run, benchmark=slug).values_list("index", flat=True))
            assert len(indexes) == len(set(indexes)) == 8, slug
        # items stored before the crash were kept, not scored a second time
        kept = {
            (benchmark, index): row_id
            for benchmark, index, row_id in SampleResult.objects.filter(run=run).values_list("benchmark", "index", "id")
            if (benchmark, index) in rows_at_kill
        }
        assert kept == rows_at_kill
        assert BenchmarkResult.objects.get(run=run, benchmark="gsm8k").n == 8
        steps = [entry["step"] for entry in run.log]
        assert any("re-queued" in step for step in steps)
        resumed = [step for step in steps if "resuming after" in step]
        assert resumed and int(resumed[-1].split("resuming after ")[1].split()[0]) >= stored_at_kill
    finally:
        redis.stop()


def test_runs_queued_when_redis_restarts_and_redis_restarted_mid_run_all_complete(
    tiny_base, start_worker, tmp_path, monkeypatch, settings
):
    from workers.steps import start_verification
    from workers.celery_app import app
    from workers.tasks import measure_run

    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        env = _pipeline_env(
            tmp_path,
            REDIS_URL=redis.url,
            DEFAULT_EVAL_LIMIT="4",
            VERITY_SWEEP_INTERVAL_S="1",
            VERITY_REQUEUE_AFTER_S="3",
            VERITY_STALE_AFTER_S="30",
        )
        settings.DEFAULT_EVAL_LIMIT = 4
        settings.INFERENCE_BACKEND = "transformers"
        settings.CORE_BENCHMARKS = ()
        submissions = [
            _submit(tiny_base.repo_id, [{"benchmark": "arc_challenge", "score": 30.0 + i}]) for i in range(3)
        ]
        ids = [s.id for s in submissions]
        # Intake here, measurement runs queued on the private broker's `gpu` queue.
        with app.connection_for_write(redis.url) as connection:
            for submission in submissions:
                start_verification(
                    submission.id,
                    enqueue=lambda run_id: measure_run.apply_async((run_id,), connection=connection),
                )
        assert EvaluationRun.objects.filter(submission_id__in=ids, status="queued").count() == 3
        assert redis.queue_length("gpu") == 3
        redis.restart()  # no persistence: every queued message is gone
        assert redis.queue_length("gpu") == 0
        worker = start_worker("default,gpu", extra_env=env, extra_args=_beat_args(tmp_path))
        # Once a run is being measured, the broker goes away again: mid-run.
        wait_for(
            lambda: EvaluationRun.objects.filter(submission_id__in=ids, status="running").exists(),
            timeout=120,
            interval=0.1,
            message="a run being measured",
            workers=[worker],
        )
        redis.restart()
        wait_for(lambda: _finished(*ids), timeout=240, interval=1, message="all submissions done", workers=[worker])
        for submission in submissions:
            submission.refresh_from_db()
            assert submission.status in PUBLISHED
            run = submission.runs.get()
            assert run.status == EvaluationRun.Status.DONE and any(
                "enqueued again" in e["step"] for e in run.log
            )
            assert SampleResult.objects.filter(run=run).count() == 4
    finally:
        redis.stop()
