"""The database side of the engine's pipeline steps (verification/pipeline.py), one per task:

  start_verification(submission_id)  prepare: claim the submission, pin and inspect the model and its
      claimed base, plan, create the runs (the submission's and, for benchmarks whose base result is
      not cached, the base's), send measure_run on commit.
  execute_run(run_id)                measure: claim the run, measure with per-item rows saved in
      chunks (resume after a crash), store the results, send finalize for waiting submissions.
  finalize(submission_id)            conclude: when every run it needs is finished, judge the
      claims, run the checks, write the flags and the report, set the submission's status.
  recheck_weights()                  periodic: flag verified repos whose weights moved.

Each step reads its rows, calls exactly one engine step, and writes the result back; rows and
records are mapped in workers/storage.py, liveness (claims, heartbeat, sweep) in workers/liveness.py.

Every step ends its row in a known state whatever happens: a refusal (REJECTED with its reason),
a bounded retry (the row back in the queue, the attempt counted), or FAILED with its reason once
the attempts are used up. A soft time limit is never swallowed: a run that hits it keeps its
stored items and is re-queued to resume; an intake or a conclusion that hits it is retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from leaderboard.models import EvaluationRun, KnownBase, ModelSubmission, SampleResult
from leaderboard.services.flags import do_raise_flag, duplicate_of
from leaderboard.services.leaderboard import do_refresh_leaderboard_entry
from leaderboard.services.notifications import announce_finish
from verification import intake as intake_mod
from verification import pipeline, private_sets
from verification.compare import make_flag
from verification.endpoint.urlcheck import blocked_hostports_from_urls
from verification.intake import IntakeResult
from verification.modelcache import ModelCache
from verification.placement import DownloadPlan, Placement
from verification.report import status_for
from workers import storage
from workers.liveness import (
    UNFINISHED_RUN,
    RunLost,
    SoftLimitWatch,
    append_log,
    caused_by,
    claim_run,
    claim_submission_step,
    fail_submission,
    requeue_owned_run,
    run_heartbeat,
    send_on_commit,
    submission_heartbeat,
    submission_is_silent,
    wake_waiting_submissions,
    worker_id,
)

log = logging.getLogger(__name__)

Status = ModelSubmission.Status
RunStatus = EvaluationRun.Status


class Retryable(Exception):
    """A failure worth another try (the Hub timed out, an intake attempt failed): the task
    retries later with backoff; the attempts counted on the row bound how often."""


def model_cache() -> ModelCache:
    return ModelCache(settings.MODEL_CACHE_DIR, settings.MODEL_CACHE_BYTES, token=settings.HF_TOKEN)


def register_private_sets() -> list[str]:
    """Register the stored private held-out sets in this process's benchmark registry; their
    slugs are planned for every submission (the held-out test) and measurable by this worker."""
    try:
        return pipeline.register_private_sets(settings.PRIVATE_BENCHMARKS_DIR)
    except (private_sets.PrivateSetError, OSError, ValueError) as exc:
        # A broken store must not stop public measurement; the message names the type only.
        log.error("private held-out sets not registered: %s", private_sets.safe_error(exc))
        return []


# --- prepare --------------------------------------------------------------------------------------


def start_verification(submission_id: int, enqueue: Callable[[int], None] | None = None) -> list[int]:
    """Claim the submission (one counted attempt), prepare it, create its runs and send them
    (`enqueue`, default the measure_run task) on commit. Returns the ids of the runs queued."""
    claim = _claim_intake(submission_id)
    if claim is None:
        return []
    submission, attempt = claim
    try:
        with SoftLimitWatch() as limit, submission_heartbeat(submission.id):
            prep = pipeline.prepare(
                submission.repo_id,
                submission.pinned_sha or submission.requested_revision,
                storage.claims_doc(submission),
                core=settings.CORE_BENCHMARKS,
                private=register_private_sets(),
                max_model_bytes=settings.MAX_MODEL_BYTES,
                token=settings.HF_TOKEN,
                pools=settings.POOLS,
                cache_budget_bytes=settings.MODEL_CACHE_BYTES,
            )
            limit.check()
    except intake_mod.IntakeRefused as refused:
        _reject(submission, refused)
        return []
    except DatabaseError:
        raise  # the row cannot be written now: the sweep re-queues the silent intake
    except Exception as exc:
        _retry_or_fail_intake(submission, attempt, exc)
        return []
    send_run = enqueue or (lambda run_id: send_on_commit("verity.measure_run", run_id))
    return _create_runs(submission, attempt, prep, settings.DEFAULT_EVAL_LIMIT, send_run)


def _claim_intake(submission_id: int) -> tuple[ModelSubmission, int] | None:
    """A received or queued submission, or a running one without runs whose intake worker went
    silent (killed mid-intake); anything else is a duplicate delivery and is left alone."""
    submission = ModelSubmission.objects.filter(id=submission_id).first()
    if submission is None:
        log.warning("verify_submission: submission %s does not exist", submission_id)
        return None
    dead_intake = (
        submission.status == Status.RUNNING and not submission.runs.exists() and submission_is_silent(submission)
    )
    if submission.status not in (Status.RECEIVED, Status.QUEUED) and not dead_intake:
        log.info("submission %s already %s; nothing to do", submission_id, submission.status)
        return None
    attempt = claim_submission_step(submission, submission.status, "intake")
    if attempt is None:
        return None
    submission.refresh_from_db()
    return submission, attempt


def _retry_or_fail_intake(submission: ModelSubmission, attempt: int, exc: Exception) -> None:
    """Anything but a refusal: the Hub unreachable, the time limit, an intake bug or a file no
    guard foresaw. Retried (the row back in the queue, the task retried with backoff) until the
    attempts are used up, then FAILED with the error as its reason."""
    transient = isinstance(exc, intake_mod.TransientHubError)
    what = "soft time limit reached" if caused_by(exc, (SoftTimeLimitExceeded,)) else f"{type(exc).__name__}: {exc}"
    if not transient:
        log.error("submission %s: intake attempt %s failed: %s", submission.id, attempt, what, exc_info=exc)
    if attempt >= settings.MAX_SUBMISSION_ATTEMPTS:
        fail_submission(submission.id, f"intake failed after {attempt} attempts: {what}")
        return
    ModelSubmission.objects.filter(id=submission.id, status=Status.RUNNING).update(
        status=Status.QUEUED, updated_at=timezone.now()
    )
    raise Retryable(what) from exc


def _create_runs(
    claimed: ModelSubmission, attempt: int, prep: pipeline.Preparation, limit: int | None,
    send_run: Callable[[int], None],
) -> list[int]:
    """Create the runs of this intake attempt, once: under the submission's row lock, and only if
    this attempt still holds the submission (no withdrawal, no later attempt, no run created
    since this attempt's claim by another delivery, none still unfinished)."""
    with transaction.atomic():
        submission = ModelSubmission.objects.select_for_update().get(id=claimed.id)
        if (
            submission.status != Status.RUNNING
            or submission.attempts != attempt
            or submission.runs.filter(Q(status__in=UNFINISHED_RUN) | Q(created_at__gte=claimed.updated_at)).exists()
        ):
            log.info("submission %s: intake attempt %s superseded; no runs created", claimed.id, attempt)
            return []
        submission.pinned_sha = prep.model.sha or ""
        submission.intake = prep.intake_record()
        submission.attempts = 0  # the count starts again for the conclusion
        submission.save(update_fields=["pinned_sha", "intake", "attempts", "updated_at"])
        runs = [
            storage.new_run(
                submission, EvaluationRun.Role.SUBMISSION, prep.model, prep.plan, limit, pool_name(prep.placement),
                download=prep.download,
            )
        ]
        if prep.base is not None:
            base_run = _base_run(
                submission, prep.base, prep.plan, limit, pool_name(prep.base_placement), prep.base_download
            )
            if base_run is not None:
                runs.append(base_run)
        for run in runs:
            transaction.on_commit(lambda run_id=run.id: send_run(run_id))
    return [run.id for run in runs]


def _base_run(
    submission: ModelSubmission, base: IntakeResult, plan: list[pipeline.PlannedBenchmark], limit: int | None,
    pool: str, download: DownloadPlan | None = None,
) -> EvaluationRun | None:
    """A run of the claimed base for the benchmarks no finished or running run already covers:
    a base is measured once per (sha, benchmark version, setup, items) and shared. The check and
    the creation hold the base's lock (until the caller's transaction commits), so two workers
    preparing two submissions on the same base at once create one base run between them."""
    repo, sha = base.repo_id or base.source, base.sha or ""
    storage.lock_base_model(repo, sha)
    missing = [p for p in plan if storage.cached_result(repo, sha, p, limit) is None]
    if not missing or storage.in_flight_base_run(repo, sha, missing, limit):
        return None
    return storage.new_run(submission, EvaluationRun.Role.BASE, base, missing, limit, pool, download=download)


def pool_name(placement: Placement | None) -> str:
    """The run's pool: the one placement chose, or "" (no pools: the default GPU queue)."""
    return placement.pool.name if placement is not None else ""


def _reject(submission: ModelSubmission, refused: intake_mod.IntakeRefused) -> None:
    ModelSubmission.objects.filter(id=submission.id, status=Status.RUNNING).update(
        status=Status.REJECTED,
        rejection_reason=refused.reason,
        intake={"refused": refused.code, "reason": refused.reason},
        finished_at=timezone.now(),
    )
    log.info("submission %s rejected at intake: %s", submission.id, refused.reason)


# --- measure --------------------------------------------------------------------------------------


def execute_run(run_id: int) -> str:
    """Measure one claimed run end to end. Returns the run's status after this attempt
    ("skipped" when not claimed, "lost" when it was withdrawn or handed to another worker)."""
    run = claim_run(run_id)
    if run is None:
        return "skipped"
    resumed = SampleResult.objects.filter(run_id=run.id).count()
    append_log(
        run.id,
        f"attempt {run.attempts} claimed by {worker_id()}"
        + (f"; resuming after {resumed} stored items" if resumed else ""),
    )
    plan = storage.run_plan(run)
    if any(p.private for p in plan):
        register_private_sets()
    cache = model_cache()
    with SoftLimitWatch() as limit:
        hooks = storage.DbHooks(run, interrupted=limit.check)
        try:
            with run_heartbeat(
                run.id, probe=lambda: (hooks.ticks, cache.downloading_bytes()), status=cache.download_status
            ):
                outcome = pipeline.measure(
                    _intake_of(run),
                    plan,
                    backend=run.backend,
                    datasets_dir=settings.DATASETS_DIR,
                    limit=run.limit,
                    cache=cache,
                    hooks=hooks,
                    engine=settings.ENGINE_OPTIONS,
                    chunk_size=settings.CHUNK_SIZE,
                )
        except Exception as exc:
            return _measure_failed(run, exc, limit.hit)
    if not storage.store_measurements(run.id, outcome):
        return "lost"
    wake_waiting_submissions(run.id)
    return RunStatus.DONE


def _measure_failed(run: EvaluationRun, exc: Exception, limit_hit: bool) -> str:
    """Where an interrupted measurement goes: lost (stop quietly), re-queued to resume (time
    limit, Hub, database), or FAILED with its error (the model or the engine failed)."""
    if caused_by(exc, (RunLost,)):
        log.info("run %s: %s; stopping", run.id, exc)
        return "lost"
    if limit_hit or caused_by(exc, (SoftTimeLimitExceeded,)):
        stored = SampleResult.objects.filter(run_id=run.id).count()
        if requeue_owned_run(run.id, f"soft time limit reached with {stored} items stored; re-queued to resume"):
            send_on_commit("verity.measure_run", run.id)
        return RunStatus.QUEUED
    if caused_by(exc, (DatabaseError,)):
        log.error("run %s: database unavailable (%s); the sweep re-queues it", run.id, exc)
        raise exc
    if isinstance(exc, intake_mod.TransientHubError):
        requeue_owned_run(run.id, f"Hub unreachable ({exc}); retrying")
        raise Retryable(str(exc)) from exc
    if isinstance(exc, pipeline.PrivateBenchmarkError):
        # Already reduced to the exception type; no traceback (it could show item text).
        log.error("run %s failed: %s", run.id, exc)
    else:
        log.exception("run %s failed", run.id, exc_info=exc)
    storage.fail_run(run.id, f"{type(exc).__name__}: {exc}")
    wake_waiting_submissions(run.id)
    return RunStatus.FAILED


def _intake_of(run: EvaluationRun) -> IntakeResult:
    """The intake record stored when the run was planned; a row without one is inspected again."""
    return storage.run_intake(run) or intake_mod.inspect_source(
        run.model_repo, run.model_sha or None, settings.MAX_MODEL_BYTES, token=settings.HF_TOKEN
    )


# --- conclude -------------------------------------------------------------------------------------


def finalize(submission_id: int) -> str:
    """Publish the submission when every run it needs is finished. Idempotent: a finished
    submission, one still waiting, or one another worker is concluding returns unchanged."""
    submission = ModelSubmission.objects.filter(id=submission_id).first()
    if submission is None:
        log.warning("finalize: submission %s does not exist", submission_id)
        return "missing"
    if submission.status != Status.RUNNING:
        return submission.status
    own = submission.runs.filter(role=EvaluationRun.Role.SUBMISSION).order_by("-created_at").first()
    if own is None or own.status in UNFINISHED_RUN or _waiting_for_base(submission, own):
        return "waiting"
    if submission.runs.filter(status__in=UNFINISHED_RUN).exists():
        return "waiting"
    if own.status == RunStatus.FAILED:
        return _publish_failure(submission, own)
    if submission.attempts and not submission_is_silent(submission):
        return "busy"  # another worker's conclusion is alive (its heartbeat is fresh)
    attempt = claim_submission_step(submission, Status.RUNNING, "the conclusion")
    if attempt is None:
        return ModelSubmission.objects.get(id=submission_id).status
    return _conclude(submission, own, attempt)


def _conclude(submission: ModelSubmission, own: EvaluationRun, attempt: int) -> str:
    try:
        with SoftLimitWatch() as limit, submission_heartbeat(submission.id):
            report = pipeline.conclude(_conclusion(submission, own), cache=model_cache(), token=settings.HF_TOKEN)
            limit.check()  # a check caught the time limit: its section would be an error, not a finding
    except DatabaseError:
        raise
    except Exception as exc:
        what = "soft time limit reached" if caused_by(exc, (SoftTimeLimitExceeded,)) else f"{type(exc).__name__}: {exc}"
        log.error("submission %s: conclusion attempt %s failed: %s", submission.id, attempt, what, exc_info=exc)
        if attempt >= settings.MAX_SUBMISSION_ATTEMPTS:
            fail_submission(submission.id, f"the conclusion failed after {attempt} attempts: {what}")
            return Status.FAILED
        raise  # re-sent by the sweep once this attempt's heartbeat is silent
    return _publish(submission.id, own, report)


def _waiting_for_base(submission: ModelSubmission, own: EvaluationRun) -> bool:
    base_sha = (submission.intake or {}).get("base_sha")
    return bool(
        submission.claimed_base
        and base_sha
        and storage.in_flight_base_run(submission.claimed_base, base_sha, storage.run_plan(own), own.limit)
    )


def _conclusion(submission: ModelSubmission, own: EvaluationRun) -> pipeline.Conclusion:
    plan = storage.run_plan(own)
    base_intake, base = _base_measurements(submission, plan, own.limit)
    return pipeline.Conclusion(
        model=_intake_of(own),
        base=base_intake,
        claims=storage.claims_doc(submission),
        plan=plan,
        measurements=storage.measurements_of(own, plan),
        base_measurements=base,
        backend=own.backend,
        limit=own.limit,
        datasets_dir=settings.DATASETS_DIR,
        claimed_base=submission.claimed_base or None,
        candidates=[
            pipeline.CandidateSource(k.repo_id, k.revision or None, k.shape_signature, registered=True)
            for k in KnownBase.objects.order_by("repo_id")
        ],
        endpoint_url=submission.endpoint_url or None,
        endpoint_model=submission.endpoint_model or None,
        run_info=_run_info(submission, own),
        check_options={
            "endpoint_allow_loopback": settings.ENDPOINT_ALLOW_LOOPBACK,
            "endpoint_blocked_hostports": sorted(blocked_hostports_from_urls(
                [settings.DATABASE_URL, settings.REDIS_URL, settings.CELERY_BROKER_URL, settings.CACHE_URL]
            )),
            "endpoint_api_key": submission.endpoint_api_key or None,
            "endpoint_private_dir": str(settings.PRIVATE_BENCHMARKS_DIR or "") or None,
        },
        enabled_checks=settings.CHECKS,
    )


def _base_measurements(
    submission: ModelSubmission, plan: list[pipeline.PlannedBenchmark], limit: int | None
) -> tuple[IntakeResult | None, dict[str, Any] | None]:
    """The claimed base's intake record and its measurements of the plan (from whichever run
    measured them: this submission's base run or an earlier one shared across submissions)."""
    base_sha = (submission.intake or {}).get("base_sha")
    if not (submission.claimed_base and base_sha):
        return None, None
    measurements, intake = {}, None
    for p in plan:
        row = storage.cached_result(submission.claimed_base, base_sha, p, limit)
        if row is not None:
            measurements[p.slug] = storage.measurement_from_row(row)
            intake = intake or storage.run_intake(row.run)
    if intake is None:
        intake = _inspect_base(submission.claimed_base, base_sha)
    return intake, measurements


def _inspect_base(repo: str, sha: str) -> IntakeResult | None:
    try:
        return intake_mod.inspect_source(repo, sha, settings.MAX_MODEL_BYTES, token=settings.HF_TOKEN)
    except intake_mod.IntakeRefused as refused:
        log.warning("base %s unavailable for checks: %s", repo, refused.reason)
        return None


def _run_info(submission: ModelSubmission, own: EvaluationRun) -> dict[str, Any]:
    info = {
        "run_id": own.id,
        "code_version": own.code_version,
        "backend": own.backend,
        "backend_info": own.backend_versions,
        "sampling_params": own.sampling_params,
        "dataset_hashes": own.dataset_hashes,
        "timings_s": own.timings,
        "limit": own.limit,
        **({"not_run": own.not_run} if own.not_run else {}),
        "plan": own.benchmarks,
        "base_runs": [
            {"run_id": r.id, "status": r.status, "error": r.error}
            for r in submission.runs.filter(role=EvaluationRun.Role.BASE)
        ],
    }
    base_error = (submission.intake or {}).get("base_error")
    return {**info, **({"base_error": base_error} if base_error else {})}


def _publish(submission_id: int, run: EvaluationRun, report: dict[str, Any]) -> str:
    with transaction.atomic():
        submission = ModelSubmission.objects.select_for_update().get(id=submission_id)
        if submission.status != Status.RUNNING:
            return submission.status  # another finalize won the race
        for slug, entry in report["benchmarks"].items():
            run.results.filter(benchmark=slug, benchmark_version=entry["version"]).update(
                claimed=entry["claimed"], z=entry["z"], verdict=entry["verdict"]
            )
        for flag in report["flags"]:
            do_raise_flag(submission, run, flag)
        submission.report = report
        submission.status = status_for(report)
        submission.finished_at = timezone.now()
        submission.attempts = 0  # nothing in progress; a maintainer's re-run starts a fresh count
        submission.save(update_fields=["report", "status", "finished_at", "attempts", "updated_at"])
        transaction.on_commit(lambda: _refresh_entry(submission_id))
        announce_finish(submission_id)  # the author's and watchers' e-mail, once committed
    return submission.status


def _publish_failure(submission: ModelSubmission, run: EvaluationRun) -> str:
    fail_submission(submission.id, f"measurement failed: {run.error}")
    return ModelSubmission.objects.get(id=submission.id).status


def _refresh_entry(submission_id: int) -> None:
    submission = ModelSubmission.objects.filter(id=submission_id).first()
    if submission is not None:
        do_refresh_leaderboard_entry(submission)


# --- periodic -------------------------------------------------------------------------------------


def recheck_weights() -> list[int]:
    """Re-resolve each verified repo's default branch; flag weights_changed when it moved away
    from the sha that was measured. Returns the ids of the submissions flagged now."""
    flagged: list[int] = []
    published = (Status.VERIFIED, Status.FLAGGED, Status.INCOMPLETE)
    for submission in ModelSubmission.objects.filter(status__in=published).exclude(pinned_sha=""):
        try:
            current, reason = intake_mod.resolve_revision(submission.repo_id, None, token=settings.HF_TOKEN), None
        except intake_mod.IntakeRefused as refused:
            current, reason = None, refused.reason
        except intake_mod.TransientHubError as exc:
            log.warning("weights re-check of %s skipped: %s", submission.repo_id, exc)
            continue
        except Exception as exc:  # one repo's surprise must not stop the re-check of the others
            if caused_by(exc, (SoftTimeLimitExceeded, DatabaseError)):
                raise
            log.exception("weights re-check of %s failed", submission.repo_id)
            continue
        if current == submission.pinned_sha:
            continue
        flag = _weights_changed_flag(submission, current, reason)
        if duplicate_of(submission, flag) is not None:  # this move was reported already
            continue
        with transaction.atomic():
            do_raise_flag(submission, None, flag)
            ModelSubmission.objects.filter(id=submission.id).update(status=Status.FLAGGED)
            transaction.on_commit(lambda sid=submission.id: _refresh_entry(sid))
        flagged.append(submission.id)
    return flagged


def _weights_changed_flag(submission: ModelSubmission, current: str | None, reason: str | None) -> dict[str, Any]:
    summary = (
        f"default branch of {submission.repo_id} now points at {current[:12]}, "
        f"not the verified {submission.pinned_sha[:12]}: the published weights are no longer the ones measured"
        if current
        else f"{submission.repo_id} can no longer be resolved ({reason}); the measured weights are gone"
    )
    evidence = {"verified_sha": submission.pinned_sha, "current_sha": current, "checked_at": timezone.now().isoformat()}
    return make_flag("weights_changed", "warning", summary, evidence)
