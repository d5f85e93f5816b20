"""What one client may ask of Verity's GPUs, and how much the queue may hold.

- A submission's cost is estimated in GPU-hours from the bytes of the model (and of its claimed
  base, measured as a second model) and the number of benchmarks planned; the estimates of the
  submissions still in flight may not exceed settings.QUEUE_GPU_HOURS together.
- Submissions are limited per account (SUBMISSIONS_PER_DAY) and per client address
  (SUBMISSIONS_PER_IP_PER_DAY); sign-up and login are throttled per address (django-ratelimit).

The client's address is read here only (`client_ip`), for the submission limits and for
django-ratelimit (settings.RATELIMIT_IP_META_KEY).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit import ALL
from django_ratelimit.core import is_ratelimited

# The estimate: a model is loaded once per run, then every planned item costs time in proportion
# to its weights (one forward pass per generated token reads them all). Calibrated on vLLM with a
# 16 GB (8B bf16) model: about 0.15 s per item of a typical benchmark, ~20 minutes per run.
LOAD_HOURS_PER_RUN = 0.05
ITEM_SECONDS_PER_GB = 0.01
MIN_ITEM_SECONDS = 0.02
ITEMS_PER_BENCHMARK = 2000  # when the whole benchmark is run (no DEFAULT_EVAL_LIMIT)


def _run_hours(n_bytes: int, items: int) -> float:
    seconds_per_item = max(MIN_ITEM_SECONDS, ITEM_SECONDS_PER_GB * n_bytes / 1e9)
    return LOAD_HOURS_PER_RUN + items * seconds_per_item / 3600


def estimate_gpu_hours(model_bytes: int, base_bytes: int, n_benchmarks: int, limit: int | None) -> float:
    """Estimated GPU-hours to measure a model (and its base, when `base_bytes` > 0) on
    `n_benchmarks` benchmarks of `limit` items each (None: whole benchmarks)."""
    items = n_benchmarks * (limit or ITEMS_PER_BENCHMARK)
    hours = _run_hours(model_bytes, items)
    if base_bytes > 0:
        hours += _run_hours(base_bytes, items)
    return round(hours, 4)


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or with settings.TRUSTED_PROXIES proxies in front, the
    address the outermost trusted proxy saw (X-Forwarded-For, counted from the right; addresses a
    client wrote further left are not trusted)."""
    remote = request.META.get("REMOTE_ADDR") or "0.0.0.0"
    hops = settings.TRUSTED_PROXIES
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def throttled(request: HttpRequest, group: str, rate: str, key: str = "ip") -> bool:
    """Count this request against `rate` for `group` and `key` (django-ratelimit's keys: "ip",
    "post:username", …); True when it is over the limit."""
    return is_ratelimited(request, group=group, key=key, rate=rate, method=ALL, increment=True)
