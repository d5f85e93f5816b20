"""Escape probes: each is a real hostile program run in the real sandbox, and each is contained.

The host side watches the run's own uid in the host's /proc while the program runs, so limits
on the whole process tree are measured, not assumed.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.verification.sandbox.hostile_model import canary_environ, find_canaries
from verification import sandbox

FAST = sandbox.Limits(timeout_s=4.0, cpu_s=3)
REPO_ROOT = Path(__file__).resolve().parents[3]


def _uid_processes(uid: int) -> list[tuple[int, int]]:
    """(pid, RSS in KiB) of every host process whose real uid is `uid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{entry}/status").read_text().splitlines()
                          if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            found.append((int(entry), int(fields.get("VmRSS", "0 kB").split()[0])))
    return found


class TreeWatcher:
    """Samples, from the host, how many processes and how much memory a run's uid holds."""

    def __init__(self, uid: int) -> None:
        self.uid, self.max_processes, self.max_rss_mb = uid, 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            processes = _uid_processes(self.uid)
            self.max_processes = max(self.max_processes, len(processes))
            self.max_rss_mb = max(self.max_rss_mb, sum(rss for _, rss in processes) / 1024)
            time.sleep(0.05)

    def __enter__(self) -> TreeWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _gone(uid: int, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _uid_processes(uid):
            return True
        time.sleep(0.1)
    return False


def _limits(**changes) -> sandbox.Limits:
    """FAST with a uid known in advance, so the host can watch that uid."""
    return dataclasses.replace(FAST, uid=sandbox.allocate_uid(), **changes)


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.5)
    yield server
    server.close()


def _nobody_connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except socket.timeout:
        return True
    return False


def test_a_subprocess_socket_reaches_nothing(listener):
    port = listener.getsockname()[1]
    # A fresh interpreter (no audit hook) opens a plain socket: only the namespace stands in the way.
    result = sandbox.run_python(
        "import subprocess, sys\n"
        "code = 'import socket; socket.create_connection((\"127.0.0.1\", %d), timeout=2); print(\"CONNECTED\")'\n"
        "r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)\n"
        "print(r.stdout, r.stderr)\n"
        "print('NETDEV')\n"
        "print(open('/proc/net/dev').read())\n" % port, FAST)
    assert result.status == sandbox.PASSED, result
    assert "CONNECTED" not in result.stdout and "Network is unreachable" in result.stdout
    netdev = result.stdout.split("NETDEV", 1)[1].splitlines()
    interfaces = [line.split(":")[0].strip() for line in netdev if ":" in line]
    assert interfaces == ["lo"]  # an empty network namespace: a loopback, down
    assert _nobody_connected(listener)


def test_bash_dev_tcp_reaches_nothing(listener):
    port = listener.getsockname()[1]
    result = sandbox.run_python(
        "import subprocess\n"
        f"r = subprocess.run(['bash', '-c', 'echo hi > /dev/tcp/127.0.0.1/{port} && echo CONNECTED'],"
        " capture_output=True, text=True)\n"
        "print(r.returncode, r.stdout, r.stderr)\n", FAST)
    assert result.status == sandbox.PASSED, result
    assert "CONNECTED" not in result.stdout and "unreachable" in result.stdout.lower()
    assert _nobody_connected(listener)


def test_a_unix_socket_of_the_host_is_out_of_sight(tmp_path):
    """Filesystem sockets cross network namespaces (a database's socket would): none is visible."""
    tmp_path.chmod(0o777)
    path = tmp_path / "db.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    path.chmod(0o777)
    server.listen(1)
    server.settimeout(0.5)
    try:
        code = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r}); print('CONNECTED')"
        result = sandbox.run_python(
            "import subprocess, sys\n"
            f"r = subprocess.run([sys.executable, '-c', {code!r}], capture_output=True, text=True)\n"
            "print(r.stdout, r.stderr)\n", FAST)
        assert _nobody_connected(server)
    finally:
        server.close()
    assert "CONNECTED" not in result.stdout and "No such file or directory" in result.stdout


@pytest.mark.parametrize("parent_waits", [True, False], ids=["parent-times-out", "parent-exits"])
def test_a_setsid_grandchild_does_not_outlive_the_run(parent_waits):
    limits = _limits()
    program = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        while True:\n"
        "            time.sleep(0.1)\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"
        "print('DAEMONIZED', flush=True)\n"
        + ("while True:\n    time.sleep(0.1)\n" if parent_waits else "")
    )
    started = time.monotonic()
    result = sandbox.run_python(program, limits)
    elapsed = time.monotonic() - started
    assert "DAEMONIZED" in result.stdout
    if parent_waits:
        assert result.status == sandbox.TIMEOUT and elapsed < limits.timeout_s + 3
    else:
        assert result.status == sandbox.PASSED and elapsed < limits.timeout_s
    assert _gone(limits.uid, within_s=0.5), _uid_processes(limits.uid)


def test_proc_shows_only_the_sandbox_and_no_secret(canary_secrets):
    result = sandbox.run_python(
        "import os\n"
        "print('PIDS', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        "print('ENV1', open('/proc/1/environ').read().replace(chr(0), ' '))\n"
        "print('CMD1', open('/proc/1/cmdline').read().replace(chr(0), ' '))\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    print(open(f'/proc/{pid}/environ').read())\n"
        f"print('HARNESS', os.path.exists('/proc/{os.getpid()}/environ'))\n", FAST)
    assert result.status == sandbox.PASSED, result
    assert not find_canaries(result.stdout + result.stderr)
    pids = eval(result.stdout.split("PIDS", 1)[1].splitlines()[0])  # noqa: S307 - our own probe's list
    assert pids == [1]  # a fresh /proc of its own PID namespace: itself, as PID 1
    assert "PATH=/usr/local/bin:/usr/bin:/bin" in result.stdout and "SECRET_KEY" not in result.stdout
    assert "-I -S -c" in result.stdout.split("CMD1", 1)[1].splitlines()[0]
    assert "HARNESS False" in result.stdout


def test_generated_code_sees_none_of_the_workers_secrets(canary_secrets):
    assert os.environ["SECRET_KEY"] == canary_secrets["SECRET_KEY"]  # the worker has them ...
    program = (
        "import os, subprocess\n"
        "print(dict(os.environ))\n"
        "print(subprocess.run(['bash', '-c', 'env; cat /proc/self/environ'], capture_output=True, text=True).stdout)\n"
        "for name in ('SECRET_KEY', 'HF_TOKEN', 'DATABASE_URL'):\n"
        "    assert name not in os.environ, name\n"
    )
    result = sandbox.run_python(program, FAST)
    assert result.status == sandbox.PASSED, result  # ... generated code does not
    assert set(eval(result.stdout.splitlines()[0])) == set(sandbox.SANDBOX_ENV)  # noqa: S307 - our probe's dict
    assert not find_canaries(result.stdout + result.stderr + repr(result.summary()))
    assert "DATABASE_URL" in canary_environ()


def test_a_64_process_memory_bomb_is_bounded_for_the_whole_tree():
    limits = _limits(memory_mb=128, processes=8, timeout_s=8.0)
    program = (
        "import os, time\n"
        "children = 0\n"
        "for _ in range(64):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            hold = b'x' * (64 * 1024 * 1024)\n"
        "            print('HELD', flush=True)\n"
        "            time.sleep(2)\n"
        "        finally:\n"
        "            os._exit(0)\n"
        "    children += 1\n"
        "print('FORKED', children, flush=True)\n"
        "while True:\n"
        "    try:\n"
        "        os.wait()\n"
        "    except ChildProcessError:\n"
        "        break\n"
    )
    with TreeWatcher(limits.uid) as watcher:
        result = sandbox.run_python(program, limits)
    assert result.status in (sandbox.PASSED, sandbox.FAILED, sandbox.TIMEOUT), result
    tree_bound_mb = limits.memory_mb if "cgroup_v2" in result.isolation else limits.memory_mb * limits.processes
    assert "cgroup_v2" in result.isolation or "rlimit_tree_bound" in result.isolation
    assert watcher.max_processes <= limits.processes
    assert 0 < watcher.max_rss_mb <= tree_bound_mb, (watcher.max_rss_mb, result.isolation)
    assert 1 <= result.stdout.count("HELD") <= limits.processes - 1
    # One process alone cannot go past its own bound either.
    alone = sandbox.run_python("hold = b'x' * (200 * 1024 * 1024)\n", limits)
    assert alone.status == sandbox.FAILED and "MemoryError" in alone.stderr
    assert _gone(limits.uid)


def test_a_fork_bomb_is_capped_and_cleaned_up():
    limits = _limits(processes=16)
    bomb = ("import os, time\n"
            "while True:\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            os.setsid()\n"
            "    except OSError:\n"
            "        time.sleep(0.01)\n")
    with TreeWatcher(limits.uid) as watcher:
        result = sandbox.run_python(bomb, limits)
    assert result.status in (sandbox.TIMEOUT, sandbox.FAILED), result
    assert 1 < watcher.max_processes <= limits.processes
    assert _gone(limits.uid)


def test_writes_outside_the_work_dir_fail_and_nothing_survives(tmp_path):
    open_dir = tmp_path / "world-writable"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    marker = f"verity-sbx-{uuid.uuid4().hex}"
    outside = ["/", "/etc", "/usr", "/root", "/proc/sys/kernel", "/dev", str(open_dir), str(REPO_ROOT)]
    program = (
        "import os\n"
        f"for d in {outside!r}:\n"
        "    try:\n"
        f"        open(os.path.join(d, {marker!r}), 'w').write('x')\n"
        "        print('WROTE', d)\n"
        "    except OSError as exc:\n"
        "        print('REFUSED', d, exc.strerror)\n"
        "for d in ('/tmp', '/var/tmp', '/dev/shm', '.'):\n"
        f"    open(os.path.join(d, {marker!r}), 'w').write('x')\n"
        "print('SCRATCH OK', os.getcwd())\n"
    )
    result = sandbox.run_python(program, FAST)
    assert result.status == sandbox.PASSED, result
    assert "WROTE" not in result.stdout and result.stdout.count("REFUSED") == len(outside)
    assert f"SCRATCH OK {sandbox.WORK_DIR}" in result.stdout
    for directory in [*outside, "/tmp", "/var/tmp", "/dev/shm", str(tmp_path)]:
        if os.path.isdir(directory):
            assert not os.path.exists(os.path.join(directory, marker)), directory
    assert not [p for p in os.listdir("/tmp") if p.startswith("verity-sbx-")]
