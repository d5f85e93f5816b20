"""The Celery application: Redis as broker and result backend, two queues.

`default` takes light work (intake, comparisons, periodic re-resolution); `gpu` takes model
measurement, one task at a time per worker process (prefetch 1) because a task holds the GPU.
Tasks are acknowledged late and re-queued if the worker dies, so a killed worker never loses a
run; tasks themselves resume from their last checkpoint (see workers.tasks).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

app = Celery("verity")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=(Queue("default"), Queue("gpu")),
    task_default_queue="default",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=24 * 3600,
    # Sane defaults; long measurement tasks set their own limits.
    task_soft_time_limit=15 * 60,
    task_time_limit=20 * 60,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 6 * 3600},
    result_backend_transport_options={"visibility_timeout": 6 * 3600},
    worker_hijack_root_logger=False,
)


def _interval(name: str, default: float) -> float:
    """Beat intervals in seconds from the environment (tests run the sweep every few seconds)."""
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


# Periodic work: re-queue runs that lost their worker or broker message; re-resolve verified
# repos to catch weights replaced after verification.
app.conf.beat_schedule = {
    "verity-sweep": {"task": "verity.sweep", "schedule": _interval("VERITY_SWEEP_INTERVAL_S", 60.0)},
    "verity-recheck-weights": {
        "task": "verity.recheck_weights",
        "schedule": _interval("VERITY_RECHECK_INTERVAL_S", 6 * 3600.0),
    },
}
app.autodiscover_tasks(["workers"], related_name="tasks")
