"""Thin Celery tasks: load rows by id, call verification/, store results. Business logic lives in
leaderboard.services and verification/."""

from __future__ import annotations

import logging
import socket

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(name="verity.ping", queue="default", soft_time_limit=10, time_limit=20)
def ping(token: str) -> dict:
    """Health probe: proves a worker consumes from the broker and reports back."""
    return {"pong": token, "host": socket.gethostname()}


# --- the verification pipeline (leaderboard.services.pipeline holds the logic) ------------------

# Hub timeouts and other transient failures (Retryable) are retried with backoff; everything else
# is final: a refused or failed model is recorded on its row, never retried forever.
def _retryable():
    from leaderboard.services.pipeline import Retryable

    return Retryable


@shared_task(bind=True, name="verity.verify_submission", queue="default", soft_time_limit=600, time_limit=660,
             max_retries=5)
def verify_submission(self, submission_id: int) -> dict:
    """Intake (pin + guards) and planning for one submission; queues its measurement runs."""
    from leaderboard.services import pipeline

    try:
        run_ids = pipeline.start_verification(submission_id)
    except _retryable() as exc:
        raise self.retry(exc=exc, countdown=min(600, 30 * 2**self.request.retries)) from exc
    return {"submission": submission_id, "runs": run_ids}


@shared_task(bind=True, name="verity.measure_run", queue="gpu", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 600,
             max_retries=5)
def measure_run(self, run_id: int) -> dict:
    """Measure one EvaluationRun (claimed idempotently; resumes from stored items)."""
    from leaderboard.services import pipeline

    try:
        status = pipeline.execute_run(run_id)
    except _retryable() as exc:
        raise self.retry(exc=exc, countdown=min(600, 30 * 2**self.request.retries)) from exc
    return {"run": run_id, "status": str(status)}


@shared_task(bind=True, name="verity.finalize_submission", queue="gpu", soft_time_limit=3600, time_limit=3900,
             max_retries=5)
def finalize_submission(self, submission_id: int) -> dict:
    """Compare, run the later checks, publish (no-op until every needed run finished)."""
    from leaderboard.services import pipeline

    try:
        status = pipeline.finalize(submission_id)
    except _retryable() as exc:
        raise self.retry(exc=exc, countdown=min(600, 30 * 2**self.request.retries)) from exc
    return {"submission": submission_id, "status": str(status)}


@shared_task(name="verity.sweep", queue="default", soft_time_limit=120, time_limit=180)
def sweep() -> dict:
    """Periodic: re-queue runs whose worker died or whose broker message was lost."""
    from leaderboard.services import pipeline

    return pipeline.sweep()


@shared_task(name="verity.recheck_weights", queue="default", soft_time_limit=1800, time_limit=1900)
def recheck_weights() -> dict:
    """Periodic: flag verified repos whose default branch moved away from the verified sha."""
    from leaderboard.services import pipeline

    return {"flagged": pipeline.recheck_weights()}
