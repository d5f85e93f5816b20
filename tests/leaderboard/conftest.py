"""Shared by the site's tests: rate-limit counters start empty in every test (django-ratelimit
counts in the default cache, which outlives a test in this process)."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
