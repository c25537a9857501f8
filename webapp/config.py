"""Configuration read from environment variables, validated with clear messages."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message says which and why."""


def _int_env(env, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _bool_env(env, name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def _secret_key(env, instance_path: Path, embedded: bool) -> str:
    key = env.get("SECRET_KEY", "").strip()
    if key:
        if len(key) < 16:
            raise ConfigError("SECRET_KEY must be at least 16 characters long")
        return key
    if not embedded:
        raise ConfigError(
            "SECRET_KEY is required when DATABASE_URL or BROKER_URL point at shared services; "
            "set it to the same long random value on every worker and host"
        )
    # The embedded default keeps one generated key so sessions survive restarts.
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


def _database_url(env, instance_path: Path) -> str:
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        return f"sqlite:///{instance_path / 'weighin.db'}"
    scheme = urlsplit(url).scheme
    if scheme == "postgres" or scheme == "postgresql":
        # Plain postgresql:// would pick psycopg2, which is not installed.
        url = "postgresql+psycopg" + url[len(scheme):]
        scheme = "postgresql+psycopg"
    if scheme not in {"sqlite", "postgresql+psycopg"}:
        raise ConfigError(
            f"DATABASE_URL must start with sqlite:/// or postgresql+psycopg://, got scheme {scheme!r}"
        )
    return url


def _broker_url(env) -> str:
    url = env.get("BROKER_URL", "").strip() or "memory://"
    scheme = urlsplit(url).scheme
    if scheme not in {"memory", "redis", "rediss"}:
        raise ConfigError(f"BROKER_URL must be memory:// or redis://host:port/db, got {url!r}")
    return url


def load_config(instance_path: str | os.PathLike, env=None) -> dict:
    """Build the Flask config mapping from the environment (os.environ by default)."""
    env = os.environ if env is None else env
    instance = Path(instance_path)
    database_url = _database_url(env, instance)
    broker_url = _broker_url(env)
    embedded = database_url.startswith("sqlite") and broker_url.startswith("memory")
    secure_cookies = _bool_env(env, "SESSION_COOKIE_SECURE", False)
    return {
        "SECRET_KEY": _secret_key(env, instance, embedded),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "BROKER_URL": broker_url,
        "REMINDER_AFTER_DAYS": _int_env(env, "REMINDER_AFTER_DAYS", 7, 1, 3650),
        "REMINDER_SCAN_INTERVAL": _int_env(env, "REMINDER_SCAN_INTERVAL", 60, 0, 86400),
        "SSE_HEARTBEAT": _int_env(env, "SSE_HEARTBEAT", 15, 1, 3600),
        "SSE_MAX_LIFETIME": _int_env(env, "SSE_MAX_LIFETIME", 600, 5, 86400),
        "SSE_QUEUE_SIZE": _int_env(env, "SSE_QUEUE_SIZE", 64, 1, 100000),
        "OUTBOX_RETENTION_DAYS": _int_env(env, "OUTBOX_RETENTION_DAYS", 7, 1, 3650),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure_cookies,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": secure_cookies,
        "PROXY_FIX": _int_env(env, "PROXY_FIX", 0, 0, 5),
        "RATELIMIT_STORAGE_URI": broker_url if broker_url.startswith("redis") else "memory://",
        "EMBEDDED": embedded,
    }
