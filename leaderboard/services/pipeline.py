"""The verification pipeline on the database: what the Celery tasks call.

Flow (each step is one task, ids as arguments; workers.tasks holds the thin wrappers):
  verify_submission(submission_id)  default queue: claim the submission, intake (pin + guards),
      plan the benchmarks, create the EvaluationRuns (the submission's and, for benchmarks whose
      base result is not cached, the claimed base's), enqueue measure_run on commit.
  measure_run(run_id)               gpu queue: claim the run, fetch the pinned snapshot into the
      model cache, measure with per-item rows saved in chunks (resume after a crash), store the
      BenchmarkResults, then enqueue finalize for the submissions waiting on it.
  finalize_submission(submission_id) gpu queue (checks may run the model): when every run it
      needs is finished, compare claims with measurements, run the later checks, store flags and
      the report, move the submission to verified / flagged / failed.
  sweep()                           beat: re-queue runs whose worker died or whose message was
      lost (e.g. Redis restarted), and submissions never picked up.
  recheck_weights()                 beat: re-resolve verified repos; raise weights_changed when
      the default branch moved away from the verified sha.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from leaderboard.models import (
    BenchmarkResult,
    EvaluationRun,
    Flag,
    FlagEvent,
    KnownBase,
    ModelSubmission,
    SampleResult,
)
from verification import intake as intake_mod
from verification import pipeline as vp
from verification import private_sets
from verification.checks import CheckContext, ModelRef, run_checks
from verification.claims import ClaimsDoc, ClaimSpec
from verification.compare import Measurement, base_section, compare, make_flag
from verification.modelcache import ModelCache
from verification.records import SampleRecord
from verification.report import build_report, status_for

log = logging.getLogger(__name__)

Status = ModelSubmission.Status
RunStatus = EvaluationRun.Status
UNFINISHED_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)
MAX_LOG_ENTRIES = 200


# --- settings -----------------------------------------------------------------------------------


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def heartbeat_interval_s() -> float:
    return float(os.environ.get("VERITY_HEARTBEAT_S") or _setting("RUN_HEARTBEAT_S", 10))


def stale_after_s() -> float:
    """A running run with no heartbeat for this long has lost its worker."""
    return float(os.environ.get("VERITY_STALE_AFTER_S") or _setting("RUN_STALE_AFTER_S", 120))


def requeue_after_s() -> float:
    """A queued run not picked up for this long is enqueued again (its message may be lost)."""
    return float(os.environ.get("VERITY_REQUEUE_AFTER_S") or _setting("RUN_REQUEUE_AFTER_S", 600))


def eval_limit() -> int | None:
    return int(settings.DEFAULT_EVAL_LIMIT) or None


def core_benchmarks() -> tuple[str, ...]:
    """The standard set measured for every submission ($VERITY_CORE_BENCHMARKS, comma-separated,
    "none" for claimed benchmarks only)."""
    raw = os.environ.get("VERITY_CORE_BENCHMARKS", "").strip()
    if raw:
        return () if raw.lower() == "none" else tuple(s.strip() for s in raw.split(",") if s.strip())
    return tuple(_setting("CORE_BENCHMARKS", vp.CORE_BENCHMARKS))


def model_cache() -> ModelCache:
    return ModelCache(settings.MODEL_CACHE_DIR, settings.MODEL_CACHE_BYTES)


def datasets_dir():
    from verification.datasets import datasets_dir_from_env

    return datasets_dir_from_env(settings.DATASETS_DIR)


def register_private_sets() -> list[str]:
    """Register the stored private held-out sets in this process's benchmark registry; their
    slugs are planned for every submission (the held-out test) and measurable by this worker."""
    try:
        return vp.register_private_sets(_setting("PRIVATE_BENCHMARKS_DIR", None))
    except (private_sets.PrivateSetError, OSError, ValueError) as exc:
        # A broken store must not stop public measurement; the message names the type only.
        log.error("private held-out sets not registered: %s", private_sets.safe_error(exc))
        return []


class Retryable(Exception):
    """A transient failure (the Hub timed out): the task retries later."""


# --- step 1: intake and planning ----------------------------------------------------------------


def claims_doc(submission: ModelSubmission) -> ClaimsDoc:
    return ClaimsDoc(
        claims=tuple(
            ClaimSpec(c.benchmark, c.score, c.shots, c.cot, c.chat_template, c.source_url)
            for c in submission.claims.order_by("id")
        ),
        base_model=submission.claimed_base or None,
        training=submission.training,
        endpoint=submission.endpoint_url or None,
        endpoint_model=submission.endpoint_model or None,
    )


def start_verification(submission_id: int, enqueue: Callable[[int], None] | None = None) -> list[int]:
    """Claim the submission, run intake, create runs. Returns the ids of the runs queued."""
    claimed = ModelSubmission.objects.filter(
        id=submission_id, status__in=(Status.RECEIVED, Status.QUEUED)
    ).update(status=Status.RUNNING)
    submission = ModelSubmission.objects.filter(id=submission_id).first()
    if submission is None:
        log.warning("verify_submission: submission %s does not exist", submission_id)
        return []
    if not claimed:
        # Redelivered after a crash between the claim and the runs: carry on; otherwise done.
        if submission.status != Status.RUNNING or submission.runs.exists():
            log.info("submission %s already %s; nothing to do", submission_id, submission.status)
            return []
    try:
        model_intake = intake_mod.inspect_source(
            submission.repo_id,
            submission.pinned_sha or submission.requested_revision,
            settings.MAX_MODEL_BYTES,
        )
    except intake_mod.IntakeRefused as refused:
        _reject(submission, refused)
        return []
    except intake_mod.TransientHubError as exc:
        ModelSubmission.objects.filter(id=submission.id).update(status=Status.QUEUED)
        raise Retryable(str(exc)) from exc
    doc = claims_doc(submission)
    plan = vp.plan_benchmarks(doc, None, core_benchmarks(), private=register_private_sets())
    limit = eval_limit()
    hygiene = {**model_intake.hygiene(), "sha": model_intake.sha}
    base_intake = None
    if submission.claimed_base:
        try:
            base_intake = intake_mod.inspect_source(submission.claimed_base, None, settings.MAX_MODEL_BYTES)
        except intake_mod.IntakeRefused as refused:
            hygiene["base_error"] = f"claimed base {submission.claimed_base} not measured: {refused.reason}"
        except intake_mod.TransientHubError as exc:
            ModelSubmission.objects.filter(id=submission.id).update(status=Status.QUEUED)
            raise Retryable(str(exc)) from exc
    queued: list[int] = []
    with transaction.atomic():
        submission = ModelSubmission.objects.select_for_update().get(id=submission.id)
        submission.pinned_sha = model_intake.sha or ""
        submission.intake = hygiene
        submission.save(update_fields=["pinned_sha", "intake", "updated_at"])
        run = _new_run(
            submission, EvaluationRun.Role.SUBMISSION, submission.repo_id, model_intake.sha or "", plan, limit
        )
        queued.append(run.id)
        if base_intake is not None:
            missing = [
                p
                for p in plan
                if _cached_result(base_intake.repo_id or base_intake.source, base_intake.sha or "", p, limit)
                is None
            ]
            if missing and not _in_flight_base_run(
                base_intake.repo_id or base_intake.source, base_intake.sha or "", missing, limit
            ):
                base_run = _new_run(
                    submission,
                    EvaluationRun.Role.BASE,
                    base_intake.repo_id or base_intake.source,
                    base_intake.sha or "",
                    missing,
                    limit,
                )
                queued.append(base_run.id)
        submission.intake = {**hygiene, "base_sha": base_intake.sha if base_intake else None}
        submission.save(update_fields=["intake", "updated_at"])
        send = enqueue or _enqueue_measure
        for run_id in queued:
            transaction.on_commit(lambda run_id=run_id: send(run_id))
    return queued


def _new_run(
    submission: ModelSubmission,
    role: str,
    repo: str,
    sha: str,
    plan: list[vp.PlannedBenchmark],
    limit: int | None,
) -> EvaluationRun:
    return EvaluationRun.objects.create(
        submission=submission,
        role=role,
        model_repo=repo,
        model_sha=sha,
        backend=settings.INFERENCE_BACKEND,
        benchmarks=[p.as_dict() for p in plan],
        limit=limit,
        code_version=vp.CODE_VERSION,
        status=RunStatus.QUEUED,
        heartbeat_at=timezone.now(),
        log=[_log_entry("queued")],
    )


def _reject(submission: ModelSubmission, refused: intake_mod.IntakeRefused) -> None:
    ModelSubmission.objects.filter(id=submission.id).update(
        status=Status.REJECTED,
        rejection_reason=refused.reason,
        intake={"refused": refused.code, "reason": refused.reason},
        finished_at=timezone.now(),
    )
    log.info("submission %s rejected at intake: %s", submission.id, refused.reason)


def _cached_result(
    repo: str, sha: str, plan: vp.PlannedBenchmark, limit: int | None
) -> BenchmarkResult | None:
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
        .order_by("-created_at")
        .first()
    )


def _in_flight_base_run(repo: str, sha: str, plan: list[vp.PlannedBenchmark], limit: int | None) -> bool:
    """Another submission's base run already measures these benchmarks: wait for it."""
    wanted = {(p.slug, p.version, p.setup_key) for p in plan}
    for run in EvaluationRun.objects.filter(
        model_repo=repo, model_sha=sha, role=EvaluationRun.Role.BASE, status__in=UNFINISHED_RUN, limit=limit
    ):
        covered = {
            (p.slug, p.version, p.setup_key) for p in map(vp.PlannedBenchmark.from_dict, run.benchmarks)
        }
        if wanted <= covered:
            return True
    return False


def _enqueue_measure(run_id: int) -> None:
    from workers.tasks import measure_run

    measure_run.delay(run_id)


def _enqueue_finalize(submission_id: int) -> None:
    from workers.tasks import finalize_submission

    finalize_submission.delay(submission_id)


# --- step 2: measuring ----------------------------------------------------------------------------


def claim_run(run_id: int) -> EvaluationRun | None:
    """queued -> running exactly once; a running run whose heartbeat is stale (its worker died)
    is taken over by compare-and-swap on the heartbeat."""
    now = timezone.now()
    me = _worker_id()
    if (
        EvaluationRun.objects.filter(id=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, heartbeat_at=now, worker_host=me, started_at=now
        )
        == 1
    ):
        return EvaluationRun.objects.get(id=run_id)
    run = EvaluationRun.objects.filter(id=run_id).first()
    if run is None:
        log.warning("measure_run: run %s does not exist", run_id)
        return None
    stale_before = now - timedelta(seconds=stale_after_s())
    if run.status == RunStatus.RUNNING and run.heartbeat_at is not None and run.heartbeat_at < stale_before:
        if (
            EvaluationRun.objects.filter(
                id=run_id, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at
            ).update(heartbeat_at=now, worker_host=me)
            == 1
        ):
            log.info("run %s taken over from a dead worker (%s)", run_id, run.worker_host)
            return EvaluationRun.objects.get(id=run_id)
    log.info("run %s is %s (worker %s); not claimed", run_id, run.status, run.worker_host)
    return None


class DbHooks(vp.MeasureHooks):
    """Per-item rows in chunks, progress and the step log on the EvaluationRun."""

    def __init__(self, run: EvaluationRun):
        self.run_id = run.id

    def done_records(self, plan: vp.PlannedBenchmark) -> list[SampleRecord]:
        rows = SampleResult.objects.filter(run_id=self.run_id, benchmark=plan.slug, setup_key=plan.setup_key)
        return [
            SampleRecord(
                r.index,
                r.item_id,
                r.prompt,
                r.output,
                r.extracted,
                r.gold,
                r.correct,
                r.score,
                r.error,
                r.unparsed,
                r.details,
            )
            for r in rows.order_by("index")
        ]

    def save_records(self, plan: vp.PlannedBenchmark, records: list[SampleRecord]) -> None:
        if plan.private:  # scores only: a private item's text never reaches the database
            records = [private_sets.redact_sample(r) for r in records]
        SampleResult.objects.bulk_create(
            [
                SampleResult(
                    run_id=self.run_id,
                    benchmark=plan.slug,
                    setup_key=plan.setup_key,
                    index=r.index,
                    item_id=str(r.item_id)[:200],
                    prompt=r.prompt,
                    output=r.output,
                    extracted=r.extracted,
                    gold=str(r.gold),
                    correct=bool(r.correct) and not r.error,
                    score=min(1.0, max(0.0, float(r.score))),
                    error=r.error,
                    unparsed=bool(r.unparsed),
                    details=r.details or {},
                )
                for r in records
            ],
            ignore_conflicts=True,  # the unique (run, benchmark, setup_key, index) keeps one score per item
        )

    def progress(self, done: int, total: int, benchmark: str, step: str) -> None:
        EvaluationRun.objects.filter(id=self.run_id).update(
            progress_done=min(done, total),
            progress_total=total,
            current_benchmark=benchmark,
            current_step=step[:200],
            heartbeat_at=timezone.now(),
        )

    def step(self, step: str) -> None:
        append_log(self.run_id, step)


def append_log(run_id: int, step: str) -> None:
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().filter(id=run_id).first()
        if run is None:
            return
        run.log = (list(run.log) + [_log_entry(step)])[-MAX_LOG_ENTRIES:]
        run.current_step = step[:200]
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["log", "current_step", "heartbeat_at"])


class Heartbeat:
    """Refreshes heartbeat_at from a thread while a long step (engine start, one big batch)
    gives no progress callback; the sweep treats a silent run as dead."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(heartbeat_interval_s()):
                EvaluationRun.objects.filter(id=self.run_id, status=RunStatus.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()


def execute_run(run_id: int) -> str:
    """Measure one claimed run end to end. Returns the final run status."""
    run = claim_run(run_id)
    if run is None:
        return "skipped"
    resumed = SampleResult.objects.filter(run_id=run.id).count()
    append_log(
        run.id, f"claimed by {_worker_id()}" + (f"; resuming after {resumed} stored items" if resumed else "")
    )
    plan = [vp.PlannedBenchmark.from_dict(p) for p in run.benchmarks]
    if any(p.private for p in plan):
        register_private_sets()
    hooks = DbHooks(run)
    try:
        with Heartbeat(run.id), ExitStack() as stack:
            hooks.step("resolve and check snapshot")
            model_intake = intake_mod.inspect_source(
                run.model_repo, run.model_sha or None, settings.MAX_MODEL_BYTES
            )
            hooks.step("fetch snapshot into the model cache")
            path = stack.enter_context(vp.model_files(model_intake, model_cache()))
            hooks.step(f"start {run.backend} backend")
            backend = vp.open_backend(run.backend, path, sha=model_intake.sha, repo_id=model_intake.repo_id)
            stack.callback(backend.close)
            outcome = vp.measure_model(
                path, plan, backend=backend, datasets_dir=datasets_dir(), limit=run.limit, hooks=hooks
            )
            backend_info = vp.describe_backend(backend)
    except intake_mod.TransientHubError as exc:
        EvaluationRun.objects.filter(id=run.id).update(status=RunStatus.QUEUED, heartbeat_at=timezone.now())
        raise Retryable(str(exc)) from exc
    except Exception as exc:
        if isinstance(exc, vp.PrivateBenchmarkError):
            # Already reduced to the exception type; no traceback (it could show item text).
            log.error("run %s failed: %s", run.id, exc)
        else:
            log.exception("run %s failed", run.id)
        _fail_run(run.id, f"{type(exc).__name__}: {exc}")
        _after_run(run.id)
        return RunStatus.FAILED
    _store_measurements(run.id, outcome, backend_info)
    _after_run(run.id)
    return RunStatus.DONE


def _store_measurements(run_id: int, outcome: vp.MeasureOutcome, backend_info: dict[str, Any]) -> None:
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().get(id=run_id)
        for m in outcome.measurements.values():
            BenchmarkResult.objects.update_or_create(
                run=run,
                benchmark=m.benchmark,
                benchmark_version=m.version,
                setup_key=vp.PlannedBenchmark(m.benchmark, m.version, m.setup).setup_key,
                defaults=dict(
                    setup=m.setup,
                    measured=m.measured,
                    ci_low=m.ci_low,
                    ci_high=m.ci_high,
                    n=m.n,
                    n_errors=m.n_errors,
                    n_unparsed=m.n_unparsed,
                    dataset_hash=m.dataset_hash,
                    private=private_sets.is_private(m.benchmark),
                    metrics={
                        **m.metrics,
                        "se": m.se,
                        **({"setup_note": m.setup_note} if m.setup_note else {}),
                    },
                ),
            )
        run.status = RunStatus.DONE
        run.finished_at = timezone.now()
        run.backend_versions = backend_info
        run.sampling_params = outcome.run_info.get("sampling_params", {})
        run.dataset_hashes = outcome.run_info.get("dataset_hashes", {})
        run.timings = {**run.timings, **outcome.run_info.get("timings_s", {})}
        run.progress_done = run.progress_total
        run.current_step = "done"
        run.log = (list(run.log) + [_log_entry("done")])[-MAX_LOG_ENTRIES:]
        run.save()


def _fail_run(run_id: int, error: str) -> None:
    EvaluationRun.objects.filter(id=run_id).update(
        status=RunStatus.FAILED, error=error[:5000], finished_at=timezone.now(), current_step="failed"
    )


def _after_run(run_id: int) -> None:
    """Wake the submissions that may now be complete."""
    run = EvaluationRun.objects.get(id=run_id)
    waiting = set()
    if run.submission_id:
        waiting.add(run.submission_id)
    if run.role == EvaluationRun.Role.BASE:
        waiting.update(
            ModelSubmission.objects.filter(status=Status.RUNNING, claimed_base=run.model_repo).values_list(
                "id", flat=True
            )
        )
    for submission_id in sorted(waiting):
        transaction.on_commit(lambda sid=submission_id: _enqueue_finalize(sid))


# --- step 3: compare, checks, publish -----------------------------------------------------------


def finalize(submission_id: int) -> str:
    """Publish the submission when every run it needs is finished. Idempotent: a finished
    submission or one still waiting returns without changes."""
    submission = ModelSubmission.objects.filter(id=submission_id).first()
    if submission is None:
        log.warning("finalize: submission %s does not exist", submission_id)
        return "missing"
    if submission.status != Status.RUNNING:
        return submission.status
    own = submission.runs.filter(role=EvaluationRun.Role.SUBMISSION).order_by("-created_at").first()
    if own is None or own.status in UNFINISHED_RUN:
        return "waiting"
    plan = [vp.PlannedBenchmark.from_dict(p) for p in own.benchmarks]
    base_sha = (submission.intake or {}).get("base_sha")
    base_repo = submission.claimed_base
    if base_repo and base_sha and _in_flight_base_run(base_repo, base_sha, plan, own.limit):
        return "waiting"
    if submission.runs.filter(status__in=UNFINISHED_RUN).exists():
        return "waiting"
    if own.status == RunStatus.FAILED:
        return _publish_failure(submission, own)
    measurements = _measurements_of(own, plan)
    base = None
    if base_repo and base_sha:
        base = {}
        for p in plan:
            result = _cached_result(base_repo, base_sha, p, own.limit)
            if result is not None:
                base[p.slug] = _measurement_from_row(result)
    doc = claims_doc(submission)
    benchmarks, flags = compare(measurements, doc, base)
    sections, check_flags, check_log = _run_later_checks(submission, own, doc, benchmarks, base)
    report = build_report(
        source=submission.repo_id,
        revision=own.model_sha or None,
        claimed_base=base_repo or None,
        intake={k: v for k, v in (submission.intake or {}).items() if k not in ("sha", "base_sha")},
        benchmarks=benchmarks,
        base=base_section(base),
        sections=sections,
        flags=flags + check_flags,
        run={
            "run_id": own.id,
            "code_version": own.code_version,
            "backend": own.backend,
            "backend_versions": own.backend_versions,
            "sampling_params": own.sampling_params,
            "dataset_hashes": own.dataset_hashes,
            "timings": own.timings,
            "limit": own.limit,
            "plan": own.benchmarks,
            "checks": check_log,
            "base_runs": [
                {"run_id": r.id, "status": r.status, "error": r.error}
                for r in submission.runs.filter(role=EvaluationRun.Role.BASE)
            ],
        },
    )
    return _publish(submission.id, own, benchmarks, report)


def _measurements_of(run: EvaluationRun, plan: list[vp.PlannedBenchmark]) -> dict[str, Measurement]:
    out: dict[str, Measurement] = {}
    for p in plan:
        row = run.results.filter(benchmark=p.slug, benchmark_version=p.version, setup_key=p.setup_key).first()
        if row is not None:
            out[p.slug] = _measurement_from_row(row)
    return out


def _measurement_from_row(row: BenchmarkResult) -> Measurement:
    samples = SampleResult.objects.filter(run_id=row.run_id, benchmark=row.benchmark, setup_key=row.setup_key)
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
        se=float((row.metrics or {}).get("se", 0.0)),
        dataset_hash=row.dataset_hash,
        item_correct=dict(samples.values_list("index", "correct")),
        setup_note=(row.metrics or {}).get("setup_note"),
    )


def _run_later_checks(
    submission: ModelSubmission,
    run: EvaluationRun,
    doc: ClaimsDoc,
    benchmarks: dict[str, Any],
    base: dict[str, Measurement] | None,
):
    cache = model_cache()
    with ExitStack() as stack:
        model_intake = intake_mod.inspect_source(
            run.model_repo, run.model_sha or None, settings.MAX_MODEL_BYTES
        )
        path = stack.enter_context(vp.model_files(model_intake, cache))
        base_ref = None
        if submission.claimed_base and (submission.intake or {}).get("base_sha"):
            try:
                base_intake = intake_mod.inspect_source(
                    submission.claimed_base, submission.intake["base_sha"], settings.MAX_MODEL_BYTES
                )
                base_ref = ModelRef(
                    base_intake.source,
                    base_intake.repo_id,
                    base_intake.sha,
                    stack.enter_context(vp.model_files(base_intake, cache)),
                )
            except intake_mod.IntakeRefused as refused:
                log.warning("base %s unavailable for checks: %s", submission.claimed_base, refused.reason)
        model_ref = ModelRef(model_intake.source, model_intake.repo_id, model_intake.sha, path)
        context = CheckContext(
            model=model_ref,
            base=base_ref,
            candidates=_known_base_candidates(model_ref, base_ref, cache, stack),
            claims=doc,
            intake=dict(submission.intake or {}),
            benchmarks=benchmarks,
            base_benchmarks=base_section(base),
            endpoint_url=submission.endpoint_url or None,
            endpoint_model=submission.endpoint_model or None,
            datasets_dir=datasets_dir(),
            backend_name=run.backend,
            backend=None,
            limit=run.limit,
            options=vp.check_options_for_plan([vp.PlannedBenchmark.from_dict(p) for p in run.benchmarks]),
        )
        return run_checks(context)


def _known_base_candidates(
    model: ModelRef, base_ref: ModelRef | None, cache: ModelCache, stack: ExitStack
) -> list[ModelRef]:
    """The maintainers' registered bases whose weight shapes match the submitted model's (only
    those can be compared tensor by tensor), fetched like any model; one that cannot be fetched
    is passed without files (reported as unresolved)."""
    from verification.provenance import ProvenanceInputError, shape_signature

    try:
        signature = shape_signature(model.path)
    except (ProvenanceInputError, OSError, ValueError) as exc:
        log.warning("no provenance candidates: shape signature failed: %s", exc)
        return []
    compared_already = {model.repo_id, model.source}  # the model itself and its claimed base
    if base_ref is not None:
        compared_already |= {base_ref.repo_id, base_ref.source}
    refs: list[ModelRef] = []
    for known in KnownBase.objects.filter(shape_signature=signature).order_by("repo_id"):
        if known.repo_id in compared_already:
            continue
        try:
            result = intake_mod.inspect_source(known.repo_id, known.revision or None, settings.MAX_MODEL_BYTES)
            path = stack.enter_context(vp.model_files(result, cache))
            refs.append(ModelRef(result.source, result.repo_id, result.sha, path))
        except (intake_mod.IntakeRefused, intake_mod.TransientHubError, OSError, ValueError) as exc:
            log.warning("known base %s unavailable as a candidate: %s", known.repo_id, exc)
            refs.append(ModelRef(known.repo_id, known.repo_id, known.revision or None, None))
    return refs


def _publish(
    submission_id: int, run: EvaluationRun, benchmarks: dict[str, Any], report: dict[str, Any]
) -> str:
    with transaction.atomic():
        submission = ModelSubmission.objects.select_for_update().get(id=submission_id)
        if submission.status != Status.RUNNING:
            return submission.status  # another finalize won the race
        for slug, entry in benchmarks.items():
            BenchmarkResult.objects.filter(
                run=run, benchmark=slug, benchmark_version=entry["version"]
            ).update(claimed=entry["claimed"], z=entry["z"], verdict=entry["verdict"])
        for flag in report["flags"]:
            _raise_flag(submission, run, flag)
        submission.report = report
        submission.status = status_for(report)
        submission.finished_at = timezone.now()
        submission.save(update_fields=["report", "status", "finished_at", "updated_at"])
        transaction.on_commit(lambda: _refresh_entry(submission_id))
    return submission.status


def _publish_failure(submission: ModelSubmission, run: EvaluationRun) -> str:
    with transaction.atomic():
        locked = ModelSubmission.objects.select_for_update().get(id=submission.id)
        if locked.status != Status.RUNNING:
            return locked.status
        locked.status = Status.FAILED
        locked.finished_at = timezone.now()
        locked.report = None
        locked.intake = {**(locked.intake or {}), "error": run.error}
        locked.save(update_fields=["status", "finished_at", "report", "intake", "updated_at"])
    return Status.FAILED


def _raise_flag(submission: ModelSubmission, run: EvaluationRun | None, flag: dict[str, Any]) -> Flag:
    """A new Flag with its 'raised' event; a finding already open on this submission (a re-run
    seeing the same problem) gets a note with the new evidence instead of a duplicate flag."""
    existing = submission.flags.filter(
        kind=flag["kind"],
        benchmark=flag.get("benchmark") or "",
        status__in=(Flag.Status.OPEN, Flag.Status.CONFIRMED),
    ).first()
    if existing is not None and flag["kind"] != Flag.Kind.WEIGHTS_CHANGED:
        FlagEvent.objects.create(
            flag=existing,
            action=FlagEvent.Action.NOTE,
            from_status=existing.status,
            to_status=existing.status,
            message=f"seen again: {flag['summary']}",
            data={"run": run.id if run else None, "evidence": flag.get("evidence") or {}},
        )
        return existing
    created = Flag.objects.create(
        submission=submission,
        run=run,
        kind=flag["kind"],
        severity=flag["severity"],
        benchmark=flag.get("benchmark") or "",
        summary=flag["summary"],
        evidence=flag.get("evidence") or {},
    )
    FlagEvent.objects.create(
        flag=created,
        action=FlagEvent.Action.RAISED,
        to_status=created.status,
        message=flag["summary"],
        data={"kind": flag["kind"]},
    )
    transaction.on_commit(lambda: _notify_flag_raised(created.id))
    return created


def _notify_flag_raised(flag_id: int) -> None:
    """E-mail the author; a mail failure must not undo the published result."""
    from leaderboard.services import notifications

    flag = Flag.objects.filter(id=flag_id).select_related("submission").first()
    if flag is None:
        return
    try:
        notifications.do_notify_flag_raised(flag)
    except Exception:
        log.exception("notifying the author of flag %s failed", flag_id)


def _refresh_entry(submission_id: int) -> None:
    from leaderboard.services.leaderboard import do_refresh_leaderboard_entry

    submission = ModelSubmission.objects.filter(id=submission_id).first()
    if submission is not None:
        do_refresh_leaderboard_entry(submission)


# --- periodic -------------------------------------------------------------------------------------


def sweep(
    enqueue_run: Callable[[int], None] | None = None, enqueue_submission: Callable[[int], None] | None = None
) -> dict[str, list[int]]:
    """Re-queue runs that lost their worker or their broker message, and submissions never
    picked up. Every re-queue is safe to duplicate: tasks claim their row idempotently."""
    now = timezone.now()
    send_run = enqueue_run or _enqueue_measure
    dead: list[int] = []
    for run in EvaluationRun.objects.filter(
        status=RunStatus.RUNNING, heartbeat_at__lt=now - timedelta(seconds=stale_after_s())
    ):
        if (
            EvaluationRun.objects.filter(
                id=run.id, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at
            ).update(status=RunStatus.QUEUED, heartbeat_at=now)
            == 1
        ):
            append_log(run.id, f"worker {run.worker_host or '?'} silent; re-queued")
            dead.append(run.id)
    lost: list[int] = []
    for run in EvaluationRun.objects.filter(
        status=RunStatus.QUEUED, heartbeat_at__lt=now - timedelta(seconds=requeue_after_s())
    ):
        if (
            EvaluationRun.objects.filter(
                id=run.id, status=RunStatus.QUEUED, heartbeat_at=run.heartbeat_at
            ).update(heartbeat_at=now)
            == 1
        ):
            append_log(run.id, "not picked up in time (broker message lost?); enqueued again")
            lost.append(run.id)
    for run_id in dead + lost:
        send_run(run_id)
    send_sub = enqueue_submission or _enqueue_verify
    # Submissions never picked up (broker down when they were sent, message lost). The row is
    # touched so each one is sent again at most once per REQUEUE_AFTER, not at every sweep.
    unclaimed = list(
        ModelSubmission.objects.filter(
            status__in=(Status.RECEIVED, Status.QUEUED),
            updated_at__lt=now - timedelta(seconds=requeue_after_s()),
        ).values_list("id", flat=True)
    )
    for submission_id in unclaimed:
        ModelSubmission.objects.filter(id=submission_id).update(updated_at=now)
        send_sub(submission_id)
    # A submission whose runs all finished but whose finalize message was lost.
    stuck = [
        s.id
        for s in ModelSubmission.objects.filter(
            status=Status.RUNNING, updated_at__lt=now - timedelta(seconds=requeue_after_s())
        )
        if s.runs.exists() and not s.runs.filter(status__in=UNFINISHED_RUN).exists()
    ]
    for submission_id in stuck:
        # Touch the row so a slow finalize (checks) is not enqueued again at every sweep.
        ModelSubmission.objects.filter(id=submission_id).update(updated_at=now)
        _enqueue_finalize(submission_id)
    return {"dead_runs": dead, "lost_runs": lost, "submissions": unclaimed, "finalize": stuck}


def _enqueue_verify(submission_id: int) -> None:
    from workers.tasks import verify_submission

    verify_submission.delay(submission_id)


def recheck_weights() -> list[int]:
    """Re-resolve each verified repo's default branch; flag weights_changed when it moved away
    from the sha that was measured. Returns the ids of the submissions flagged now."""
    flagged: list[int] = []
    for submission in ModelSubmission.objects.filter(status__in=(Status.VERIFIED, Status.FLAGGED)).exclude(
        pinned_sha=""
    ):
        try:
            current = intake_mod.resolve_revision(submission.repo_id, None)
        except intake_mod.IntakeRefused as refused:
            current, reason = None, refused.reason
        except intake_mod.TransientHubError as exc:
            log.warning("weights re-check of %s skipped: %s", submission.repo_id, exc)
            continue
        else:
            reason = None
        if current == submission.pinned_sha:
            continue
        already = submission.flags.filter(
            kind=Flag.Kind.WEIGHTS_CHANGED, evidence__current_sha=current
        ).exists()
        if already:
            continue
        summary = (
            f"default branch of {submission.repo_id} now points at {current[:12]}, "
            f"not the verified {submission.pinned_sha[:12]}: the published weights are no longer the ones measured"
            if current
            else f"{submission.repo_id} can no longer be resolved ({reason}); the measured weights are gone"
        )
        flag = make_flag(
            "weights_changed",
            "warning",
            summary,
            {
                "verified_sha": submission.pinned_sha,
                "current_sha": current,
                "checked_at": timezone.now().isoformat(),
            },
        )
        with transaction.atomic():
            _raise_flag(submission, None, flag)
            ModelSubmission.objects.filter(id=submission.id).update(status=Status.FLAGGED)
            transaction.on_commit(lambda sid=submission.id: _refresh_entry(sid))
        flagged.append(submission.id)
    return flagged


# --- helpers --------------------------------------------------------------------------------------


def _log_entry(step: str) -> dict[str, str]:
    return {"at": timezone.now().isoformat(), "step": step[:500]}


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
