"""Interrupts that no broad `except` in the engine may swallow.

A worker's time limit (Celery raises SoftTimeLimitExceeded inside whatever code is running) is
neither a harness error nor the model's failure: it must reach the worker, which keeps the run's
checkpoint and re-queues it. Matched by name so the engine needs no Celery import.
"""

from __future__ import annotations

TIME_LIMITS = frozenset({"SoftTimeLimitExceeded", "TimeLimitExceeded"})


def reraise_interrupt(exc: BaseException) -> None:
    """Raise `exc` again when it is a time limit; return otherwise (the caller handles it)."""
    if type(exc).__name__ in TIME_LIMITS:
        raise exc
