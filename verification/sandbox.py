"""Run untrusted Python (model-generated HumanEval completions) in a throwaway sandbox.

Generated code is hostile input. Each program runs in a separate process tree that:
- lives in new network, mount and PID namespaces (unshare via ctypes; we run as root, which
  permits it): no network interface but a down loopback, so sockets cannot reach anything;
  private tmpfs mounts over every world-writable directory (/tmp, /var/tmp, /dev/shm, /run/lock),
  so nothing the program writes survives it; when the program (PID 1 of its namespace) dies, the
  kernel kills every process it started;
- drops privileges to an unprivileged uid/gid of its own (one per concurrent sandbox, from a
  private range with no account, like "nobody" but unshared), so it cannot write the repository,
  the datasets or anything else root owns, cannot signal another sandbox, and RLIMIT_NPROC (which
  counts per uid) contains a fork bomb without starving the sandboxes running beside it;
- runs under RLIMIT_AS / CPU / FSIZE / NOFILE / NPROC limits and a wall-clock timeout, after
  which the parent kills its whole process group (setsid) and its launcher;
- has a Python audit hook refusing socket creation, as a second line of defence (and the only
  one for the network where namespaces are not permitted).

Where unshare is refused (no CAP_SYS_ADMIN), the program still runs unprivileged with limits in
its own session, the audit hook still blocks Python sockets, and `SandboxResult.isolation` lists
what was not available so the run record says so.

The launcher half of this file (`_child_main`) uses only the standard library: the parent runs
this file as a script with `python -I -S`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

PASSED = "passed"
FAILED = "failed"
TIMEOUT = "timeout"
SANDBOX_ERROR = "sandbox_error"

# Sandbox uids: SANDBOX_UID_BASE + slot, slot = 64 per process (by pid) x 64 concurrent runs.
SANDBOX_UID_BASE = 1_600_000
SANDBOX_UID_SPAN = 64 * 1024
_uid_lock = threading.Lock()
_uid_counter = 0


def allocate_uid() -> int:
    """A uid for one sandbox run, distinct from every other run of this process (64 in flight at
    most) and, through the pid, very likely from other processes' runs."""
    global _uid_counter
    with _uid_lock:
        _uid_counter = (_uid_counter + 1) % 64
        slot = (os.getpid() % 1024) * 64 + _uid_counter
    return SANDBOX_UID_BASE + slot % SANDBOX_UID_SPAN


def is_sandbox_uid(uid: int) -> bool:
    return SANDBOX_UID_BASE <= uid < SANDBOX_UID_BASE + SANDBOX_UID_SPAN
_SETUP_FAILED_EXIT = 197
_SETUP_FAILED_MARK = "VERITY-SANDBOX-SETUP-FAILED"
_OUTPUT_TAIL = 2000


class SandboxError(RuntimeError):
    """The sandbox itself could not run the program (a harness error, not a model failure)."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 15.0  # wall clock, generous for a shared 2-core machine
    cpu_s: int = 10
    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 64
    uid: int | None = None  # None: a fresh uid per run (allocate_uid); gid follows the uid
    tmpfs_mb: int = 64
    # False skips the namespaces (the path taken where unshare is refused, e.g. under Docker's
    # default seccomp profile); kept switchable so that path is testable.
    use_namespaces: bool = True


@dataclass
class SandboxResult:
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    isolation: list[str] = field(default_factory=list)
    detail: str | None = None

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["stdout"] = self.stdout[-500:]
        data["stderr"] = self.stderr[-500:]
        return data


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------
def _read_tail(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _OUTPUT_TAIL))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def run_python(code: str, limits: Limits | None = None) -> SandboxResult:
    """Run `code` as a Python program in the sandbox. Exit status 0 is `passed`; any other exit
    (exception, assertion, signal, resource limit) is `failed`; running past the wall-clock
    limit is `timeout`; only a sandbox that cannot start is `sandbox_error`."""
    limits = limits or Limits()
    run_limits = asdict(limits)
    run_limits["uid"] = limits.uid if limits.uid is not None else allocate_uid()
    workdir = tempfile.mkdtemp(prefix="verity-sbx-")
    started = time.monotonic()
    try:
        program = os.path.join(workdir, "program.py")
        with open(program, "w", encoding="utf-8") as handle:
            handle.write(code)
        out_path, err_path = os.path.join(workdir, "stdout"), os.path.join(workdir, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", os.path.abspath(__file__), "--child", program,
                     json.dumps(run_limits)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir,
                    start_new_session=True, close_fds=True,
                )
            except OSError as exc:
                return SandboxResult(SANDBOX_ERROR, None, "", "", 0.0, detail=f"cannot start: {exc}")
            timed_out = False
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                proc.wait()
        stdout, stderr = _read_tail(out_path), _read_tail(err_path)
        duration = time.monotonic() - started
        isolation, stderr = _split_isolation_report(stderr)
        if timed_out:
            return SandboxResult(TIMEOUT, None, stdout, stderr, duration, isolation,
                                 detail=f"killed after {limits.timeout_s:g}s wall clock")
        if proc.returncode == _SETUP_FAILED_EXIT and _SETUP_FAILED_MARK in stderr:
            return SandboxResult(SANDBOX_ERROR, proc.returncode, stdout, stderr, duration, isolation,
                                 detail=stderr.split(_SETUP_FAILED_MARK, 1)[1].strip()[:300])
        status = PASSED if proc.returncode == 0 else FAILED
        return SandboxResult(status, proc.returncode, stdout, stderr, duration, isolation)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_ISOLATION_MARK = "VERITY-SANDBOX-ISOLATION:"


def _split_isolation_report(stderr: str) -> tuple[list[str], str]:
    """The launcher writes one line naming the isolation it achieved; strip it from stderr."""
    kept, isolation = [], []
    for line in stderr.splitlines(keepends=True):
        if line.startswith(_ISOLATION_MARK):
            isolation = json.loads(line[len(_ISOLATION_MARK):])
        else:
            kept.append(line)
    return isolation, "".join(kept)


# ---------------------------------------------------------------------------------------------
# Launcher side (runs as root in a fresh process; standard library only)
# ---------------------------------------------------------------------------------------------
_CLONE_NEWNS = 0x00020000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_PR_SET_PDEATHSIG = 1
_MS_BIND = 0x1000
_MNT_DETACH = 0x2
_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")

# Runs in the sandboxed interpreter before the program: refuse sockets and native-code loading
# at the Python level (defence in depth; the network namespace is the real barrier).
_GUARD = r"""
import sys
def _verity_guard(event, args):
    if event.startswith("socket.") or event in ("ctypes.dlopen", "ctypes.dlsym"):
        raise PermissionError("blocked in the Verity sandbox: " + event)
sys.addaudithook(_verity_guard)
del _verity_guard
import runpy
sys.argv = ["program.py"]
runpy.run_path("program.py", run_name="__main__")
"""


def _setup_failed(message: str) -> None:
    sys.stderr.write(f"{_SETUP_FAILED_MARK} {message}\n")
    sys.stderr.flush()
    os._exit(_SETUP_FAILED_EXIT)


def _libc():  # type: ignore[no-untyped-def]
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _private_mounts(libc, tmpfs_mb: int) -> bool:  # type: ignore[no-untyped-def]
    if libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return False
    options = f"size={tmpfs_mb}m,mode=1777".encode()
    for directory in _WRITABLE_DIRS:
        if os.path.isdir(directory):
            if libc.mount(b"tmpfs", directory.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options) != 0:
                return False
    return True


def _blocked_ancestors(path: str) -> list[str]:
    """Ancestors of `path` that other users cannot traverse (e.g. /root holding pyenv)."""
    blocked, current = [], os.path.dirname(path)
    while current not in ("/", ""):
        if not os.stat(current).st_mode & 0o001:
            blocked.append(current)
        current = os.path.dirname(current)
    return blocked


def _expose_interpreter(libc, prefix: str) -> bool:  # type: ignore[no-untyped-def]
    """Make the interpreter's installation readable by the unprivileged uid inside the private
    mount namespace: the highest non-traversable ancestor is covered by an empty tmpfs (which also
    hides everything else in it, such as root's home) and the installation is bind-mounted back
    at its own path."""
    blocked = _blocked_ancestors(prefix + "/x")
    if not blocked:
        return True
    top = blocked[-1]
    stage = "/tmp/.verity-python"
    os.makedirs(stage, exist_ok=True)
    if libc.mount(prefix.encode(), stage.encode(), None, _MS_BIND | _MS_REC, None) != 0:
        return False
    if libc.mount(b"tmpfs", top.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0755,size=1m") != 0:
        return False
    os.makedirs(prefix, mode=0o755, exist_ok=True)
    if libc.mount(stage.encode(), prefix.encode(), None, _MS_BIND | _MS_REC, None) != 0:
        return False
    libc.umount2(stage.encode(), _MNT_DETACH)
    os.rmdir(stage)
    return True


def _apply_limits(limits: dict[str, Any]) -> None:
    import resource

    mib = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _drop_privileges(libc, uid: int, gid: int) -> None:  # type: ignore[no-untyped-def]
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        _setup_failed("privileges were not dropped")
    # After the uid change (which clears it): die with the launcher.
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _child_main(program_path: str, limits_json: str) -> None:
    limits = json.loads(limits_json)
    with open(program_path, encoding="utf-8") as handle:
        code = handle.read()
    # Resolve the interpreter before the private tmpfs goes over /tmp: a virtualenv living under
    # /tmp (a CI checkout) would vanish from view, while the base installation it links to stays.
    interpreter = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    libc = _libc()
    isolation: list[str] = []
    namespaces = limits["use_namespaces"] and libc.unshare(_CLONE_NEWNET | _CLONE_NEWNS | _CLONE_NEWPID) == 0
    if namespaces:
        isolation += ["netns", "pidns", "mountns"]
        if _private_mounts(libc, limits["tmpfs_mb"]):
            isolation.append("private_tmpfs")
    if _blocked_ancestors(interpreter):
        if not ("private_tmpfs" in isolation and _expose_interpreter(libc, prefix)):
            _setup_failed(f"the interpreter {interpreter} is not reachable by an unprivileged uid")
        isolation.append("hidden_home")
    if "private_tmpfs" in isolation:
        workdir = "/tmp/verity-work"
    else:  # the throwaway directory itself (removed by the parent afterwards)
        os.chmod(os.path.dirname(program_path), 0o711)
        workdir = os.path.dirname(program_path) + "/work"
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as handle:
        handle.write(code)
    os.chown(workdir, limits["uid"], limits["uid"])
    isolation += ["uid:%d" % limits["uid"], "rlimits", "setsid", "audit_hook"]
    sys.stderr.write(_ISOLATION_MARK + json.dumps(isolation) + "\n")
    sys.stderr.flush()

    pid = os.fork()  # with CLONE_NEWPID the child is PID 1 of the new namespace
    if pid == 0:
        try:
            os.chdir(workdir)
            _apply_limits(limits)
            _drop_privileges(libc, limits["uid"], limits["uid"])
            os.execv(interpreter, [interpreter, "-I", "-S", "-c", _GUARD])
        except SystemExit:
            raise
        except BaseException as exc:  # noqa: BLE001 - report any setup failure as a harness error
            _setup_failed(f"{type(exc).__name__}: {exc}")
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    os._exit(128 + os.WTERMSIG(status))


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--child":
    _child_main(sys.argv[2], sys.argv[3])
