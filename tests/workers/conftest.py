"""Fixtures of the worker tests: a private redis-server per test, so killing workers and
restarting the broker never touches another test's (or another developer's) queues."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.workers.pipeline_helpers import PrivateRedis


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        yield redis
    finally:
        redis.stop()
