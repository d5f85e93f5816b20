"""Settings come from the environment through typed readers that fail loudly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from leaderboard import env as urlmod
from verification import config as envmod

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "reader, value, message",
    [
        (lambda: envmod.env_bool("X_FLAG", False), "maybe", "not a boolean"),
        (lambda: envmod.env_int("X_INT", 1, minimum=1), "ten", "not an integer"),
        (lambda: envmod.env_int("X_INT", 1, minimum=1), "0", "below the minimum"),
        (lambda: envmod.env_bytes("X_BYTES", 1), "lots", "not a size"),
        (lambda: envmod.env_choice("X_CHOICE", "vllm", ("vllm", "transformers")), "onnx", "must be one of"),
    ],
)
def test_bad_values_fail_loudly(monkeypatch, reader, value, message):
    for name in ("X_FLAG", "X_INT", "X_BYTES", "X_CHOICE"):
        monkeypatch.setenv(name, value)
    with pytest.raises(envmod.ImproperlyConfiguredEnv, match=message):
        reader()


def test_readers_parse_good_values(monkeypatch):
    monkeypatch.setenv("X_BYTES", "1.5G")
    monkeypatch.setenv("X_FLAG", "yes")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert envmod.env_bytes("X_BYTES", 1) == int(1.5 * 1024**3)
    assert envmod.env_bool("X_FLAG", False) is True
    assert envmod.env_list("X_LIST", []) == ["a", "b", "c"]
    assert envmod.env_int("X_MISSING", 7) == 7


def test_database_urls(tmp_path):
    pg = urlmod.parse_database_url("postgres://u:p%40ss@db.example:6543/verity?sslmode=require", tmp_path)
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == ("verity", "u", "p@ss", "db.example", "6543")
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert urlmod.parse_database_url("sqlite:////abs/x.db", tmp_path)["NAME"] == "/abs/x.db"
    assert urlmod.parse_database_url("sqlite:///var/x.db", tmp_path)["NAME"] == str(tmp_path / "var/x.db")
    for bad in ("mysql://h/db", "postgres://h/", "sqlite:///"):
        with pytest.raises(envmod.ImproperlyConfiguredEnv):
            urlmod.parse_database_url(bad, tmp_path)


@pytest.mark.parametrize(
    "variable, value",
    [
        ("DATABASE_URL", "mongodb://x/y"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("INFERENCE_BACKEND", "onnx"),
        ("MODEL_CACHE_BYTES", "-5G"),
        ("DEBUG", "perhaps"),
    ],
)
def test_settings_refuse_to_start_with_a_bad_value(variable, value):
    """The real settings module, imported in a fresh process, stops with the variable's name."""
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "1", variable: value}
    proc = subprocess.run(
        [sys.executable, "-c", "import leaderboard.settings"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert variable in proc.stderr


def test_secret_key_required_without_debug():
    proc = subprocess.run(
        [sys.executable, "-c", "import leaderboard.settings"],
        cwd=REPO_ROOT, env={"PATH": "/usr/bin:/bin", "DEBUG": "0"}, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0 and "SECRET_KEY" in proc.stderr


def _documented_variables() -> set[str]:
    import re

    table = (REPO_ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {name for row in table.splitlines() if row.startswith("| `") for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def _read_variables() -> set[str]:
    """Every variable a typed reader is asked for, in the files allowed to read the environment."""
    import re

    files = ["verification/config.py", "leaderboard/settings.py", "leaderboard/devstack.py"]
    names: set[str] = set()
    for name in files:
        names |= set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', (REPO_ROOT / name).read_text()))
    return names


def test_every_setting_is_documented_and_every_documented_setting_is_read():
    read, documented = _read_variables(), _documented_variables()
    # DATABASE_URL and REDIS_URL go through env_str too; the library variables are documented only.
    assert read - documented == set(), "read but not in the README's configuration table"
    assert documented - read == set(), "documented in the README but never read"


def test_only_the_settings_and_the_engine_cli_read_the_environment():
    import ast

    allowed = {"verification/config.py"}
    offenders = []
    for package in ("verification", "leaderboard", "workers"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            rel = str(path.relative_to(REPO_ROOT))
            if rel in allowed:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                # os.environ.get(...) / os.environ[...] / os.getenv(...) reads; writes for libraries
                # (setdefault of DJANGO_SETTINGS_MODULE, vLLM's own KV cache variable) are not reads.
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    target = ast.unparse(node.func)
                    if target in ("os.environ.get", "os.getenv"):
                        offenders.append(f"{rel}:{node.lineno} {ast.unparse(node)[:80]}")
    assert offenders == [], "\n".join(offenders)
