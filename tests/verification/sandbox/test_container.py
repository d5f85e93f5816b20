"""The shipped deployment gives the sandbox what it needs, and only where it runs: the GPU worker
(the only service that measures, hence runs model-written code) starts as root with CAP_SYS_ADMIN
and no AppArmor confinement; no other service gets either."""

from __future__ import annotations

import json
import subprocess

from tests.test_deploy_files import REPO_ROOT, _compose_command


def _services(tmp_path) -> dict:
    cmd, env = _compose_command(tmp_path)
    proc = subprocess.run([*cmd, "--env-file", ".env.example", "config", "--format", "json"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["services"]


def test_the_gpu_worker_can_make_the_sandbox_and_nothing_else_gets_its_privileges(tmp_path):
    services = _services(tmp_path)
    gpu = services["worker-gpu"]
    assert gpu["user"] in ("root", "0", "0:0")
    assert "SYS_ADMIN" in gpu["cap_add"]
    assert "apparmor=unconfined" in gpu["security_opt"]
    assert "privileged" not in gpu or not gpu["privileged"]
    for name, service in services.items():
        if name != "worker-gpu":
            assert not service.get("cap_add") and not service.get("security_opt"), name
            assert service.get("user") in (None, ""), name


def test_only_the_gpu_queue_measures():
    """The capabilities above go to the one worker that runs generated code."""
    from workers.celery_app import TASK_QUEUES

    assert TASK_QUEUES["verity.measure_run"] == "gpu"
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "USER verity" in dockerfile and "verification.sandbox --check" in dockerfile
