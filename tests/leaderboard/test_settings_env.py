"""Settings come from the environment through typed readers that fail loudly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from leaderboard import env as envmod

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
    pg = envmod.parse_database_url("postgres://u:p%40ss@db.example:6543/verity?sslmode=require", tmp_path)
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == ("verity", "u", "p@ss", "db.example", "6543")
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert envmod.parse_database_url("sqlite:////abs/x.db", tmp_path)["NAME"] == "/abs/x.db"
    assert envmod.parse_database_url("sqlite:///var/x.db", tmp_path)["NAME"] == str(tmp_path / "var/x.db")
    for bad in ("mysql://h/db", "postgres://h/", "sqlite:///"):
        with pytest.raises(envmod.ImproperlyConfiguredEnv):
            envmod.parse_database_url(bad, tmp_path)


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
