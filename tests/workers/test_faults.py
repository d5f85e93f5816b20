"""Faults with real processes: hostile repositories, workers killed or hung at each pipeline
step, the same task delivered twice, a soft time limit mid-run, PostgreSQL restarted mid-run.
(Redis restarted mid-run and kill -9 mid-measurement are in test_pipeline_worker.py.)

Each test runs real Celery worker processes on a private redis-server; faults are injected into
a worker by tests/workers/fault_hooks.py (`--include`), never by the production code. Every
submission must end verified, flagged, incomplete, rejected or failed, with its reason, and no
item may be scored twice."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.db import DatabaseError, connection

from leaderboard.models import EvaluationRun, ModelSubmission, SampleResult
from tests.workers.pipeline_helpers import REPO_ROOT, PrivatePostgres, variant_repo, wait_for
from tests.workers.test_pipeline_worker import FINISHED, PUBLISHED, _enqueue, _finished, _pipeline_env, _submit

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOOKS = ("-I", "tests.workers.fault_hooks")
ARC = [{"benchmark": "arc_challenge", "score": 40.0}]


def _env(tmp_path, redis, **extra: str) -> dict[str, str]:
    """A worker's settings for fault tests: liveness in seconds, not minutes."""
    (tmp_path / "faults").mkdir(exist_ok=True)
    fast = {
        "REDIS_URL": redis.url,
        "DEFAULT_EVAL_LIMIT": "4",
        "VERITY_HEARTBEAT_S": "0.5",
        "VERITY_STALE_AFTER_S": "4",
        "VERITY_SWEEP_INTERVAL_S": "1",
        "VERITY_REQUEUE_AFTER_S": "3",
        "VERITY_FAULT_DIR": str(tmp_path / "faults"),
    }
    return _pipeline_env(tmp_path, **{**fast, **extra})


@pytest.fixture
def workers(start_worker):
    """start_worker, with a hard stop at the end: these workers have nothing left to finish, and
    a warm shutdown costs seconds per worker."""
    started = []

    def start(*args, **kwargs):
        started.append(start_worker(*args, **kwargs))
        return started[-1]

    yield start
    for worker in started:
        worker.kill9()


def _with_beat(tmp_path) -> tuple[str, ...]:
    return (*HOOKS, "-B", "-s", str(tmp_path / "beat-schedule"))


def _items_scored_once(run: EvaluationRun, expected: int) -> None:
    indexes = list(SampleResult.objects.filter(run=run).values_list("benchmark", "index"))
    assert len(indexes) == len(set(indexes)) == expected
    assert not SampleResult.objects.filter(run=run).exclude(error=None).exclude(error="").exists()


def test_workers_killed_at_prepare_and_at_conclude_then_fresh_workers_finish(
    tiny_base, workers, tmp_path, private_redis
):
    env = _env(tmp_path, private_redis)
    faults = tmp_path / "faults"
    (faults / "hang-prepare").touch()
    first = workers("default,gpu", extra_env=env, extra_args=HOOKS)
    submission = _submit(tiny_base.repo_id, ARC)
    _enqueue(submission.id, private_redis.url)
    wait_for(lambda: (faults / "reached-prepare").exists(), timeout=120, message="intake started", workers=[first])
    first.kill9()
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.RUNNING and submission.attempts == 1
    assert not submission.runs.exists()

    (faults / "hang-prepare").unlink()
    (faults / "hang-conclude").touch()
    second = workers("default,gpu", extra_env=env, extra_args=_with_beat(tmp_path))
    wait_for(lambda: (faults / "reached-conclude").exists(), timeout=180, message="conclusion started",
             workers=[second])
    second.kill9()
    run = submission.runs.get()
    assert run.status == EvaluationRun.Status.DONE and run.attempts == 1

    (faults / "hang-conclude").unlink()
    third = workers("default,gpu", extra_env=env, extra_args=_with_beat(tmp_path))
    wait_for(lambda: _finished(submission.id), timeout=180, interval=0.5, message="published", workers=[third])
    submission.refresh_from_db()
    assert submission.status in PUBLISHED and submission.report["run"]["run_id"] == run.id
    assert submission.runs.count() == 1 and submission.attempts == 0
    _items_scored_once(run, 4)


def test_a_hung_measurement_stops_beating_and_another_worker_finishes_it(
    tiny_base, workers, tmp_path, private_redis
):
    env = _env(tmp_path, private_redis)
    faults = tmp_path / "faults"
    (faults / "hang-measure").touch()
    hung = workers("default,gpu", extra_env={**env, "VERITY_PROGRESS_WINDOW_S": "3"}, extra_args=HOOKS)
    submission = _submit(tiny_base.repo_id, ARC)
    _enqueue(submission.id, private_redis.url)
    wait_for(lambda: (faults / "reached-measure").exists(), timeout=180, message="measurement started",
             workers=[hung])
    run = submission.runs.get()
    silent = wait_for(
        lambda: _heartbeat_silent_for(run, 4), timeout=30, interval=0.5, message="heartbeat withheld", workers=[hung]
    )
    assert silent and hung.proc.poll() is None  # the worker lives; only its work stopped
    (faults / "hang-measure").unlink()
    rescuer = workers("default,gpu", extra_env=env, extra_args=_with_beat(tmp_path))
    wait_for(lambda: _finished(submission.id), timeout=180, interval=0.5, message="published", workers=[rescuer])
    hung.kill9()
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.DONE and run.attempts == 2
    assert any("silent; re-queued" in entry["step"] for entry in run.log)
    submission.refresh_from_db()
    assert submission.status in PUBLISHED
    _items_scored_once(run, 4)


def _heartbeat_silent_for(run: EvaluationRun, seconds: float) -> bool:
    from django.utils import timezone

    run.refresh_from_db()
    return run.status == EvaluationRun.Status.RUNNING and (timezone.now() - run.heartbeat_at).total_seconds() > seconds


def _hostile_repos(tiny_base, hf_cache, tmp_path) -> dict[str, tuple[str, str]]:
    """A malformed safetensors header, a 2 GiB config.json, a vocab_size of 10**9: repo -> the
    refusal code and words each must end with."""
    header = b"[" * 100_000  # JSON nested deeper than any parser's recursion
    variant_repo(tiny_base.path, tmp_path, hf_cache, "verity-test/fault-header",
                 add={"model.safetensors": struct.pack("<Q", len(header)) + header})
    sha = variant_repo(tiny_base.path, tmp_path, hf_cache, "verity-test/fault-huge-config")
    config = hf_cache / "models--verity-test--fault-huge-config" / "snapshots" / sha / "config.json"
    config.unlink()
    with open(config, "wb") as handle:
        handle.truncate(2 * 1024**3)  # sparse: 2 GiB on paper, nothing on disk
    variant_repo(tiny_base.path, tmp_path, hf_cache, "verity-test/fault-vocab", config_update={"vocab_size": 10**9})
    return {
        "verity-test/fault-header": ("bad_safetensors", "nested too deeply"),
        "verity-test/fault-huge-config": ("file_too_large", "config.json is 2.0 GiB"),
        "verity-test/fault-vocab": ("config_out_of_bounds", "vocab_size=1000000000"),
    }


def test_hostile_repos_are_refused_and_every_task_delivered_twice_creates_one_run(
    tiny_base, hf_cache, workers, tmp_path, private_redis
):
    """One worker (two processes) for both: hostile repositories end REJECTED with their reason;
    an honest submission whose every task is delivered twice gets one run, each item scored once."""
    from workers.celery_app import app
    from workers.tasks import finalize_submission, measure_run

    hostile = _hostile_repos(tiny_base, hf_cache, tmp_path)
    worker = workers("default,gpu", concurrency=2, extra_env=_env(tmp_path, private_redis))
    refused = {repo: _submit(repo, ARC) for repo in hostile}
    submission = _submit(tiny_base.repo_id, ARC)
    for hostile_submission in refused.values():
        _enqueue(hostile_submission.id, private_redis.url)
    _enqueue(submission.id, private_redis.url)
    _enqueue(submission.id, private_redis.url)
    run = wait_for(lambda: submission.runs.first(), timeout=120, message="run created", workers=[worker])
    with app.connection_for_write(private_redis.url) as broker:
        measure_run.apply_async((run.id,), connection=broker)
        wait_for(lambda: _finished(submission.id), timeout=180, interval=0.5, message="published", workers=[worker])
        finalize_submission.apply_async((submission.id,), connection=broker)
        finalize_submission.apply_async((submission.id,), connection=broker)
    wait_for(lambda: worker.log_text().count("verity.finalize_submission") >= 6, timeout=60,
             message="the duplicate conclusions handled", workers=[worker])
    assert worker.log_text().count("verity.verify_submission") >= 10  # five deliveries, each received and done
    assert submission.runs.count() == 1
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.DONE and run.attempts == 1
    _items_scored_once(run, 4)
    submission.refresh_from_db()
    assert submission.status in PUBLISHED

    wait_for(lambda: _finished(*[s.id for s in refused.values()]), timeout=60, message="hostile repos concluded")
    for repo, (code, words) in hostile.items():
        rejected = ModelSubmission.objects.get(id=refused[repo].id)
        assert rejected.status == ModelSubmission.Status.REJECTED, (repo, rejected.status, rejected.rejection_reason)
        assert rejected.intake["refused"] == code and words in rejected.rejection_reason
        assert not rejected.runs.exists() and rejected.attempts == 1


def test_a_run_past_its_soft_time_limit_resumes_from_its_checkpoint(tiny_base, workers, tmp_path, private_redis):
    env = _env(
        tmp_path, private_redis, DEFAULT_EVAL_LIMIT="8", VERITY_CHUNK_SIZE="2", VERITY_MEASURE_SOFT_LIMIT_S="7",
        VERITY_FAULT_BACKEND_DELAY_S="2", VERITY_MAX_RUN_ATTEMPTS="6", VERITY_STALE_AFTER_S="30",
    )
    worker = workers("default,gpu", extra_env=env, extra_args=HOOKS)
    submission = _submit(tiny_base.repo_id, ARC)
    _enqueue(submission.id, private_redis.url)
    wait_for(lambda: _finished(submission.id), timeout=240, interval=0.5, message="published", workers=[worker])
    run = submission.runs.get()
    assert run.status == EvaluationRun.Status.DONE and run.attempts >= 2, (run.status, run.error, run.log)
    limits = [e["step"] for e in run.log if e["step"].startswith("soft time limit reached")]
    assert limits and any("resuming after" in e["step"] for e in run.log)
    _items_scored_once(run, 8)  # the chunk the limit cut short was not stored as errors
    submission.refresh_from_db()
    assert submission.status in PUBLISHED


@contextmanager
def _database(url_db: PrivatePostgres):
    """Point this test's connection at another PostgreSQL server for the block."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(NAME="verity", HOST="127.0.0.1", PORT=str(url_db.port), USER="postgres",
                                    PASSWORD="")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def _reading(predicate):
    """A predicate that survives the database restarting under it (reconnects next time)."""

    def read():
        try:
            return predicate()
        except DatabaseError:
            connection.close()
            return False

    return read


@pytest.mark.skipif(PrivatePostgres.bindir() is None, reason="no PostgreSQL server binaries for a private server")
def test_postgresql_restarted_mid_run_the_run_resumes_and_finishes(tiny_base, workers, tmp_path, private_redis):
    database = PrivatePostgres().start()
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_ROOT, check=True, timeout=300,
            env={**os.environ, "DATABASE_URL": database.url},
        )
        with _database(database):
            env = _env(tmp_path, private_redis, DATABASE_URL=database.url, DEFAULT_EVAL_LIMIT="8",
                       VERITY_CHUNK_SIZE="2", VERITY_FAULT_BACKEND_DELAY_S="1")
            worker = workers("default,gpu", extra_env=env, extra_args=_with_beat(tmp_path))
            submission = _submit(tiny_base.repo_id, ARC)
            _enqueue(submission.id, private_redis.url)
            wait_for(_reading(lambda: SampleResult.objects.filter(run__submission=submission).count() >= 2),
                     timeout=180, interval=0.2, message="first chunk stored", workers=[worker])
            database.restart()
            wait_for(_reading(lambda: _finished(submission.id)), timeout=180, interval=0.5, message="published",
                     workers=[worker])
            run = submission.runs.get()
            assert run.status == EvaluationRun.Status.DONE and run.attempts >= 2, run.log
            assert any("resuming after" in e["step"] for e in run.log)
            _items_scored_once(run, 8)
            assert ModelSubmission.objects.get(id=submission.id).status in FINISHED
            worker.kill9()
    finally:
        database.stop()
