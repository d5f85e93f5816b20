"""Faults injected into a REAL Celery worker process, for the fault tests.

The worker imports this module with `--include tests.workers.fault_hooks`; nothing in the
production code knows about it. It wraps engine functions (pure Python, no Django) so a test can
stop a worker at a chosen pipeline step or slow its backend down:

  VERITY_FAULT_DIR/hang-<step>   while this file exists, the step (prepare, measure, conclude)
                                 writes VERITY_FAULT_DIR/reached-<step> and then hangs: the main
                                 thread blocks, as in a deadlocked engine, until the test kills
                                 the worker (kill -9) or the task's time limit fires.
  VERITY_FAULT_BACKEND_DELAY_S   each backend call sleeps this long first (inside the runner's
                                 broad `except`, as a slow GPU batch would), so a small soft time
                                 limit lands mid-call.

The transformers backend is imported here, in the worker's parent process, so the pool's
children start measuring in about a second: the tests' progress windows and time limits are a
few seconds, and a cold import of torch on a busy machine would take longer than that.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import verification.backends.hf_backend  # noqa: F401  (warm import, see above)
from verification import pipeline, runner

FAULT_DIR = Path(os.environ.get("VERITY_FAULT_DIR", "/nonexistent"))
BACKEND_DELAY_S = float(os.environ.get("VERITY_FAULT_BACKEND_DELAY_S", "0") or 0)


def _hang_if_asked(step: str) -> None:
    if not (FAULT_DIR / f"hang-{step}").exists():
        return
    (FAULT_DIR / f"reached-{step}").write_text(str(os.getpid()))
    while True:  # a hang: no progress, no return
        time.sleep(3600)


def _with_fault(step: str, original):
    @functools.wraps(original)
    def faulty(*args, **kwargs):
        _hang_if_asked(step)
        return original(*args, **kwargs)

    return faulty


pipeline.prepare = _with_fault("prepare", pipeline.prepare)
pipeline.measure_model = _with_fault("measure", pipeline.measure_model)
pipeline.conclude = _with_fault("conclude", pipeline.conclude)

if BACKEND_DELAY_S:
    _dispatch = runner._dispatch

    def _slow_dispatch(*args, **kwargs):
        time.sleep(BACKEND_DELAY_S)
        return _dispatch(*args, **kwargs)

    runner._dispatch = _slow_dispatch
