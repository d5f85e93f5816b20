"""A real Celery worker process consumes a task from the real Redis (no eager mode)."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures_services import wait_for
from workers.celery_app import app
from workers.tasks import ping

pytestmark = pytest.mark.slow


def test_not_eager():
    assert not app.conf.task_always_eager
    assert app.conf.broker_url.startswith("redis://")


def test_worker_process_runs_a_task_through_redis(start_worker):
    worker = start_worker("default")
    token = uuid.uuid4().hex
    result = ping.apply_async(args=[token])
    try:
        assert result.get(timeout=90) ["pong"] == token
    except Exception:
        print(worker.log_text())
        raise
    assert worker.proc.poll() is None
    # The worker started here, not another one on this Redis, ran it (its log names the task id).
    wait_for(lambda: result.id in worker.log_text(), timeout=20, message="the task id in this worker's log")


def test_queues_and_reliability_settings():
    conf = app.conf
    assert {q.name for q in conf.task_queues} == {"default", "gpu"}
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit and conf.task_soft_time_limit < conf.task_time_limit
