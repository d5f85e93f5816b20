"""The Celery application: Redis as broker and result backend, two queues, and `send`, the one way
anything enqueues a pipeline task.

`default` takes light work (intake and planning, the sweep, weight re-checks); `gpu` takes what
runs a model: measuring a run and concluding a submission (its checks load the weights), one task
at a time per worker process (prefetch 1). Tasks are acknowledged late and re-queued if the worker
dies; they resume from their last checkpoint (workers/steps.py).

With worker pools (VERITY_POOLS), a run's measurement and its submission's conclusion go to the
queue named after the pool placement chose for the model instead of `gpu` (each pool's workers
consume only their own queue).

`send` routes by task name through TASK_QUEUES, so the web process enqueues work without
importing the tasks (no import cycle between the site and the workers).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

# The queue of every task, by name: used by the task decorator and by `send`.
TASK_QUEUES: dict[str, str] = {
    "verity.ping": "default",
    "verity.verify_submission": "default",
    "verity.measure_run": "gpu",
    "verity.finalize_submission": "gpu",
    "verity.notify_flag": "default",
    "verity.notify_finished": "default",
    "verity.sweep": "default",
    "verity.recheck_weights": "default",
}

app = Celery("verity")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=(Queue("default"), Queue("gpu")),
    task_default_queue="default",
    task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
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
app.autodiscover_tasks(["workers"], related_name="tasks")


@app.on_after_configure.connect
def _schedule_periodic_work(sender: Celery, **_: object) -> None:
    """Periodic work: re-queue runs that lost their worker or broker message; re-resolve verified
    repos to catch weights replaced after verification. Intervals come from the settings."""
    from django.conf import settings

    sender.add_periodic_task(settings.SWEEP_INTERVAL_S, sender.signature("verity.sweep"), name="verity-sweep")
    sender.add_periodic_task(
        settings.RECHECK_INTERVAL_S, sender.signature("verity.recheck_weights"), name="verity-recheck-weights"
    )


def send(task_name: str, *args: object, queue: str | None = None) -> None:
    """Enqueue a pipeline task by name on its queue (ids only as arguments); `queue` overrides it
    (a worker pool's queue, chosen by placement: workers/liveness.py `pool_queue`). In eager mode
    (the demo seeder, which imports workers.tasks) the task runs here, as `delay` would."""
    if app.conf.task_always_eager:
        app.tasks[task_name].apply(args=list(args), throw=app.conf.task_eager_propagates)
        return
    app.send_task(task_name, args=list(args), queue=queue or TASK_QUEUES[task_name])
