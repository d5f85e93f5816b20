"""Deployment settings, each checked in a fresh process with a production environment:

- `manage.py check --deploy` reports nothing (HTTPS, HSTS, secure cookies, proxy header, a shared
  cache for the rate limits) with DEBUG off, a long SECRET_KEY and real host names;
- with the compose web service's own environment (DEBUG off), static files are served by
  WhiteNoise after collectstatic: Plotly's JS and every asset of the API docs load; plain HTTP is
  redirected to HTTPS except the container health check;
- a worker (VERITY_PROCESS=worker) starts without SECRET_KEY or mail credentials and fails loudly
  if anything tries to sign with the missing key; the web process refuses to start without it.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import fixtures_services

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "verity.example.org"


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": HOST,
        "CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
        "DATABASE_URL": "postgres://verity:pw@db.internal:5432/verity",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "VERITY_VAR_DIR": str(tmp_path / "var"),
        "HF_HUB_OFFLINE": "1",
    }
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *(["-c", code] if code else []), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_reports_nothing_with_production_settings(tmp_path):
    proc = run_python("", production_env(tmp_path), "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout, proc.stdout


def test_check_deploy_flags_what_an_insecure_configuration_leaves_out(tmp_path):
    """The check is not vacuous: turning HTTPS off brings back the warnings the issue listed."""
    proc = run_python("", production_env(tmp_path, VERITY_HTTPS="0"), "manage.py", "check", "--deploy")
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in proc.stdout + proc.stderr


def compose_web_env() -> dict[str, str]:
    """The compose web service's environment, ${VAR:-default} resolved with the example .env."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    example = dict(line.split("=", 1) for line in (REPO_ROOT / ".env.example").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    example.update({"SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": HOST, "POSTGRES_PASSWORD": "pw"})

    def resolve(value: str) -> str:
        return re.sub(r"\$\{(\w+)(?::[-?]([^}]*))?\}", lambda m: example.get(m.group(1)) or m.group(2) or "", str(value))

    return {name: resolve(value) for name, value in compose["services"]["web"]["environment"].items()}


STATIC_PROBE = r"""
import json, re
import django
django.setup()
from django.core.management import call_command
from django.test import Client
call_command("collectstatic", "--noinput", verbosity=0)
host = {host!r}
https = Client(HTTP_HOST=host, HTTP_X_FORWARDED_PROTO="https")
out = {{}}
plotly = https.get("/static/plotly/plotly.min.js")
out["plotly"] = [plotly.status_code, plotly.get("Content-Type", ""), len(b"".join(plotly.streaming_content))]
docs = https.get("/api/docs")
out["docs"] = docs.status_code
assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', docs.content.decode())
out["assets"] = {{url: https.get(url).status_code for url in assets}}
plain = Client(HTTP_HOST=host)
out["http_docs"] = [plain.get("/api/docs").status_code, plain.get("/api/docs").get("Location", "")]
out["health"] = plain.get("/healthz").status_code
print("RESULT " + json.dumps(out))
"""


@pytest.mark.django_db
def test_static_files_and_api_docs_load_with_debug_off_in_the_compose_web_configuration(tmp_path):
    env = {**compose_web_env(), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "DJANGO_SETTINGS_MODULE": "leaderboard.settings",
           # this machine's services instead of the compose network's, and a scratch static root
           "DATABASE_URL": fixtures_services.test_database_url(), "REDIS_URL": "redis://127.0.0.1:6379/0",
           "CACHE_URL": "redis://127.0.0.1:6379/0",
           "VERITY_VAR_DIR": str(tmp_path / "var"), "VERITY_STATIC_ROOT": str(tmp_path / "static")}
    assert env["DEBUG"] == "0"
    proc = run_python(STATIC_PROBE.format(host=HOST), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    status, content_type, size = result["plotly"]
    assert status == 200 and "javascript" in content_type and size > 1_000_000
    assert result["docs"] == 200 and len(result["assets"]) >= 2
    assert set(result["assets"].values()) == {200}, result["assets"]
    assert any("swagger" in url for url in result["assets"])
    assert result["http_docs"] == [301, f"https://{HOST}/api/docs"]
    assert result["health"] == 200  # the container's health check speaks plain HTTP


WORKER_PROBE = """
import django
django.setup()
import workers.tasks, workers.celery_app
from leaderboard import settings
assert settings.PROCESS == "worker" and settings.SECRET_KEY == "" and settings.EMAIL_HOST_PASSWORD == ""
try:
    from django.core import signing
    signing.dumps("x")
except Exception as exc:
    print("SIGNING REFUSED", type(exc).__name__)
"""


def test_workers_start_without_the_web_secrets(tmp_path):
    env = production_env(tmp_path, VERITY_PROCESS="worker", DJANGO_SETTINGS_MODULE="leaderboard.settings")
    del env["SECRET_KEY"]
    proc = run_python(WORKER_PROBE, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SIGNING REFUSED ImproperlyConfigured" in proc.stdout
    web = run_python("import leaderboard.settings", {**env, "VERITY_PROCESS": "web"})
    assert web.returncode != 0 and "SECRET_KEY must be set" in web.stderr


@pytest.mark.parametrize("variable, value", [
    ("VERITY_SIGNUP_RATE", "lots"), ("VERITY_LOGIN_RATE", "10/0m"), ("VERITY_PROCESS", "gpu"),
    ("VERITY_QUEUE_GPU_HOURS", "-1"), ("VERITY_MAX_BASE_BYTES", "big"), ("CACHE_URL", "memcached://x"),
    ("VERITY_TRUSTED_PROXIES", "-1"), ("SECURE_HSTS_SECONDS", "soon"),
])
def test_new_settings_refuse_bad_values(tmp_path, variable, value):
    proc = run_python("import leaderboard.settings", production_env(tmp_path, **{variable: value}))
    assert proc.returncode != 0 and variable in proc.stderr
