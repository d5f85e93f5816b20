"""Typed readers for environment variables. A bad value stops the process with a message that
names the variable, rather than running with a silently wrong setting."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


class ImproperlyConfiguredEnv(RuntimeError):
    pass


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfiguredEnv(f"{name}={number} is below the minimum {minimum}")
    return number


_BYTE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def env_bytes(name: str, default: int) -> int:
    """An integer number of bytes, optionally with a K/M/G/T suffix (binary units)."""
    value = _raw(name)
    if value is None or value == "":
        return default
    text = value.upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in _BYTE_UNITS else ""
    digits = text[: len(text) - len(unit)] if unit else text
    try:
        number = float(digits)
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a size (e.g. 500G, 2048M)") from None
    if number <= 0:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} must be positive")
    return int(number * _BYTE_UNITS[unit])


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def env_path(name: str, default: Path | None) -> Path | None:
    value = _raw(name)
    if value is None or value == "":
        return default
    return Path(value).expanduser().resolve()


def parse_database_url(url: str, base_dir: Path) -> dict:
    """postgres://user:pass@host:port/name?sslmode=… or sqlite:///relative/or//absolute.db"""
    parsed = urlparse(url)
    scheme = parsed.scheme
    if scheme == "sqlite":
        # sqlite:///var/db.sqlite3 (relative to the project) or sqlite:////abs/path.sqlite3
        raw_path = unquote(parsed.path)
        if raw_path.startswith("//"):
            path = Path(raw_path[1:])
        else:
            path = base_dir / raw_path.lstrip("/")
        if not raw_path.strip("/"):
            raise ImproperlyConfiguredEnv(f"DATABASE_URL={url!r} names no SQLite file")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
    if scheme in {"postgres", "postgresql", "pgsql"}:
        name = unquote(parsed.path.lstrip("/"))
        if not name:
            raise ImproperlyConfiguredEnv(f"DATABASE_URL={url!r} names no database")
        options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "OPTIONS": options,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfiguredEnv(
        f"DATABASE_URL={url!r}: unsupported scheme {scheme!r} (use postgres:// or sqlite:///)"
    )


def check_redis_url(name: str, url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfiguredEnv(f"{name}={url!r} must start with redis://, rediss:// or unix://")
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ImproperlyConfiguredEnv(f"{name}={url!r} names no host")
    return url
