"""Run untrusted Python (model-generated HumanEval completions) in a sandbox that fails closed.

Generated code is hostile input. Three processes take part:

- the harness (`run_python`, in the worker) starts the launcher with an empty, explicit
  environment and keeps the read end of a status pipe;
- the launcher (this file run as a script, as root, standard library only) unshares the mount,
  PID, network and IPC namespaces, optionally makes a cgroup v2 for the run, forks the sandbox's
  init and supervises it: at the wall-clock limit it kills that init, and the kernel then kills
  every process of the PID namespace (setsid grandchildren included);
- the sandbox's init (PID 1 of the new namespace) joins the cgroup, builds a minimal read-only
  root (system directories and the interpreter bound read-only, a fresh /proc, a few device
  nodes, private tmpfs for /tmp and /dev/shm; no home, no repository, no datasets, no sockets
  of the host), sets the rlimits, drops to a per-run unprivileged uid with no_new_privs and
  finally execs the interpreter on the program with `SANDBOX_ENV` as its whole environment.

The status pipe is the only channel the harness trusts: the launcher and the init write JSON
lines to it, and the init's copy is close-on-exec, so the program never holds it. A result is
read from it, never from the program's output or exit status: a program printing a harness
marker and exiting with any code is a wrong answer. Without the namespaces (unshare refused, or
`Limits.use_namespaces` False) nothing runs and the result says "no sandbox".

Memory and processes are bounded for the whole tree: by the run's cgroup v2 (memory.max,
pids.max) where a writable cgroup v2 with those controllers exists (`Limits.cgroup_parent`, else
the worker's own cgroup), otherwise by RLIMIT_NPROC of the run's
own uid (which only that run uses) times RLIMIT_AS per process. `SandboxResult.isolation` says
which applied ("cgroup_v2" or "rlimit_tree_bound").

What a program prints is stored only as a bounded excerpt under `PRIVATE_OUTPUT_KEY` in the
sample's details: it is evidence for maintainers, never for a public page.
"""

from __future__ import annotations

import json
import os
import select
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

# Sample details key holding the program's output excerpt; never shown publicly.
PRIVATE_OUTPUT_KEY = "private_output"
EXCERPT_CHARS = 500
_OUTPUT_TAIL = 2000
_STATUS_BYTES = 64 * 1024

# The program's whole environment: nothing is inherited from the worker.
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}
WORK_DIR = "/tmp/work"  # inside the sandbox's root

# Sandbox uids: SANDBOX_UID_BASE + slot, slot = 64 per process (by pid) x 64 concurrent runs.
SANDBOX_UID_BASE = 1_600_000
SANDBOX_UID_SPAN = 64 * 1024
_uid_lock = threading.Lock()
_uid_counter = 0


def allocate_uid() -> int:
    """A uid for one sandbox run, distinct from every other run of this process (64 in flight at
    most) and, through the pid, very likely from other processes' runs. RLIMIT_NPROC counts per
    uid, so a run's own uid makes that limit cover its whole process tree."""
    global _uid_counter
    with _uid_lock:
        _uid_counter = (_uid_counter + 1) % 64
        slot = (os.getpid() % 1024) * 64 + _uid_counter
    return SANDBOX_UID_BASE + slot % SANDBOX_UID_SPAN


def is_sandbox_uid(uid: int) -> bool:
    return SANDBOX_UID_BASE <= uid < SANDBOX_UID_BASE + SANDBOX_UID_SPAN


class SandboxError(RuntimeError):
    """The sandbox itself could not run the program (a harness error, not a model failure)."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 15.0  # wall clock, generous for a shared 2-core machine
    cpu_s: int = 10
    # The whole tree under cgroup v2; without it, each process's address space (the tree is then
    # bounded by processes x memory_mb).
    memory_mb: int = 512
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 16  # the whole tree: pids.max, or RLIMIT_NPROC of the run's own uid
    uid: int | None = None  # None: a fresh uid per run (allocate_uid); gid follows the uid
    tmpfs_mb: int = 64
    # False refuses to run anything, exactly as where unshare is not permitted (testable path).
    use_namespaces: bool = True
    cgroup_parent: str | None = None  # a delegated cgroup v2 directory; None: the worker's own cgroup


@dataclass
class SandboxResult:
    status: str
    returncode: int | None  # negative: killed by that signal
    stdout: str
    stderr: str
    duration_s: float
    isolation: list[str] = field(default_factory=list)
    detail: str | None = None  # written by the harness, never by the program

    def summary(self) -> dict[str, Any]:
        """What a sample keeps: the outcome, and the program's output only as a private excerpt."""
        return {
            "status": self.status,
            "returncode": self.returncode,
            "duration_s": self.duration_s,
            "isolation": list(self.isolation),
            "detail": self.detail,
            PRIVATE_OUTPUT_KEY: {"stdout": excerpt(self.stdout), "stderr": excerpt(self.stderr)},
        }


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The tail of `text`, bounded, with NUL characters replaced (PostgreSQL refuses them)."""
    return text[-limit:].replace("\x00", "\ufffd")


# ---------------------------------------------------------------------------------------------
# Harness side
# ---------------------------------------------------------------------------------------------
def run_python(code: str, limits: Limits | None = None) -> SandboxResult:
    """Run `code` as a Python program in the sandbox. Exit status 0 is `passed`; any other exit
    (exception, assertion, signal, resource limit, any exit code) is `failed`; running past the
    wall-clock limit is `timeout`; only a sandbox that the status channel says did not start (or
    whose launcher vanished) is `sandbox_error`."""
    limits = limits or Limits()
    workdir = tempfile.mkdtemp(prefix="verity-sbx-")
    started = time.monotonic()
    try:
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as handle:
            handle.write(code)
        os.mkdir(os.path.join(workdir, "root"))  # the mount point of the sandbox's root
        messages, finished = _launch(workdir, _launch_config(limits), limits.timeout_s)
        stdout, stderr = _read_tail(os.path.join(workdir, "stdout")), _read_tail(os.path.join(workdir, "stderr"))
        return _result(messages, finished, stdout, stderr, time.monotonic() - started, limits)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _launch_config(limits: Limits) -> dict[str, Any]:
    config = asdict(limits)
    config["uid"] = limits.uid if limits.uid is not None else allocate_uid()
    config["harness_pid"] = os.getpid()
    return config


def _launch(workdir: str, config: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], bool]:
    """Start the launcher and collect the status channel; False when it had to be killed."""
    read_fd, write_fd = os.pipe()
    out_path, err_path = os.path.join(workdir, "stdout"), os.path.join(workdir, "stderr")
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), "--launch", workdir,
                 json.dumps(config), str(write_fd)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir, env=dict(SANDBOX_ENV),
                start_new_session=True, close_fds=True, pass_fds=(write_fd,),
            )
    except OSError as exc:
        os.close(read_fd)
        return [{"setup_failed": f"cannot start the launcher: {exc.strerror}"}], True
    finally:
        os.close(write_fd)
    # The launcher enforces the wall clock itself; this backstop only catches a launcher that hangs.
    raw, finished = _read_channel(read_fd, proc, timeout_s + 30.0)
    return _parse_messages(raw), finished


def _read_channel(read_fd: int, proc: subprocess.Popen[bytes], backstop_s: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + backstop_s
    poller = select.poll()  # not select(): a worker's descriptors can exceed FD_SETSIZE
    poller.register(read_fd, select.POLLIN)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(proc)
                proc.wait()
                return b"".join(chunks), False
            if not poller.poll(remaining * 1000):
                continue
            data = os.read(read_fd, 4096)
            if not data:  # EOF: the launcher exited and the init exec'd or died
                break
            if size < _STATUS_BYTES:
                chunks.append(data)
                size += len(data)
    finally:
        os.close(read_fd)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        return b"".join(chunks), False
    return b"".join(chunks), True


def _parse_messages(raw: bytes) -> list[dict[str, Any]]:
    messages = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            messages.append(message)
    return messages


def _result(messages: list[dict[str, Any]], finished: bool, stdout: str, stderr: str, duration: float,
            limits: Limits) -> SandboxResult:
    """The outcome, decided from the status channel alone."""
    isolation: list[str] = []
    ready = end = None
    for message in messages:
        if "setup_failed" in message:
            return SandboxResult(SANDBOX_ERROR, None, stdout, stderr, duration, isolation,
                                 detail=str(message["setup_failed"])[:300])
        if "ready" in message:
            ready, isolation = message, [str(x) for x in message["ready"]]
        if "exit" in message:
            end = message
    if not finished or ready is None or end is None:
        detail = "the sandbox launcher did not finish" if not finished else "the sandbox did not report its outcome"
        return SandboxResult(SANDBOX_ERROR, None, stdout, stderr, duration, isolation, detail=detail)
    returncode = end["exit"] if isinstance(end["exit"], int) else None
    if end.get("timed_out"):
        return SandboxResult(TIMEOUT, returncode, stdout, stderr, duration, isolation,
                             detail=f"killed at its time limit ({limits.timeout_s:g}s wall clock, {limits.cpu_s}s CPU)")
    status = PASSED if returncode == 0 else FAILED
    return SandboxResult(status, returncode, stdout, stderr, duration, isolation)


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
    """Kill the launcher (its session); the sandbox's init dies with it (parent-death signal)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


_probe_lock = threading.Lock()
_probe_results: dict[Limits, str | None] = {}


def unavailable_reason(limits: Limits | None = None) -> str | None:
    """None when the sandbox runs programs here, else why not. Probed once per process (and per
    limits) by running an empty program."""
    limits = limits or Limits()
    with _probe_lock:
        if limits not in _probe_results:
            probe = run_python("pass\n", limits)
            _probe_results[limits] = None if probe.status == PASSED else (probe.detail or probe.status)
        return _probe_results[limits]


# ---------------------------------------------------------------------------------------------
# Launcher and init (root, standard library only: this file runs as `python -I -S sandbox.py`)
# ---------------------------------------------------------------------------------------------
_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REMOUNT, _MS_BIND, _MS_MOVE, _MS_REC, _MS_PRIVATE = 0x20, 0x1000, 0x2000, 0x4000, 1 << 18
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
_DEVICES = ("null", "zero", "full", "random", "urandom")

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


class _SetupFailure(Exception):
    def __init__(self, step: str, errno_: int | None = None) -> None:
        super().__init__(f"{step}: {os.strerror(errno_)}" if errno_ else step)


class _Channel:
    """The status pipe: JSON lines, one atomic write each; close-on-exec, so the program never
    inherits it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_inheritable(fd, False)

    def send(self, **message: Any) -> None:
        os.write(self.fd, (json.dumps(message) + "\n").encode())

    def fail(self, reason: str) -> None:
        self.send(setup_failed=reason[:300])
        os._exit(1)


def _libc():  # type: ignore[no-untyped-def]
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.unshare.argtypes = [ctypes.c_int]
    return libc


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def _launcher_main(workdir: str, config_json: str, status_fd: int) -> None:
    config = json.loads(config_json)
    channel = _Channel(status_fd)
    libc = _libc()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the harness
    if os.getppid() != config["harness_pid"]:
        channel.fail("the harness exited before the sandbox started")
    if not config["use_namespaces"]:
        channel.fail("no sandbox: namespaces are disabled")
    cgroup = _make_cgroup(config)
    if libc.unshare(_CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC) != 0:
        channel.fail(f"no sandbox: unshare refused ({os.strerror(_errno())})")
    isolation = ["netns", "pidns", "mountns", "ipcns", "cgroup_v2" if cgroup else "rlimit_tree_bound"]
    alive_r, alive_w = os.pipe()  # the init checks the launcher still lives once it cannot be told
    pid = os.fork()  # the child is PID 1 of the new PID namespace
    if pid == 0:
        os.close(alive_w)
        try:
            _init_main(workdir, config, channel, libc, cgroup, isolation, alive_r)
        except _SetupFailure as exc:
            channel.fail(str(exc))
        except BaseException as exc:  # noqa: BLE001 - any failure before exec is the harness's
            channel.fail(f"sandbox setup: {type(exc).__name__}")
    os.close(alive_r)
    code, timed_out = _supervise(pid, float(config["timeout_s"]), float(config["cpu_s"]))
    _remove_cgroup(cgroup)
    channel.send(exit=code, timed_out=timed_out)
    os._exit(0)


def _supervise(pid: int, timeout_s: float, cpu_s: float) -> tuple[int, bool]:
    """Wait for the init; at the wall-clock limit kill it, which kills its whole PID namespace.
    Killed before it is reaped, its pid cannot have been reused. A program the kernel killed at
    its CPU-time limit (SIGXCPU, then SIGKILL) ran out of time too: timed out, whichever limit
    came first on a busy or an idle machine."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            cpu_limited = code in (-signal.SIGKILL, -signal.SIGXCPU) and usage.ru_utime + usage.ru_stime >= cpu_s
            return code, cpu_limited
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status), True
        time.sleep(0.01)


def _init_main(workdir: str, config: dict[str, Any], channel: _Channel, libc: Any, cgroup: str | None,
               isolation: list[str], alive_fd: int) -> None:
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    with open(os.path.join(workdir, "program.py"), encoding="utf-8") as handle:
        code = handle.read()
    if cgroup:
        _write(os.path.join(cgroup, "cgroup.procs"), "0", "join the run's cgroup")
    interpreter = os.path.realpath(sys.executable)
    root = os.path.join(workdir, "root")
    _build_root(libc, root, config, interpreter)
    _write_program(root, code, config["uid"])
    _enter_root(libc, root)
    _restrict(libc, config, alive_fd)
    uid = config["uid"]
    isolation += ["minimal_root", "private_tmpfs", "fresh_proc", f"uid:{uid}", "rlimits", "no_new_privs",
                  "audit_hook"]
    channel.send(ready=isolation)
    try:
        os.execve(interpreter, [interpreter, "-I", "-S", "-c", _GUARD], dict(SANDBOX_ENV))
    except OSError as exc:
        raise _SetupFailure("exec the interpreter", exc.errno) from None


def _mount(libc: Any, step: str, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def b(value: str | None) -> bytes | None:
        return value.encode() if value is not None else None

    if libc.mount(b(source), b(target), b(fstype), flags, b(data)) != 0:
        raise _SetupFailure(step, _errno())


def _bind_readonly(libc: Any, source: str, target: str) -> None:
    """A non-recursive bind (submounts stay out of view), then read-only, nosuid, nodev."""
    _mount(libc, "bind a system directory", source, target, None, _MS_BIND)
    flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
    if os.statvfs(source).f_flag & os.ST_NOEXEC:
        flags |= _MS_NOEXEC  # keep what the source had (a locked flag cannot be dropped)
    _mount(libc, "make a system directory read-only", None, target, None, flags)


def _build_root(libc: Any, root: str, config: dict[str, Any], interpreter: str) -> None:
    """The sandbox's whole filesystem: a read-only tmpfs holding read-only binds of the system
    directories and the interpreter's installation, a fresh /proc, device nodes and private
    writable tmpfs for /tmp and /dev/shm."""
    _mount(libc, "make mounts private", None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount(libc, "mount the root tmpfs", "tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
    bound = []
    for name in _SYSTEM_DIRS:
        source, target = "/" + name, os.path.join(root, name)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        elif os.path.isdir(source):
            os.mkdir(target)
            _bind_readonly(libc, source, target)
            bound.append(os.path.realpath(source))
    installation = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix),
                    os.path.dirname(interpreter)}
    for directory in sorted(installation, key=len):  # a prefix before the directories inside it
        if not any(directory == b or directory.startswith(b + "/") for b in bound):
            os.makedirs(root + directory, mode=0o755, exist_ok=True)
            _bind_readonly(libc, directory, root + directory)
            bound.append(directory)
    tmpfs = f"size={int(config['tmpfs_mb'])}m,mode=1777"
    os.mkdir(os.path.join(root, "proc"))
    _mount(libc, "mount a fresh /proc", "proc", os.path.join(root, "proc"), "proc",
           _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    _build_dev(libc, os.path.join(root, "dev"), tmpfs)
    os.mkdir(os.path.join(root, "tmp"))
    _mount(libc, "mount /tmp", "tmpfs", os.path.join(root, "tmp"), "tmpfs", _MS_NOSUID | _MS_NODEV, tmpfs)
    os.makedirs(os.path.join(root, "var"), mode=0o755)
    os.symlink("/tmp", os.path.join(root, "var", "tmp"))


def _build_dev(libc: Any, dev: str, tmpfs: str) -> None:
    os.mkdir(dev)
    _mount(libc, "mount /dev", "tmpfs", dev, "tmpfs", _MS_NOSUID, "size=64k,mode=0755")
    for name in _DEVICES:
        if os.path.exists("/dev/" + name):
            open(os.path.join(dev, name), "w").close()
            _mount(libc, "bind a device", "/dev/" + name, os.path.join(dev, name), None, _MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    os.mkdir(os.path.join(dev, "shm"))
    _mount(libc, "mount /dev/shm", "tmpfs", os.path.join(dev, "shm"), "tmpfs", _MS_NOSUID | _MS_NODEV, tmpfs)
    _mount(libc, "make /dev read-only", None, dev, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID)


def _write_program(root: str, code: str, uid: int) -> None:
    work = root + WORK_DIR
    os.mkdir(work, mode=0o700)
    with open(os.path.join(work, "program.py"), "w", encoding="utf-8") as handle:
        handle.write(code)
    for path in (work, os.path.join(work, "program.py")):
        os.chown(path, uid, uid)


def _enter_root(libc: Any, root: str) -> None:
    """Make the root read-only and move it over "/" (the host's tree is then covered), then chroot
    into it. pivot_root would do too, but Docker's default seccomp profile refuses it."""
    _mount(libc, "make the root read-only", None, root, None,
           _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.chdir(root)
    _mount(libc, "move the root over /", ".", "/", None, _MS_MOVE)
    os.chroot(".")
    os.chdir(WORK_DIR)


def _restrict(libc: Any, config: dict[str, Any], alive_fd: int) -> None:
    import resource

    mib = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (config["memory_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_s"], config["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["file_size_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (config["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (config["processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    uid = config["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # drops every capability
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid) or os.getgroups():
        raise _SetupFailure("drop privileges")
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
        raise _SetupFailure("set no_new_privs", _errno())
    # The uid change cleared the parent-death signal: set it again, then make sure the launcher
    # did not die in between (its end of `alive_fd` closes when it does).
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    poller = select.poll()
    poller.register(alive_fd, select.POLLIN)
    if poller.poll(0):
        raise _SetupFailure("the launcher exited")


# --- cgroup v2 ----------------------------------------------------------------------------------
def _write(path: str, value: str, step: str) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError as exc:
        raise _SetupFailure(step, exc.errno) from None


def _own_cgroup() -> str | None:
    """The worker's own cgroup v2 directory, if a cgroup2 filesystem is mounted."""
    try:
        with open("/proc/self/cgroup") as handle:
            relative = next((line[3:].strip() for line in handle if line.startswith("0::")), None)
        with open("/proc/self/mountinfo") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return None
    for fields in mounts:
        fstype = fields[fields.index("-") + 1] if "-" in fields else ""
        if fstype == "cgroup2" and relative is not None and relative.startswith(fields[3]):
            return os.path.join(fields[4], relative[len(fields[3]):].lstrip("/"))
    return None


def _make_cgroup(config: dict[str, Any]) -> str | None:
    """A cgroup for this run with memory.max and pids.max, or None where cgroup v2 with those
    controllers is not available and writable (the rlimit bound then applies)."""
    parent = config["cgroup_parent"] or _own_cgroup()
    if not parent:
        return None
    path = os.path.join(parent, f"verity-sbx-{os.getpid()}")
    try:
        with open(os.path.join(parent, "cgroup.controllers")) as handle:
            if not {"memory", "pids"} <= set(handle.read().split()):
                return None
        with open(os.path.join(parent, "cgroup.subtree_control")) as handle:
            enabled = set(handle.read().split())
        if not {"memory", "pids"} <= enabled:
            _write(os.path.join(parent, "cgroup.subtree_control"), "+memory +pids", "enable cgroup controllers")
        os.mkdir(path)
        _write(os.path.join(path, "memory.max"), str(config["memory_mb"] * 1024 * 1024), "memory.max")
        _write(os.path.join(path, "pids.max"), str(config["processes"]), "pids.max")
        for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            if os.path.exists(os.path.join(path, name)):
                _write(os.path.join(path, name), value, name)
        return path
    except (OSError, _SetupFailure):
        _remove_cgroup(path if os.path.isdir(path) else None)
        return None


def _remove_cgroup(path: str | None) -> None:
    if not path:
        return
    if os.path.exists(os.path.join(path, "cgroup.kill")):
        try:
            _write(os.path.join(path, "cgroup.kill"), "1", "cgroup.kill")
        except _SetupFailure:
            pass
    for _ in range(100):  # members leave asynchronously after they die
        try:
            os.rmdir(path)
            return
        except OSError:
            time.sleep(0.01)


def _check_main() -> int:
    """`python -m verification.sandbox --check`: can this machine (or container) run the sandbox?"""
    result = run_python("import os\nprint(os.getuid())\n", Limits(timeout_s=30.0))
    report = {"available": result.status == PASSED, "isolation": result.isolation, "detail": result.detail}
    print(json.dumps(report, indent=2))
    return 0 if result.status == PASSED else 1


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--launch":
    _launcher_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif __name__ == "__main__" and sys.argv[1:] == ["--check"]:
    sys.exit(_check_main())
