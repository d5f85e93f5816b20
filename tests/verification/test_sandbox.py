"""The HumanEval sandbox contains hostile programs (real processes, real namespaces, real limits)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from verification import sandbox
from verification.benchmarks import registry
from verification.benchmarks.humaneval import HumanEvalSpec, NoSandbox
from verification.backends.base import Backend
from verification.records import Generation
from verification.runner import run_benchmark

FAST = sandbox.Limits(timeout_s=4.0, cpu_s=3)


def _sandbox_processes() -> list[str]:
    lines = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True).stdout.splitlines()
    return [line for line in lines if line.split() and sandbox.is_sandbox_uid(int(line.split()[0]))]


def _no_sandbox_processes_left(timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _sandbox_processes():
            return True
        time.sleep(0.2)
    return False


def test_plain_program_passes_and_failure_fails():
    ok = sandbox.run_python("import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n", FAST)
    uid, gid, groups = ok.stdout.split(" ", 2)
    assert ok.status == sandbox.PASSED and sandbox.is_sandbox_uid(int(uid)) and gid == uid and groups.strip() == "[]"
    assert "netns" in ok.isolation and "private_tmpfs" in ok.isolation
    bad = sandbox.run_python("assert 1 == 2\n", FAST)
    assert bad.status == sandbox.FAILED and "AssertionError" in bad.stderr


def test_socket_cannot_reach_a_real_listener():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        python_socket = sandbox.run_python(
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('CONNECTED')\n", FAST)
        # Bypassing Python's socket module (a shell's /dev/tcp) meets the empty network namespace.
        shell_socket = sandbox.run_python(
            "import subprocess, sys\n"
            f"r = subprocess.run(['bash', '-c', 'echo hi > /dev/tcp/127.0.0.1/{port} && echo CONNECTED'],"
            " capture_output=True, text=True)\n"
            "print(r.stdout, r.stderr)\nsys.exit(0 if 'CONNECTED' not in r.stdout else 3)\n", FAST)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert python_socket.status == sandbox.FAILED and "CONNECTED" not in python_socket.stdout
    assert shell_socket.status == sandbox.PASSED, shell_socket.stdout + shell_socket.stderr
    assert "unreachable" in shell_socket.stdout.lower()


def test_writes_outside_and_inside_do_not_survive():
    marker = f"verity-sbx-{uuid.uuid4().hex}"
    target_root = "/etc"  # root-owned, outside any tmpfs (a checkout may itself live under /tmp)
    result = sandbox.run_python(
        "import os\n"
        f"for d in ('/tmp', '/var/tmp', '/dev/shm'):\n    open(os.path.join(d, '{marker}'), 'w').write('x')\n"
        f"open('{marker}', 'w').write('x')\n"
        "print('WROTE_TMP')\n"
        f"open('{target_root}/{marker}', 'w').write('x')\n", FAST)
    assert "WROTE_TMP" in result.stdout  # world-writable dirs were writable in its private tmpfs ...
    # ... root's were not (the sandbox's root is a read-only tree of its own)
    assert result.status == sandbox.FAILED and "Read-only file system" in result.stderr
    for directory in ("/tmp", "/var/tmp", "/dev/shm", str(target_root)):
        assert not os.path.exists(os.path.join(directory, marker))  # ... and nothing survived
    assert not [p for p in os.listdir("/tmp") if p.startswith("verity-sbx-")]


def test_infinite_loop_and_fork_bomb_are_killed():
    started = time.monotonic()
    loop = sandbox.run_python("while True:\n    pass\n", FAST)
    assert loop.status == sandbox.TIMEOUT
    bomb = sandbox.run_python(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", FAST)
    assert bomb.status in (sandbox.TIMEOUT, sandbox.FAILED)
    assert time.monotonic() - started < 3 * FAST.timeout_s
    assert _no_sandbox_processes_left()


def test_a_fork_bomb_does_not_starve_a_sandbox_beside_it():
    from concurrent.futures import ThreadPoolExecutor

    bomb_code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    with ThreadPoolExecutor(max_workers=2) as pool:
        bomb = pool.submit(sandbox.run_python, bomb_code, FAST)
        time.sleep(1.0)  # let it fill its process limit
        # The neighbour needs a process of its own: with a shared uid the bomb would have taken them all.
        neighbour_code = "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\nprint('alive')\n"
        neighbour = pool.submit(sandbox.run_python, neighbour_code, FAST)
        assert neighbour.result().status == sandbox.PASSED, neighbour.result()
        assert bomb.result().status in (sandbox.TIMEOUT, sandbox.FAILED)
    assert _no_sandbox_processes_left()


def test_memory_hog_is_stopped_by_the_address_space_limit():
    result = sandbox.run_python("x = bytearray(4 * 1024 ** 3)\n", FAST)
    assert result.status == sandbox.FAILED and "MemoryError" in result.stderr


class _HostileCompletions(Backend):
    """Answers HumanEval prompts with hostile completions (one per problem, in order)."""

    name = "hostile"

    def __init__(self, completions: list[str]) -> None:
        self.completions = completions

    def generate(self, requests, progress=None):
        return [Generation(text=c) for c, _ in zip(self.completions, requests)]

    def loglikelihood(self, requests, progress=None):  # pragma: no cover - not used by HumanEval
        raise NotImplementedError


def test_hostile_humaneval_completions_score_zero_and_the_run_continues(datasets_dir):
    spec = HumanEvalSpec(limits=FAST)
    items = spec.load(datasets_dir, limit=5).items
    # A backend that ignores stop sequences: the text after the body is cut off (Codex convention).
    canonical = items[4].data["canonical_solution"] + "\n\ndef helper():\n    raise SystemExit(1)\nhelper()\n"
    pwned = Path(__file__).resolve().parents[2] / "PWNED"  # the checkout, wherever it lives
    hostile = [
        # Loopback only: nothing a test runs may address another host, even a blocked attempt.
        "    import socket\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n",
        f"    open({str(pwned)!r}, 'w').write('x')\n",
        "    import os\n    while True:\n        os.fork()\n",
        "    while True:\n        pass\n",
        canonical,
    ]
    outcome = run_benchmark(spec, _HostileCompletions(hostile), limit=5, datasets_dir=datasets_dir)
    assert [s.correct for s in outcome.samples] == [False, False, False, False, True]
    assert outcome.n_errors == 0 and not outcome.invalid
    assert outcome.samples[3].details["status"] == sandbox.TIMEOUT
    assert outcome.samples[4].details["truncated_at_stop"]
    assert not pwned.exists()
    assert _no_sandbox_processes_left()
    assert registry.get("humaneval").primary_metric == "pass@1"


def test_without_namespaces_nothing_runs(datasets_dir):
    """Where unshare is refused there is no sandbox, and generated code never runs unsandboxed:
    the program is not started and HumanEval is not run at all (it says why), rather than scored
    or counted as harness errors."""
    limits = sandbox.Limits(timeout_s=4.0, cpu_s=3, use_namespaces=False)
    result = sandbox.run_python("import os\nprint(os.getuid())\n", limits)
    assert result.status == sandbox.SANDBOX_ERROR and result.stdout == "" and "no sandbox" in result.detail
    with pytest.raises(NoSandbox, match="not run: no sandbox"):
        run_benchmark(HumanEvalSpec(limits=limits), _HostileCompletions(["    return 0\n"] * 2), limit=2,
                      datasets_dir=datasets_dir)
