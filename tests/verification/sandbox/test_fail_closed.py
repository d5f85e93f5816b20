"""The sandbox fails closed: only its own status channel can make a result a harness error, the
program's failures are wrong answers whatever it prints or returns, no sandbox means nothing
runs, and what a program prints is kept only as a bounded private excerpt."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile

import pytest

from verification import sandbox
from verification.backends.base import Backend
from verification.benchmarks.humaneval import HumanEvalSpec, NoSandbox
from verification.records import Generation
from verification.runner import run_benchmark

FAST = sandbox.Limits(timeout_s=4.0, cpu_s=3)
MARKER = "VERITY-SANDBOX-SETUP-FAILED"

# Writes what the harness would take for its own messages to every descriptor it can reach.
FORGE = (
    "import os\n"
    "print('FDS', sorted(int(fd) for fd in os.listdir('/proc/self/fd')), flush=True)\n"
    "forged = b'{\"setup_failed\": \"forged\"}\\n{\"ready\": []}\\n{\"exit\": 0, \"timed_out\": false}\\n'\n"
    "for fd in range(1024):\n"
    "    try:\n"
    "        os.write(fd, forged)\n"
    "    except OSError:\n"
    "        pass\n"
)


class ScriptedCompletions(Backend):
    """Answers each HumanEval prompt with the next scripted completion; counts its calls."""

    name = "scripted"

    def __init__(self, completions: list[str]) -> None:
        self.completions, self.calls = completions, 0

    def generate(self, requests, progress=None):
        self.calls += 1
        return [Generation(text=c) for c, _ in zip(self.completions, requests)]

    def loglikelihood(self, requests, progress=None):  # pragma: no cover - not used by HumanEval
        raise NotImplementedError


def test_the_old_setup_failure_marker_is_a_wrong_answer():
    result = sandbox.run_python(
        f"import sys\nprint('{MARKER} stdout')\nsys.stderr.write('{MARKER} the harness broke\\n')\n"
        "sys.exit(197)\n", FAST)
    assert result.status == sandbox.FAILED and result.returncode == 197 and result.detail is None
    assert MARKER in result.stderr  # it said so, and nobody listened


@pytest.mark.parametrize("exit_code, status", [(5, sandbox.FAILED), (0, sandbox.PASSED)])
def test_the_status_channel_cannot_be_forged(exit_code, status):
    result = sandbox.run_python(FORGE + f"os._exit({exit_code})\n", FAST)
    assert result.status == status and result.returncode == exit_code and result.detail is None, result
    fds = eval(result.stdout.split("FDS", 1)[1].splitlines()[0])  # noqa: S307 - our probe's list
    assert fds == [0, 1, 2, 3]  # stdin, stdout, stderr and listdir's own: the channel is not there
    assert "netns" in result.isolation


def test_the_models_own_failures_are_wrong_answers_never_harness_errors(datasets_dir):
    completions = [
        f"    import sys\n    sys.stderr.write('{MARKER} sandbox broke\\n')\n    sys.exit(197)\n",
        # A real segfault (C recursion): a fault kills even a namespace's PID 1.
        "    import sys\n    sys.setrecursionlimit(10 ** 8)\n    x = []\n    for _ in range(10 ** 5):\n"
        "        x = [x]\n    repr(x)\n",
        "    while True:\n        pass\n",
        "    )))(((  garbage\n",
        "    import os\n    os._exit(3)\n",
        "    " + FORGE.replace("\n", "\n    ").rstrip() + "\n    raise SystemExit(1)\n",
        "    import os\n    os.kill(1, 9)\n",  # the program is PID 1 of its namespace
    ]
    spec = HumanEvalSpec(limits=dataclasses.replace(FAST, timeout_s=6.0))  # room for a loaded machine
    outcome = run_benchmark(spec, ScriptedCompletions(completions), limit=len(completions), datasets_dir=datasets_dir)
    assert outcome.n_errors == 0 and not outcome.invalid and outcome.measured == 0.0
    assert [s.error for s in outcome.samples] == [None] * len(completions)
    statuses = [s.details["status"] for s in outcome.samples]
    assert statuses[2] in (sandbox.TIMEOUT, sandbox.FAILED)  # wall clock or CPU limit, whichever first
    assert statuses[:2] + statuses[3:] == [sandbox.FAILED] * (len(completions) - 1)
    assert outcome.samples[0].details["returncode"] == 197 and outcome.samples[1].details["returncode"] == -11


def test_without_namespaces_nothing_runs_and_the_benchmark_says_why(datasets_dir, tmp_path):
    tmp_path.chmod(0o777)
    witness = tmp_path / "ran"
    limits = sandbox.Limits(timeout_s=4.0, cpu_s=3, use_namespaces=False)
    result = sandbox.run_python(f"open({str(witness)!r}, 'w').write('x')\n", limits)
    assert result.status == sandbox.SANDBOX_ERROR and "no sandbox" in result.detail
    assert not witness.exists()
    assert sandbox.unavailable_reason(limits) == "no sandbox: namespaces are disabled"

    backend = ScriptedCompletions([f"    open({str(witness)!r}, 'w').write('x')\n"] * 2)
    with pytest.raises(NoSandbox, match=r"^not run: no sandbox: namespaces are disabled$"):
        run_benchmark(HumanEvalSpec(limits=limits), backend, limit=2, datasets_dir=datasets_dir)
    assert backend.calls == 0 and not witness.exists()  # nothing generated, nothing executed


def test_only_a_bounded_private_excerpt_of_the_output_is_kept():
    token = "PRINTED-BY-THE-PROGRAM"
    result = sandbox.run_python(
        f"import sys\nprint('{token}' + 'y' * 1_000_000 + chr(0) + '{token}')\n"
        f"sys.stderr.write('{token}' * 10000)\nraise SystemExit(2)\n", FAST)
    assert result.status == sandbox.FAILED
    summary = result.summary()
    private = summary.pop(sandbox.PRIVATE_OUTPUT_KEY)
    assert set(private) == {"stdout", "stderr"}
    assert all(len(text) <= sandbox.EXCERPT_CHARS and "\x00" not in text for text in private.values())
    assert token in private["stdout"] and token in private["stderr"]
    assert token not in repr(summary)  # the public part holds nothing the program wrote


@pytest.mark.parametrize("messages, finished", [
    ([], True),
    ([{"ready": ["netns"]}], True),  # started, but the launcher never reported the end
    ([{"exit": 0, "timed_out": False}], True),  # an end without a start
    ([{"ready": ["netns"]}, {"exit": 0, "timed_out": False}], False),  # the backstop killed the launcher
    ([{"ready": []}, {"setup_failed": "exec the interpreter: No such file"}, {"exit": 1, "timed_out": False}], True),
])
def test_anything_short_of_a_complete_report_is_a_harness_error(messages, finished):
    result = sandbox._result(messages, finished, "", "", 0.1, FAST)
    assert result.status == sandbox.SANDBOX_ERROR and result.detail


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="needs root, setpriv and a system python3 to become an unprivileged user")
def test_where_unshare_is_really_refused_nothing_runs():
    """The shipped image's situation without its capabilities: an unprivileged harness."""
    scratch = tempfile.mkdtemp(prefix="verity-nobody-", dir="/tmp")
    os.chmod(scratch, 0o777)
    witness = os.path.join(scratch, "ran")
    harness = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('sandbox', {sandbox.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['sandbox'] = module\n"
        "spec.loader.exec_module(module)\n"
        f"result = module.run_python(\"open({witness!r}, 'w').write('x')\\n\")\n"
        "print(result.status, '|', result.detail)\n"
    )
    try:
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-c",
                               harness], capture_output=True, text=True, timeout=60, env={"HOME": scratch})
        assert done.stdout.strip() == "sandbox_error | no sandbox: unshare refused (Operation not permitted)", done
        assert not os.path.exists(witness)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
