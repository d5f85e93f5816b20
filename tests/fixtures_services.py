"""Fixtures for real services: the test database's URL for child processes, a real Celery
worker process on the real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """DATABASE_URL of the database pytest-django created for this session, for child
    processes (a Celery worker) that must see the rows the test commits."""
    from django.db import connection

    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or "5432"
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


class WorkerProcess:
    """A real `celery worker` subprocess consuming the given queues."""

    def __init__(self, queues: str, env: dict[str, str], log_path: Path, concurrency: int = 1,
                 extra_args: tuple[str, ...] = ()):
        self.extra_args = tuple(extra_args)  # e.g. ("-B", "-s", path): embedded beat
        self.queues = queues
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                "-Q", self.queues, "-c", str(self.concurrency), "--pool", "prefork",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-n", f"test-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "INFO", *self.extra_args,
            ],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill9(self) -> None:
        """Hard kill of the worker and its pool children (what a crashed machine looks like)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def worker_env(transactional_db) -> dict[str, str]:
    """Environment for child processes: same settings, pointed at this session's test DB."""
    env = dict(os.environ)
    env["DATABASE_URL"] = test_database_url()
    env.pop("VERITY_TEST_DB_NAME", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def start_worker(worker_env, tmp_path) -> Iterator:
    """Factory: start_worker("default,gpu") -> a running WorkerProcess, stopped at teardown."""
    started: list[WorkerProcess] = []

    def _start(queues: str = "default,gpu", concurrency: int = 1, extra_env: dict | None = None,
               extra_args: tuple[str, ...] = ()) -> WorkerProcess:
        env = {**worker_env, **(extra_env or {})}
        worker = WorkerProcess(queues, env, tmp_path / f"worker-{len(started)}.log", concurrency, extra_args).start()
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.stop()


def wait_for(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def eager_celery():
    """Tasks sent during the test run here, in order, as the workers would run them (the
    notify_flag e-mail, the steps of a submission)."""
    import workers.tasks  # noqa: F401 - registers the tasks, as a worker's start does
    from workers.celery_app import app

    saved = {key: app.conf.get(key) for key in ("task_always_eager", "task_eager_propagates")}
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    yield app
    app.conf.update(saved)
