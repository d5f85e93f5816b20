"""Rows <-> engine records, in one place: claims, planned runs, per-item samples, measurements.

The engine (verification/) works on plain records (ClaimsDoc, PlannedBenchmark, SampleRecord,
Measurement, IntakeResult); this module is the only code that turns database rows into those
records and back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from leaderboard.models import BenchmarkResult, Claim, EvaluationRun, ModelSubmission, SampleResult
from verification import private_sets
from verification.claims import ClaimsDoc, ClaimSpec
from verification.compare import Measurement
from verification.intake import IntakeResult
from verification.pipeline import MeasureHooks, MeasureOutcome, PlannedBenchmark, code_version, download_record
from verification.placement import DownloadPlan
from verification.records import SampleRecord
from workers.liveness import MAX_LOG_ENTRIES, UNFINISHED_RUN, RunLost, append_log, log_entry, owns, worker_id

RunStatus = EvaluationRun.Status


# --- submissions and runs -------------------------------------------------------------------------


def claims_doc(submission: ModelSubmission, claims: Iterable[Claim] | None = None) -> ClaimsDoc:
    """The submission's claims file; `claims`: its claims when the caller has read them already."""
    return ClaimsDoc(
        claims=tuple(
            ClaimSpec(c.benchmark, c.score, c.shots, c.cot, c.chat_template, c.source_url)
            for c in (submission.claims.order_by("id") if claims is None else claims)
        ),
        base_model=submission.claimed_base or None,
        training=submission.training,
        endpoint=submission.endpoint_url or None,
        endpoint_model=submission.endpoint_model or None,
    )


def new_run(
    submission: ModelSubmission, role: str, intake: IntakeResult, plan: list[PlannedBenchmark], limit: int | None,
    pool: str = "", *, download: DownloadPlan | None = None,
) -> EvaluationRun:
    """A queued run of the model on the plan; `pool` is the worker pool placement chose ("" none),
    `download` the model's download plan from intake (kept in the run's intake record, shown on
    the run page; IntakeResult.from_dict ignores it)."""
    record = intake.as_dict()
    if download is not None:
        record["download"] = download_record(download)
    return EvaluationRun.objects.create(
        pool=pool,
        submission=submission,
        role=role,
        model_repo=intake.repo_id or intake.source,
        model_sha=intake.sha or "",
        intake=record,
        backend=settings.INFERENCE_BACKEND,
        benchmarks=[p.as_dict() for p in plan],
        limit=limit,
        code_version=code_version(),
        status=RunStatus.QUEUED,
        heartbeat_at=timezone.now(),
        log=[log_entry("queued")],
    )


def run_plan(run: EvaluationRun) -> list[PlannedBenchmark]:
    return [PlannedBenchmark.from_dict(p) for p in run.benchmarks]


def run_intake(run: EvaluationRun) -> IntakeResult | None:
    """The intake record the run was planned with (None for a row without one)."""
    return IntakeResult.from_dict(run.intake) if run.intake else None


def cached_result(repo: str, sha: str, plan: PlannedBenchmark, limit: int | None) -> BenchmarkResult | None:
    """A finished measurement of repo@sha for this benchmark version, setup and item count."""
    return (
        BenchmarkResult.objects.filter(
            run__model_repo=repo,
            run__model_sha=sha,
            run__status=RunStatus.DONE,
            run__limit=limit,
            benchmark=plan.slug,
            benchmark_version=plan.version,
            setup_key=plan.setup_key,
        )
        .select_related("run")
        .order_by("-created_at")
        .first()
    )


def lock_base_model(repo: str, sha: str) -> None:
    """Serialise the planning of repo@sha's base runs across workers: a PostgreSQL advisory lock
    held until the calling transaction ends, so the second of two intakes claiming the same base
    waits, then sees the first one's committed run (READ COMMITTED reads anew at each statement)
    instead of creating a second one. Keyed by a stable 64-bit hash (Python's hash() is salted per
    process). SQLite, for development, serialises every writer anyway."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_base_model needs a transaction: the lock lasts until it ends")
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [base_lock_key(repo, sha)])


def base_lock_key(repo: str, sha: str) -> int:
    """A signed 64-bit key for (repo, sha), the same in every process and on every host."""
    digest = hashlib.sha256(f"verity-base-run\0{repo}\0{sha}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def in_flight_base_run(repo: str, sha: str, plan: list[PlannedBenchmark], limit: int | None) -> bool:
    """Another submission's base run already measures these benchmarks: wait for it."""
    wanted = {(p.slug, p.version, p.setup_key) for p in plan}
    for run in EvaluationRun.objects.filter(
        model_repo=repo, model_sha=sha, role=EvaluationRun.Role.BASE, status__in=UNFINISHED_RUN, limit=limit
    ):
        if wanted <= {(p.slug, p.version, p.setup_key) for p in run_plan(run)}:
            return True
    return False


# --- per-item samples -----------------------------------------------------------------------------


def record_from_row(r: SampleResult) -> SampleRecord:
    return SampleRecord(
        r.index, r.item_id, r.prompt, r.output, r.extracted, r.gold, r.correct, r.score, r.error, r.unparsed,
        r.details,
    )


def _text(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL: a model may emit one, which must not fail the run."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def row_from_record(run_id: int, plan: PlannedBenchmark, r: SampleRecord) -> SampleResult:
    return SampleResult(
        run_id=run_id,
        benchmark=plan.slug,
        setup_key=plan.setup_key,
        index=r.index,
        item_id=_text(str(r.item_id))[:200],
        prompt=_text(r.prompt),
        output=_text(r.output),
        extracted=_text(r.extracted),
        gold=_text(str(r.gold)),
        correct=bool(r.correct) and not r.error,
        score=min(1.0, max(0.0, float(r.score))),
        error=r.error,
        unparsed=bool(r.unparsed),
        details=_text(r.details or {}),
    )


class DbHooks(MeasureHooks):
    """Per-item rows in chunks, progress and the step log on the EvaluationRun.

    Every write is a checkpoint: it first calls `interrupted` (which raises when the task's soft
    time limit fired: the chunk in hand may have been cut short, so it is not stored) and checks
    that this worker still owns the run (RunLost when it was withdrawn or handed to another
    worker). `ticks` counts the checkpoints: the heartbeat's measure of progress."""

    def __init__(self, run: EvaluationRun, interrupted: Callable[[], None] | None = None):
        self.run_id = run.id
        self.worker = worker_id()
        self.interrupted = interrupted or (lambda: None)
        self.ticks = 0

    def _checkpoint(self) -> None:
        self.interrupted()
        self.ticks += 1

    def done_records(self, plan: PlannedBenchmark) -> list[SampleRecord]:
        rows = SampleResult.objects.filter(run_id=self.run_id, benchmark=plan.slug, setup_key=plan.setup_key)
        return [record_from_row(r) for r in rows.order_by("index")]

    def save_records(self, plan: PlannedBenchmark, records: list[SampleRecord]) -> None:
        self._checkpoint()
        if not owns(self.run_id):
            raise RunLost(f"run {self.run_id} is no longer this worker's; {len(records)} items not stored")
        if plan.private:  # scores only: a private item's text never reaches the database
            records = [private_sets.redact_sample(r) for r in records]
        SampleResult.objects.bulk_create(
            [row_from_record(self.run_id, plan, r) for r in records],
            ignore_conflicts=True,  # the unique (run, benchmark, setup_key, index) keeps one score per item
        )

    def progress(self, done: int, total: int, benchmark: str, step: str) -> None:
        self._checkpoint()
        updated = EvaluationRun.objects.filter(
            id=self.run_id, status=RunStatus.RUNNING, worker_host=self.worker
        ).update(
            progress_done=min(done, total),
            progress_total=total,
            current_benchmark=benchmark,
            current_step=step[:200],
            heartbeat_at=timezone.now(),
        )
        if not updated:
            raise RunLost(f"run {self.run_id} is no longer this worker's")

    def step(self, step: str) -> None:
        self._checkpoint()
        append_log(self.run_id, step)


# --- measurements ---------------------------------------------------------------------------------


def store_measurements(run_id: int, outcome: MeasureOutcome) -> bool:
    """Store the run's results and mark it DONE, unless this worker no longer owns it (then
    nothing is written and False is returned)."""
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().get(id=run_id)
        if run.status != RunStatus.RUNNING or run.worker_host != worker_id():
            return False
        for m in outcome.measurements.values():
            BenchmarkResult.objects.update_or_create(
                run=run,
                benchmark=m.benchmark,
                benchmark_version=m.version,
                setup_key=PlannedBenchmark(m.benchmark, m.version, m.setup).setup_key,
                defaults=_result_fields(m),
            )
        run.status = RunStatus.DONE
        run.finished_at = timezone.now()
        run.backend_versions = outcome.run_info.get("backend_info", {})
        run.sampling_params = outcome.run_info.get("sampling_params", {})
        run.dataset_hashes = outcome.run_info.get("dataset_hashes", {})
        run.not_run = outcome.run_info.get("not_run", {})
        run.timings = {**run.timings, **outcome.run_info.get("timings_s", {})}
        run.timings["usage"] = run_usage(run, run.backend_versions, run.timings)
        run.progress_done = run.progress_total
        run.current_step = "done"
        run.log = (list(run.log) + [log_entry("done")])[-MAX_LOG_ENTRIES:]
        run.save()
    return True


def run_devices(pool: str) -> int:
    """GPUs one worker of the run's pool holds (VERITY_POOLS), else the engine's tensor x pipeline
    parallel size (TENSOR_PARALLEL_SIZE, PIPELINE_PARALLEL_SIZE), else one."""
    for configured in settings.POOLS:
        if configured.name == pool:
            return configured.gpus
    engine = settings.ENGINE_OPTIONS
    return int(engine.get("tensor_parallel_size", 1)) * int(engine.get("pipeline_parallel_size", 1))


def run_usage(run: EvaluationRun, backend_info: dict[str, Any], timings: dict[str, Any]) -> dict[str, Any]:
    """What the run cost in device time: wall seconds x the GPUs its pool holds, for the whole run
    (from its last claim off the queue to its end: model download and load included; a silent
    run taken over in place keeps the earlier claim's start, so the dead attempt's time counts)
    and per benchmark (the runner's wall time in the attempt that finished). With VERITY_GPU_HOUR_PRICE, the price of those
    GPU-seconds. A run on a CPU holds no GPU: its time is CPU-host seconds, and no GPU price
    applies to it (cost None), so it is never shown as free GPU time."""
    gpu = str(backend_info.get("device", "")).lower() not in ("", "cpu")
    devices = run_devices(run.pool) if gpu else 1
    price = settings.GPU_HOUR_PRICE if gpu and settings.GPU_HOUR_PRICE > 0 else None
    wall_s = max(0.0, (run.finished_at - run.started_at).total_seconds()) if run.started_at and run.finished_at else 0.0

    def cost(device_seconds: float) -> float | None:
        return None if price is None else round(device_seconds / 3600.0 * price, 4)

    benchmarks = {}
    for slug, timing in timings.items():
        if isinstance(timing, dict) and "total_s" in timing:
            seconds = round(float(timing["total_s"]) * devices, 3)
            benchmarks[slug] = {"wall_s": round(float(timing["total_s"]), 3), "device_seconds": seconds,
                                "cost": cost(seconds)}
    total = round(wall_s * devices, 3)
    return {
        "device": "gpu" if gpu else "cpu",
        "devices": devices,
        "unit": "GPU-seconds" if gpu else "CPU-host-seconds",
        "wall_s": round(wall_s, 3),
        "device_seconds": total,
        "price_per_gpu_hour": price,
        "currency": settings.GPU_HOUR_CURRENCY if price is not None else None,
        "cost": cost(total),
        "benchmarks": benchmarks,
        "attempts": run.attempts,
    }


def _result_fields(m: Measurement) -> dict[str, Any]:
    return dict(
        setup=m.setup,
        measured=m.measured,
        ci_low=m.ci_low,
        ci_high=m.ci_high,
        n=m.n,
        n_errors=m.n_errors,
        n_unparsed=m.n_unparsed,
        dataset_hash=m.dataset_hash,
        private=private_sets.is_private(m.benchmark),
        metrics={**m.metrics, "se": m.se, **({"setup_note": m.setup_note} if m.setup_note else {})},
    )


def fail_run(run_id: int, error: str) -> None:
    """The run this worker holds ends FAILED with `error`."""
    EvaluationRun.objects.filter(id=run_id, status=RunStatus.RUNNING, worker_host=worker_id()).update(
        status=RunStatus.FAILED, error=error[:5000], finished_at=timezone.now(), current_step="failed"
    )


def measurements_of(run: EvaluationRun, plan: list[PlannedBenchmark]) -> dict[str, Measurement]:
    out: dict[str, Measurement] = {}
    for p in plan:
        row = run.results.filter(benchmark=p.slug, benchmark_version=p.version, setup_key=p.setup_key).first()
        if row is not None:
            out[p.slug] = measurement_from_row(row)
    return out


def measurement_from_row(row: BenchmarkResult) -> Measurement:
    samples = SampleResult.objects.filter(run_id=row.run_id, benchmark=row.benchmark, setup_key=row.setup_key)
    metrics = dict(row.metrics or {})
    return Measurement(
        benchmark=row.benchmark,
        version=row.benchmark_version,
        setup=row.setup,
        measured=row.measured,
        ci_low=row.ci_low,
        ci_high=row.ci_high,
        n=row.n,
        n_errors=row.n_errors,
        n_unparsed=row.n_unparsed,
        se=float(metrics.pop("se", 0.0)),
        dataset_hash=row.dataset_hash,
        item_correct=dict(samples.values_list("index", "correct")),
        setup_note=metrics.pop("setup_note", None),
        metrics=metrics,
    )
