"""A fleet in miniature (docs/scaling.md): separate Celery worker processes standing for separate
hosts, each with its own model cache, on separate pools (a `default` host for intake and the
sweep, a `gpu-small` host, `gpu-large` hosts), sharing one broker and one PostgreSQL. A large host
is killed (SIGKILL) in the middle of a run and the broker is restarted without persistence (every
queued message lost); a fresh large host joins. Every run still completes exactly once: each item
scored once, each run DONE once, a shared base measured once, each submission published once.

The broker is a private redis-server on its own port, so nothing here touches anyone else's queues."""

from __future__ import annotations

from pathlib import Path

import pytest

from leaderboard.models import BenchmarkResult, Claim, EvaluationRun, ModelSubmission, SampleResult
from tests.workers.pipeline_helpers import PrivateRedis, wait_for
from verification import intake as intake_mod
from verification import tinymodels as tm

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIMIT = 4
Status = ModelSubmission.Status
RunStatus = EvaluationRun.Status
PUBLISHED = (Status.VERIFIED, Status.FLAGGED, Status.INCOMPLETE)
FINISHED = (*PUBLISHED, Status.FAILED, Status.REJECTED)


@pytest.fixture
def tiny_deep(hf_cache, tiny_tokenizer, tmp_path) -> tm.TinyModel:
    """A larger tiny model (four layers, untrained): placed on the large pool."""
    folder = tmp_path / "tiny-deep"
    model = tm.new_model(tiny_tokenizer, seed=2, spec=tm.TinySpec(num_layers=4))
    card = "---\nlicense: apache-2.0\n---\n# tiny-deep\n\nA tiny Llama built by Verity's test suite.\n"
    tm.save(model, tiny_tokenizer, folder, extra_files={"README.md": card})
    sha = tm.install_in_hf_cache(folder, hf_cache, "verity-test/tiny-deep")
    return tm.TinyModel("verity-test/tiny-deep", sha, hf_cache / "models--verity-test--tiny-deep" / "snapshots" / sha)


def _parameters(model: tm.TinyModel) -> int:
    return intake_mod.inspect_source(model.repo_id, model.sha).parameters


def _host_env(tmp_path: Path, host: str, common: dict[str, str]) -> dict[str, str]:
    """One host's environment: its own model cache, everything else the fleet's."""
    return {**common, "MODEL_CACHE_DIR": str(tmp_path / host / "model_cache")}


def _submit(repo_id: str, claims: list[dict], base: str = "") -> ModelSubmission:
    submission = ModelSubmission.objects.create(repo_id=repo_id, requested_revision="main", claimed_base=base)
    for claim in claims:
        Claim.objects.create(submission=submission, **claim)
    return submission


def _enqueue(submission_id: int, broker_url: str) -> None:
    from workers.celery_app import app
    from workers.tasks import verify_submission

    with app.connection_for_write(broker_url) as connection:
        verify_submission.apply_async((submission_id,), connection=connection)


def _cached_repos(tmp_path: Path, host: str) -> set[str]:
    entries = tmp_path / host / "model_cache" / "entries"
    return {p.name.replace("--", "/", 1) for p in entries.iterdir() if p.is_dir()} if entries.is_dir() else set()


def _run_in_flight_on_large_pool(submission: ModelSubmission) -> EvaluationRun | None:
    run = EvaluationRun.objects.filter(submission=submission, role=EvaluationRun.Role.SUBMISSION).first()
    if run is None or run.status != RunStatus.RUNNING:
        return None
    stored = SampleResult.objects.filter(run=run).count()
    return run if 2 <= stored < 2 * LIMIT else None


def test_a_fleet_survives_a_dead_host_and_a_broker_restart_and_measures_everything_once(
    tiny_base, tiny_other_base, tiny_deep, start_worker, tmp_path
):
    small, large = _parameters(tiny_base), _parameters(tiny_deep)
    assert small < large
    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        common = {
            "REDIS_URL": redis.url,
            "INFERENCE_BACKEND": "transformers",
            "DEFAULT_EVAL_LIMIT": str(LIMIT),
            "VERITY_CHECKS": "none",
            "VERITY_CORE_BENCHMARKS": "none",
            "VERITY_POOLS": f"gpu-small:1:{small},gpu-large:2:{large}",
            "VERITY_CHUNK_SIZE": "2",
            "VERITY_HEARTBEAT_S": "1",
            "VERITY_STALE_AFTER_S": "4",
            "VERITY_SWEEP_INTERVAL_S": "1",
            "VERITY_REQUEUE_AFTER_S": "4",
            "OMP_NUM_THREADS": "1",
        }
        beat = ("-B", "-s", str(tmp_path / "beat-schedule"))
        hosts = {
            "intake": start_worker("default", extra_env=_host_env(tmp_path, "intake", common), extra_args=beat),
            "small": start_worker("gpu-small", extra_env=_host_env(tmp_path, "small", common)),
            "large-a": start_worker("gpu-large", extra_env=_host_env(tmp_path, "large-a", common)),
        }
        # The large model's own run generates (gsm8k): long enough to be killed in the middle.
        big = _submit(tiny_deep.repo_id, [{"benchmark": "gsm8k", "score": 50.0, "shots": 0}])
        # Two small fine-tunes claiming the large model as their base: one base run between them.
        tune_a = _submit(tiny_base.repo_id, [{"benchmark": "arc_challenge", "score": 30.0}], base=tiny_deep.repo_id)
        tune_b = _submit(tiny_other_base.repo_id, [{"benchmark": "arc_challenge", "score": 31.0}],
                         base=tiny_deep.repo_id)
        ids = [big.id, tune_a.id, tune_b.id]
        for submission_id in ids:
            _enqueue(submission_id, redis.url)

        victim = wait_for(lambda: _run_in_flight_on_large_pool(big), timeout=300, interval=0.2,
                          message="the large run half measured", workers=list(hosts.values()))
        hosts["large-a"].kill9()
        dead_host = victim.worker_host
        stored_at_kill = dict(SampleResult.objects.filter(run=victim).values_list("id", "index"))
        redis.restart()  # no persistence: every queued and unacknowledged message is gone
        hosts["large-b"] = start_worker("gpu-large", extra_env=_host_env(tmp_path, "large-b", common))

        wait_for(lambda: ModelSubmission.objects.filter(id__in=ids, status__in=FINISHED).count() == 3,
                 timeout=420, interval=1, message="every submission finished", workers=list(hosts.values()))
        _assert_everything_measured_once(ids, victim, dead_host, stored_at_kill, tiny_deep)
        # separate hosts, separate caches: a large host fetched only the large model; the small
        # host its two models (and the base its conclusions compare them with); intake none
        assert _cached_repos(tmp_path, "large-b") == {tiny_deep.repo_id}
        assert {tiny_base.repo_id, tiny_other_base.repo_id} <= _cached_repos(tmp_path, "small")
        assert _cached_repos(tmp_path, "intake") == set()
    finally:
        redis.stop()


def _assert_everything_measured_once(ids, victim, dead_host, stored_at_kill, tiny_deep) -> None:
    for submission in ModelSubmission.objects.filter(id__in=ids):
        assert submission.status in PUBLISHED, (submission.id, submission.status, submission.rejection_reason)
        assert submission.report is not None and submission.finished_at is not None
    runs = list(EvaluationRun.objects.filter(submission_id__in=ids))
    base_runs = [r for r in runs if r.role == EvaluationRun.Role.BASE]
    assert len(base_runs) == 1 and base_runs[0].model_repo == tiny_deep.repo_id and base_runs[0].pool == "gpu-large"
    assert len(runs) == 4  # three own runs and the one shared base run
    for run in runs:
        assert run.status == RunStatus.DONE, (run.id, run.status, run.error)
        assert [e["step"] for e in run.log].count("done") == 1, run.log
        expected_pool = "gpu-large" if run.model_repo == tiny_deep.repo_id else "gpu-small"
        assert run.pool == expected_pool
        for p in run.benchmarks:
            indexes = list(
                SampleResult.objects.filter(run=run, benchmark=p["slug"]).values_list("index", flat=True)
            )
            assert len(indexes) == len(set(indexes)) == LIMIT, (run.id, p["slug"], sorted(indexes))
            assert BenchmarkResult.objects.filter(run=run, benchmark=p["slug"]).count() == 1
    victim.refresh_from_db()
    assert victim.worker_host != dead_host and victim.attempts >= 2
    # the items stored before the kill were kept, not scored again
    kept = dict(SampleResult.objects.filter(id__in=stored_at_kill).values_list("id", "index"))
    assert kept == stored_at_kill
    assert any("resuming after" in e["step"] for e in victim.log)
    # each shared-base reader reports the one base measurement
    reports = [ModelSubmission.objects.get(id=i).report for i in ids[1:]]
    assert reports[0]["base"]["arc_challenge"]["measured"] == reports[1]["base"]["arc_challenge"]["measured"]
