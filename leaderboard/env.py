"""The web project's own connection settings: database and Redis URLs, parsed and checked. The typed
readers for everything else are in verification.config (one set, shared with the engine's CLI)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from verification.config import ImproperlyConfiguredEnv


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
