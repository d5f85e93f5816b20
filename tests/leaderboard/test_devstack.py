"""`make run`'s launcher on a machine without system services: SQLite, the bundled Redis, a
worker and the web server; Ctrl-C stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_devstack_serves_the_site_with_bundled_redis_and_stops_cleanly(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "VERITY_TEST_DB_NAME"}}
    env.update(VERITY_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "leaderboard.devstack", "--port", str(port), "--no-demo"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if "Verity is up" in line:
                break
        assert any("Verity is up" in line for line in lines), "".join(lines)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
        assert "Verity" in body
        redis_url = (tmp_path / "var" / "redis.url").read_text()
        assert "6379" not in redis_url.split(":")[-1], "must not use the system Redis"
        assert (tmp_path / "var" / "verity.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        lines.append(output)
    assert proc.returncode == 0, "".join(lines)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    # No child survives: Redis and the worker carry the var dir in their command lines.
    time.sleep(0.5)
    survivors = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True, text=True).stdout
    assert survivors == "", survivors
