"""The Celery tasks: ids in, one pipeline step each (workers/steps.py holds the steps).

Every task is declared by `pipeline_task`: its name, queue, time limits and retry policy in one
place. A transient failure (`steps.Retryable`: the Hub timed out, an intake attempt failed) is
retried with backoff; anything else is recorded on its row by the step itself. Retries are bounded
twice: here (MAX_RETRIES) and by the attempts counted on the rows (workers/liveness.py).

A measurement that reaches its soft time limit (VERITY_MEASURE_SOFT_LIMIT_S) keeps its stored
items and is re-queued to resume; the hard limit follows after a grace period for that hand-over.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings

from leaderboard.services.flags import notify_flag_raised
from leaderboard.services.notifications import notify_submission_finished
from workers import liveness, steps
from workers.celery_app import TASK_QUEUES

log = logging.getLogger(__name__)
MAX_RETRIES = 5
# Between a task's soft and hard time limits: time to store the checkpoint and re-queue.
HARD_LIMIT_GRACE_S = 600


def pipeline_task(name: str, *, soft_time_limit: float, time_limit: float) -> Callable[[Callable[..., Any]], Any]:
    """A task named `name` on its queue, with its limits; Retryable errors back off and retry."""

    def decorate(step: Callable[..., Any]) -> Any:
        def run(self: Any, *args: Any) -> Any:
            try:
                return step(*args)
            except steps.Retryable as exc:
                raise self.retry(exc=exc, countdown=min(600, 30 * 2**self.request.retries)) from exc

        run.__name__ = step.__name__
        run.__doc__ = step.__doc__
        return shared_task(
            bind=True, name=name, queue=TASK_QUEUES[name], soft_time_limit=soft_time_limit,
            time_limit=time_limit, max_retries=MAX_RETRIES,
        )(run)

    return decorate


@pipeline_task("verity.ping", soft_time_limit=10, time_limit=20)
def ping(token: str) -> dict:
    """Health probe: proves a worker consumes from the broker and reports back."""
    return {"pong": token, "host": socket.gethostname()}


@pipeline_task("verity.verify_submission", soft_time_limit=600, time_limit=660)
def verify_submission(submission_id: int) -> dict:
    """Prepare one submission (pin, guards, plan) and queue its measurement runs."""
    return {"submission": submission_id, "runs": steps.start_verification(submission_id)}


@pipeline_task(
    "verity.measure_run",
    soft_time_limit=settings.MEASURE_SOFT_LIMIT_S,
    time_limit=settings.MEASURE_SOFT_LIMIT_S + HARD_LIMIT_GRACE_S,
)
def measure_run(run_id: int) -> dict:
    """Measure one run (claimed idempotently, attempts counted; resumes from stored items)."""
    return {"run": run_id, "status": str(steps.execute_run(run_id))}


@pipeline_task("verity.finalize_submission", soft_time_limit=3600, time_limit=3900)
def finalize_submission(submission_id: int) -> dict:
    """Conclude a submission: compare, run the checks, publish (no-op until its runs finished)."""
    return {"submission": submission_id, "status": str(steps.finalize(submission_id))}


@pipeline_task("verity.notify_flag", soft_time_limit=60, time_limit=90)
def notify_flag(flag_id: int) -> dict:
    """E-mail the author of a newly raised flag, from the default queue: the GPU workers that
    raise most flags hold no mail credentials."""
    return {"flag": flag_id, "sent": notify_flag_raised(flag_id)}


@pipeline_task("verity.notify_finished", soft_time_limit=60, time_limit=90)
def notify_finished(submission_id: int) -> dict:
    """E-mail the author and the model's watchers that a submission finished (verified, flagged,
    incomplete or failed), from the default queue like notify_flag."""
    return {"submission": submission_id, "sent": notify_submission_finished(submission_id)}


@pipeline_task("verity.sweep", soft_time_limit=120, time_limit=180)
def sweep() -> dict:
    """Periodic: re-send work whose worker died or whose message was lost; end what is out of
    attempts."""
    return liveness.sweep()


@pipeline_task("verity.recheck_weights", soft_time_limit=1800, time_limit=1900)
def recheck_weights() -> dict:
    """Periodic: flag verified repos whose default branch moved away from the verified sha."""
    return {"flagged": steps.recheck_weights()}
