"""Placement by size in the workers, on the real PostgreSQL: intake places the model on a worker
pool (VERITY_POOLS), its run is sent to that pool's queue (and re-sent there by the sweep), a
model too large for every pool is rejected at intake, and without pools nothing changes."""

from __future__ import annotations

from dataclasses import replace
import time
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


# --- device time and cost ---------------------------------------------------------------------------


def _claimed_run(submission: ModelSubmission, pool: str, benchmarks: list[dict]) -> EvaluationRun:
    run = EvaluationRun.objects.create(
        submission=submission, model_repo=submission.repo_id, status=EvaluationRun.Status.QUEUED, pool=pool,
        role=EvaluationRun.Role.SUBMISSION, benchmarks=benchmarks, heartbeat_at=timezone.now(),
    )
    assert liveness.claim_run(run.id) is not None
    return run


def test_a_gpu_run_records_gpu_seconds_of_its_pool_and_their_cost(tiny_base, settings, client):
    from verification.pipeline import MeasureOutcome
    from workers import storage

    settings.POOLS = (Pool("gpu-small", 1, 15 * 10**9), Pool("gpu-large", 8, 80 * 10**9))
    settings.GPU_HOUR_PRICE = 3.0
    settings.GPU_HOUR_CURRENCY = "EUR"
    submission = _submission(tiny_base.repo_id)
    ModelSubmission.objects.filter(id=submission.id).update(status=ModelSubmission.Status.RUNNING)
    run = _claimed_run(submission, "gpu-large", [])
    # the attempt that finishes was claimed 1,800 s ago; its two benchmarks took 1,200 s and 450 s
    EvaluationRun.objects.filter(id=run.id).update(started_at=timezone.now() - timedelta(seconds=1800))
    timings = {"gsm8k": {"total_s": 1200.0, "load_s": 3.0}, "mmlu": {"total_s": 450.0, "load_s": 1.0}}
    outcome = MeasureOutcome({}, {"timings_s": timings, "backend_info": {"backend": "vllm", "device": "cuda"}})
    assert storage.store_measurements(run.id, outcome)

    usage = EvaluationRun.objects.get(id=run.id).timings["usage"]
    assert usage["device"] == "gpu" and usage["devices"] == 8 and usage["unit"] == "GPU-seconds"
    assert usage["wall_s"] == pytest.approx(1800, abs=5)
    assert usage["device_seconds"] == pytest.approx(8 * 1800, abs=40)
    assert usage["cost"] == pytest.approx(8 * 1800 / 3600 * 3.0, abs=0.1)  # 4 GPU-hours at 3 EUR
    assert usage["benchmarks"]["gsm8k"] == {"wall_s": 1200.0, "device_seconds": 9600.0, "cost": 8.0}
    assert usage["benchmarks"]["mmlu"] == {"wall_s": 450.0, "device_seconds": 3600.0, "cost": 3.0}
    assert usage["price_per_gpu_hour"] == 3.0 and usage["currency"] == "EUR"
    # the benchmarks' own timings are kept beside it
    assert EvaluationRun.objects.get(id=run.id).timings["gsm8k"]["load_s"] == 3.0

    page = client.get(f"/submissions/{submission.id}/progress").content.decode()
    assert "GPU-seconds" in page and "8 GPUs of pool gpu-large" in page
    assert "at 3.00 EUR per GPU-hour" in page and ">12.00 EUR<" in page.replace("\n", "")
    assert 'data-benchmark="gsm8k"><td>gsm8k</td><td>9600.0</td><td>8.0000</td>' in page
    api_run = client.get(f"/api/submissions/{submission.id}").json()["run"]
    assert api_run["usage"]["device_seconds"] == usage["device_seconds"] and api_run["usage"]["cost"] == usage["cost"]


def test_without_pools_the_engines_parallelism_counts_and_without_a_price_no_cost(tiny_base, settings):
    from verification.pipeline import MeasureOutcome
    from workers import storage

    settings.POOLS = ()
    settings.ENGINE_OPTIONS = {"tensor_parallel_size": 4, "pipeline_parallel_size": 2}
    settings.GPU_HOUR_PRICE = 0.0
    submission = _submission(tiny_base.repo_id)
    run = _claimed_run(submission, "", [])
    outcome = MeasureOutcome({}, {"timings_s": {"arc_challenge": {"total_s": 10.0}}, "backend_info": {"device": "cuda"}})
    assert storage.store_measurements(run.id, outcome)
    usage = EvaluationRun.objects.get(id=run.id).timings["usage"]
    assert usage["devices"] == 8 and usage["benchmarks"]["arc_challenge"]["device_seconds"] == 80.0
    assert usage["cost"] is None and usage["price_per_gpu_hour"] is None


def test_a_cpu_run_says_it_used_no_gpu_and_is_never_priced_as_gpu_time(
    tiny_base, tmp_path, settings, client, django_capture_on_commit_callbacks
):
    """A real in-process measurement on the CPU (transformers): its device time is CPU-host
    seconds, with no GPU cost even when a GPU price is configured and the pool has 8 GPUs."""
    settings.CHECKS = ()
    settings.CORE_BENCHMARKS = ()
    settings.INFERENCE_BACKEND = "transformers"
    settings.DEFAULT_EVAL_LIMIT = 4
    settings.MODEL_CACHE_DIR = tmp_path / "model_cache"
    settings.GPU_HOUR_PRICE = 3.0
    settings.POOLS = _only_large_fits(intake_mod.inspect_source(tiny_base.repo_id, tiny_base.sha).parameters)
    submission = _submission(tiny_base.repo_id)
    with django_capture_on_commit_callbacks(execute=False):
        [run_id] = steps.start_verification(submission.id, enqueue=lambda _id: None)
    assert steps.execute_run(run_id) == EvaluationRun.Status.DONE
    run = EvaluationRun.objects.get(id=run_id)
    usage = run.timings["usage"]
    assert run.pool == "gpu-large" and run.backend_versions["device"] == "cpu"
    assert usage["device"] == "cpu" and usage["devices"] == 1 and usage["unit"] == "CPU-host-seconds"
    assert usage["cost"] is None and usage["price_per_gpu_hour"] is None
    assert 0 < usage["benchmarks"]["arc_challenge"]["device_seconds"] <= usage["device_seconds"]
    page = client.get(f"/submissions/{submission.id}/progress").content.decode()
    assert "CPU-host-seconds" in page and "no GPU used" in page and "GPU-hour" not in page


@pytest.mark.django_db(transaction=True)
def test_a_long_download_shows_its_progress_on_the_run_page(tiny_base, tmp_path, settings, client):
    """The run's heartbeat writes what the download has reached as the run's current step, from
    its own thread and connection, while the worker's main thread is inside the fetch."""
    from verification.modelcache import ModelCache

    settings.RUN_HEARTBEAT_S = 0.05
    submission = _submission(tiny_base.repo_id)
    run = EvaluationRun.objects.create(
        submission=submission, model_repo="org/big", status=EvaluationRun.Status.QUEUED, heartbeat_at=timezone.now(),
    )
    assert liveness.claim_run(run.id) is not None
    seen: list[str] = []

    def slow_fetch(repo_id, sha, patterns, destination):
        (destination / "model-00001-of-00002.safetensors").write_bytes(b"x" * 3_000_000)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            step = EvaluationRun.objects.get(id=run.id).current_step
            if step.startswith("downloading"):
                seen.append(step)
                seen.append(client.get(f"/submissions/{submission.id}/progress").content.decode())
                break
            time.sleep(0.05)
        (destination / "model-00002-of-00002.safetensors").write_bytes(b"x" * 3_000_000)

    cache = ModelCache(tmp_path / "cache", 10**9, fetch=slow_fetch)
    with liveness.run_heartbeat(run.id, probe=cache.downloading_bytes, status=cache.download_status):
        with cache.use("org/big", "f" * 40, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
                       6_000_000):
            pass
    assert seen, "no download progress was shown"
    assert seen[0] == "downloading org/big@ffffffff: 3.00 MB of 6.00 MB"
    assert "downloading org/big@ffffffff: 3.00 MB of 6.00 MB" in seen[1]


# --- the download plan, recorded at intake -----------------------------------------------------------


def test_intake_records_the_download_plan_on_the_submission_its_runs_and_the_run_page(
    tiny_base, tiny_other_base, tiny_parameters, settings, sent_messages, client, django_capture_on_commit_callbacks
):
    from workers import storage

    settings.CORE_BENCHMARKS = ()
    settings.POOLS = _only_large_fits(tiny_parameters)
    settings.MODEL_CACHE_BYTES = 10**9
    submission = _submission(tiny_base.repo_id, claimed_base=tiny_other_base.repo_id)
    run_ids = _start(submission, django_capture_on_commit_callbacks)
    submission.refresh_from_db()
    own = EvaluationRun.objects.get(id=run_ids[0], role=EvaluationRun.Role.SUBMISSION)
    base = EvaluationRun.objects.get(id=run_ids[1], role=EvaluationRun.Role.BASE)
    model = intake_mod.inspect_source(tiny_base.repo_id, "main")
    other = intake_mod.inspect_source(tiny_other_base.repo_id, None)
    files = sum(model.files[name] for name in model.download_files)

    plan = submission.intake["download"]
    assert plan["total_bytes"] == files and plan["shards"] == 1 and plan["cache_budget_bytes"] == 10**9
    assert plan["fits"] == {"cache_budget_bytes": 10**9, "pool": "gpu-large"}
    assert sorted(name for name, _ in plan["files"]) == sorted(model.download_files)
    assert own.intake["download"] == plan
    assert storage.run_intake(own) == model  # the plan rides along; the intake record reads back unchanged
    assert submission.intake["base_download"] == base.intake["download"]
    assert base.intake["download"]["total_bytes"] == sum(other.files[name] for name in other.download_files)

    page = client.get(f"/submissions/{submission.id}/progress").content.decode()
    # The page follows the newest run: here the claimed base's, queued after the model's.
    assert 'id="download-plan"' in page and f'data-bytes="{base.intake["download"]["total_bytes"]}"' in page
    assert ">1 weight shard<" in page and "pool gpu-large (8 GPUs)" in page


def test_without_pools_the_download_is_planned_and_a_model_larger_than_the_cache_refused(
    tiny_base, settings, sent_messages, django_capture_on_commit_callbacks
):
    settings.CORE_BENCHMARKS = ()
    settings.POOLS = ()
    settings.MODEL_CACHE_BYTES = 10**9
    fits = _submission(tiny_base.repo_id)
    assert len(_start(fits, django_capture_on_commit_callbacks)) == 1
    fits.refresh_from_db()
    assert fits.intake["download"]["fits"] == {"cache_budget_bytes": 10**9, "pool": None}
    assert fits.intake["download"]["placement"] is None and "placement" not in fits.intake

    needed = fits.intake["download"]["total_bytes"]
    settings.MODEL_CACHE_BYTES = needed - 1  # one byte short of the model's files
    too_big = _submission(tiny_base.repo_id)
    assert _start(too_big, django_capture_on_commit_callbacks) == []
    too_big.refresh_from_db()
    assert too_big.status == ModelSubmission.Status.REJECTED
    assert too_big.intake["refused"] == "too_large_for_cache"
    assert "more than this instance's model cache can hold" in too_big.rejection_reason
    assert not too_big.runs.exists()
    settings.MODEL_CACHE_BYTES = needed  # exactly the model's files: fits
    exact = _submission(tiny_base.repo_id)
    assert len(_start(exact, django_capture_on_commit_callbacks)) == 1
