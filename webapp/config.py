"""Configuration read from environment variables, validated with clear messages."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from datetime import timedelta
from email.utils import parseaddr
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Seconds a stream lives by default. An hour: a stream's end is a reconnect that costs ~4 ms of
# CPU (docs/DECISIONS.md, "A stream lives an hour").
SSE_MAX_LIFETIME_DEFAULT = 3600


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message says which and why."""


# Digits only (ASCII): int() would also accept "1_000", " +5" or Arabic-Indic digits.
_INTEGER = re.compile(r"-?[0-9]+")
MIN_SECRET_KEY_LENGTH = 16
DATABASE_SCHEMES = {"sqlite", "sqlite+pysqlite", "postgresql+psycopg"}
BROKER_SCHEMES = {"memory", "redis", "rediss"}
MAX_REQUEST_BYTES = 1024 * 1024


def _int_env(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    """An integer variable within [minimum, maximum], or the default when unset or blank."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    if not _INTEGER.fullmatch(text) or len(text) > 12:
        raise ConfigError(f"{name} must be a whole number from {minimum} to {maximum}, got {raw!r}")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be a whole number from {minimum} to {maximum}, got {value}")
    return value


def default_process_stream_ceiling() -> int:
    """Streams one process accepts by default: 5,000, or fewer when its file-descriptor limit is
    lower, keeping 256 descriptors for ordinary requests, the database pool, Redis and files."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 5000
    if soft == resource.RLIM_INFINITY:
        return 5000
    return max(10, min(5000, soft - 256))


def _bool_env(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no variable, or the default when unset or blank."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def _secret_key(env: Mapping[str, str], instance_path: Path, embedded: bool) -> str:
    """SECRET_KEY from the environment; the embedded default generates one into instance/ once."""
    key = env.get("SECRET_KEY", "").strip()
    if key:
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters long")
        return key
    if not embedded:
        raise ConfigError(
            "SECRET_KEY is required when DATABASE_URL or BROKER_URL point at shared services; "
            "set it to the same long random value on every worker and host"
        )
    # The embedded default keeps one generated key so sessions survive restarts.
    key_file = instance_path / "secret_key"
    try:
        if key_file.exists():
            key = key_file.read_text().strip()
            if len(key) >= MIN_SECRET_KEY_LENGTH:
                return key
        key = secrets.token_urlsafe(48)
        key_file.write_text(key)
        key_file.chmod(0o600)
    except OSError as error:
        raise ConfigError(
            f"cannot read or write the generated secret key at {key_file}: {error.strerror}"
        ) from None
    return key


def _database_url(env: Mapping[str, str], instance_path: Path) -> str:
    """DATABASE_URL, normalised to the psycopg 3 driver; SQLite under instance/ by default."""
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        return f"sqlite:///{instance_path / 'weighin.db'}"
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme in {"postgres", "postgresql"}:
        # Plain postgresql:// would pick psycopg2, which is not installed.
        url = "postgresql+psycopg" + url[len(scheme) :]
        scheme = "postgresql+psycopg"
    if scheme not in DATABASE_SCHEMES:
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ConfigError(
            f"DATABASE_URL must start with sqlite:/// or postgresql+psycopg:// (or postgresql://), got {shown}"
        )
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a malformed port only raises when read
    except (ArgumentError, ValueError):
        raise ConfigError(
            "DATABASE_URL is not a valid database URL (check the host, port and database name)"
        ) from None
    if scheme.startswith("postgresql") and not parsed.database:
        raise ConfigError(
            "DATABASE_URL for PostgreSQL must name a database, as in postgresql://user@host:5432/weighin"
        )
    return url


def _engine_options(database_url: str) -> tuple[str, dict]:
    """Pull prepare_threshold out of a PostgreSQL URL into psycopg's connect arguments.

    psycopg would get the URL's text ("0", "none") and raise a TypeError; PgBouncer in
    transaction mode needs prepared statements off, which is prepare_threshold=none.
    """
    # No pool_pre_ping: webapp/pool.py checks a pooled connection without a round trip.
    options: dict = {}
    if not database_url.startswith("postgresql"):
        return database_url, options
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    raw = url.query.get("prepare_threshold")
    if raw is None:
        return database_url, options
    text = (raw if isinstance(raw, str) else raw[-1]).strip().lower()
    if text in {"none", "off"}:
        threshold = None
    elif _INTEGER.fullmatch(text) and 0 <= int(text) <= 1000000:
        threshold = int(text)
    else:
        raise ConfigError(
            "DATABASE_URL's prepare_threshold must be none (for PgBouncer in transaction mode) "
            f"or a whole number of executions, got {raw!r}"
        )
    options["connect_args"] = {"prepare_threshold": threshold}
    return url.difference_update_query(["prepare_threshold"]).render_as_string(hide_password=False), options


def _broker_url(env: Mapping[str, str]) -> str:
    """BROKER_URL: memory:// in one process, redis:// to fan out between workers and hosts."""
    url = env.get("BROKER_URL", "").strip() or "memory://"
    parts = urlsplit(url)
    if parts.scheme not in BROKER_SCHEMES or "://" not in url:
        raise ConfigError(f"BROKER_URL must be memory:// or redis://host:6379/0, got {url!r}")
    if parts.scheme.startswith("redis"):
        try:
            parts.port  # noqa: B018 - a malformed port only raises when read
        except ValueError:
            raise ConfigError(f"BROKER_URL has an invalid port: {url!r}") from None
        if not parts.hostname and not parts.path.strip("/"):
            raise ConfigError(
                f"BROKER_URL must name the Redis host, as in redis://localhost:6379/0; got {url!r}"
            )
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ConfigError(
                f"BROKER_URL's database must be a number, as in redis://localhost:6379/0; got {url!r}"
            )
    return url


# Printable ASCII without spaces or glob characters, so the prefix is also safe in a SCAN pattern.
_REDIS_PREFIX = re.compile(r"[A-Za-z0-9_.:{}-]{1,64}")


def default_redis_prefix(secret_key: str) -> str:
    """weighin:<10 hex>: from SECRET_KEY, which every worker and host of one deployment shares
    and two deployments do not; a one-way digest, so Redis never sees the key itself."""
    digest = hashlib.sha256(b"weighin redis prefix\0" + secret_key.encode()).hexdigest()
    return f"weighin:{digest[:10]}:"


def _redis_prefix(env: Mapping[str, str], secret_key: str) -> str:
    """REDIS_PREFIX: what every Redis channel and key of this deployment starts with."""
    raw = env.get("REDIS_PREFIX", "").strip()
    if not raw:
        return default_redis_prefix(secret_key)
    if not _REDIS_PREFIX.fullmatch(raw):
        raise ConfigError(
            "REDIS_PREFIX must be 1 to 64 letters, digits or _ . : { } -, "
            f"as in weighin:prod: ; got {raw!r}"
        )
    # One separator before the names the app adds ("events", "streams:...").
    return raw if raw.endswith(":") else raw + ":"


# MAIL_URL schemes and the port each one uses when the URL names none.
MAIL_SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
MAIL_URL_EXAMPLE = "smtp+starttls://user:password@mail.example.com:587"


def mail_settings(env: Mapping[str, str], instance_path: Path) -> dict:
    """MAIL_URL as Flask-Mailman settings: unset writes .eml files under instance/mail/."""
    url = env.get("MAIL_URL", "").strip()
    timeout = _int_env(env, "MAIL_TIMEOUT", 20, 1, 600)
    if not url:
        return {
            "MAIL_BACKEND": "webapp.mail.eml",
            "MAIL_FILE_PATH": str(instance_path / "mail"),
            "MAIL_TIMEOUT": timeout,
            "MAIL_DESTINATION": f"files in {instance_path / 'mail'}",
        }
    parts = urlsplit(url)
    if parts.scheme not in MAIL_SCHEMES or "://" not in url:
        raise ConfigError(
            "MAIL_URL must start with smtp://, smtp+starttls:// or smtps://, "
            f"as in {MAIL_URL_EXAMPLE}; got {_without_password(url)!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"MAIL_URL has an invalid port: {_without_password(url)!r}") from None
    if not parts.hostname:
        raise ConfigError(
            f"MAIL_URL must name the mail server, as in {MAIL_URL_EXAMPLE}; got {_without_password(url)!r}"
        )
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ConfigError(
            "MAIL_URL takes only a scheme, credentials, host and port, as in "
            f"{MAIL_URL_EXAMPLE}; got {_without_password(url)!r}"
        )
    if (parts.username is None) != (parts.password is None):
        raise ConfigError("MAIL_URL must give both a user name and a password, or neither")
    port = port or MAIL_SCHEMES[parts.scheme]
    return {
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": parts.hostname,
        "MAIL_PORT": port,
        "MAIL_USERNAME": unquote(parts.username) if parts.username is not None else None,
        "MAIL_PASSWORD": unquote(parts.password) if parts.password is not None else None,
        "MAIL_USE_TLS": parts.scheme == "smtp+starttls",
        "MAIL_USE_SSL": parts.scheme == "smtps",
        "MAIL_TIMEOUT": timeout,
        "MAIL_DESTINATION": f"{parts.scheme}://{parts.hostname}:{port}",
    }


def _without_password(url: str) -> str:
    """The URL as an error message may show it: never with its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()


def _mail_from(env: Mapping[str, str]) -> str:
    """MAIL_FROM: who the messages come from, an address with an optional name."""
    raw = env.get("MAIL_FROM", "").strip() or "Weigh-in <weighin@localhost>"
    _, address = parseaddr(raw)
    if "@" not in address or any(c.isspace() or ord(c) < 32 for c in address) or "\n" in raw:
        raise ConfigError(
            f"MAIL_FROM must be an address such as 'Weigh-in <weighin@example.com>', got {raw!r}"
        )
    return raw


def parse_hours(raw: str) -> tuple[int, int]:
    """'8-20' as (8, 20): from the start hour up to (not including) the end hour; 22-6 wraps."""
    match = re.fullmatch(r"\s*([0-9]{1,2})\s*-\s*([0-9]{1,2})\s*", raw)
    if not match:
        raise ValueError("give two hours as START-END, such as 8-20")
    start, end = int(match.group(1)), int(match.group(2))
    if start > 23 or end > 24:
        raise ValueError("the start hour must be 0 to 23 and the end hour 1 to 24")
    if start == end:
        raise ValueError("the start and end hours must differ")
    return start, end


def _email_hours(env: Mapping[str, str]) -> tuple[int, int]:
    raw = env.get("REMINDER_EMAIL_HOURS", "").strip() or "8-20"
    try:
        return parse_hours(raw)
    except ValueError as error:
        raise ConfigError(
            f"REMINDER_EMAIL_HOURS must be the local hours to send in, as START-END such as 8-20 "
            f"({error}); got {raw!r}"
        ) from None


def _public_url(env: Mapping[str, str]) -> str:
    """PUBLIC_URL: where the links in emails point, as people reach the site."""
    url = env.get("PUBLIC_URL", "").strip() or "http://127.0.0.1:5000"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - a malformed port only raises when read
    except ValueError:
        raise ConfigError(f"PUBLIC_URL has an invalid port: {url!r}") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"PUBLIC_URL must be the site's address, such as https://weighin.example.com; got {url!r}"
        )
    return url.rstrip("/")


def _trusted_proxies(env: Mapping[str, str]) -> tuple[IPv4Network | IPv6Network, ...]:
    """TRUSTED_PROXIES: the addresses (or networks) whose X-Forwarded-For/-Proto PROXY_FIX believes."""
    raw = env.get("TRUSTED_PROXIES", "").strip() or "127.0.0.1,::1"
    try:
        return tuple(ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            "TRUSTED_PROXIES must be IP addresses or networks separated by commas, "
            f"such as 127.0.0.1,10.0.0.5; got {raw!r}"
        ) from None


_HOST_NAME = re.compile(r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _trusted_hosts(env: Mapping[str, str]) -> list[str] | None:
    """TRUSTED_HOSTS: the host names the site answers to (Flask's TRUSTED_HOSTS); unset, any."""
    raw = env.get("TRUSTED_HOSTS", "").strip()
    if not raw:
        return None
    hosts = [part.strip().lower() for part in raw.split(",") if part.strip()]
    for host in hosts:
        if not _HOST_NAME.fullmatch(host) or len(host) > 253:
            raise ConfigError(
                "TRUSTED_HOSTS must be host names separated by commas, such as "
                f"weighin.example.com,.example.org (a leading dot takes every subdomain); got {host!r}"
            )
    return hosts


def rate_limit_storage_uri(broker_url: str) -> str:
    """Where failed logins are counted: the Redis of the broker, so all workers share one count."""
    return broker_url if broker_url.startswith("redis") else "memory://"


def instance_folder(env: Mapping[str, str], default: str | os.PathLike) -> Path:
    """INSTANCE_PATH: the folder of the embedded default's database, generated key and .eml mail."""
    raw = env.get("INSTANCE_PATH", "").strip()
    return Path(raw).expanduser().absolute() if raw else Path(default)


def load_config(instance_path: str | os.PathLike, env: Mapping[str, str] | None = None) -> dict:
    """Build the Flask config mapping from the environment (os.environ by default)."""
    env = os.environ if env is None else env
    instance = Path(instance_path)
    try:
        instance.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the instance folder {instance}: {error.strerror}") from None
    database_url, engine_options = _engine_options(_database_url(env, instance))
    broker_url = _broker_url(env)
    embedded = database_url.startswith("sqlite") and broker_url.startswith("memory")
    secure_cookies = _bool_env(env, "SESSION_COOKIE_SECURE", False)
    secret_key = _secret_key(env, instance, embedded)
    return {
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        "BROKER_URL": broker_url,
        # Redis pub/sub ignores database numbers, so two deployments on one Redis server hear
        # each other unless every channel and key carries a name of its own.
        "REDIS_PREFIX": _redis_prefix(env, secret_key),
        "REMINDER_AFTER_DAYS": _int_env(env, "REMINDER_AFTER_DAYS", 7, 1, 3650),
        "REMINDER_SCAN_INTERVAL": _int_env(env, "REMINDER_SCAN_INTERVAL", 60, 0, 86400),
        "SSE_HEARTBEAT": _int_env(env, "SSE_HEARTBEAT", 15, 1, 3600),
        "SSE_MAX_LIFETIME": _int_env(env, "SSE_MAX_LIFETIME", SSE_MAX_LIFETIME_DEFAULT, 5, 86400),
        "SSE_QUEUE_SIZE": _int_env(env, "SSE_QUEUE_SIZE", 64, 1, 100000),
        # One account's streams, long polls and WebSockets together (one more ends its oldest),
        # across every worker and host; and what one process holds before it answers 503.
        "SSE_MAX_STREAMS_PER_USER": _int_env(env, "SSE_MAX_STREAMS_PER_USER", 10, 1, 10000),
        "SSE_MAX_STREAMS_PER_PROCESS": _int_env(
            env, "SSE_MAX_STREAMS_PER_PROCESS", default_process_stream_ceiling(), 1, 1000000
        ),
        # Seconds a client has to send a request's head (embedded server), and its body (both).
        "REQUEST_TIMEOUT": _int_env(env, "REQUEST_TIMEOUT", 10, 1, 3600),
        "OUTBOX_RETENTION_DAYS": _int_env(env, "OUTBOX_RETENTION_DAYS", 7, 1, 3650),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure_cookies,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": secure_cookies,
        # Also how long any login lasts at most: the server refuses its cookies after that.
        "REMEMBER_COOKIE_DURATION": timedelta(days=_int_env(env, "REMEMBER_COOKIE_DAYS", 30, 1, 365)),
        "PROXY_FIX": _int_env(env, "PROXY_FIX", 0, 0, 5),
        "TRUSTED_PROXIES": _trusted_proxies(env),
        "TRUSTED_HOSTS": _trusted_hosts(env),
        # Every form here is a few fields; a bigger body is a mistake or an attack (413 page).
        "MAX_CONTENT_LENGTH": MAX_REQUEST_BYTES,
        "RATELIMIT_STORAGE_URI": rate_limit_storage_uri(broker_url),
        # Always explicit: Flask-Limiter's Limiter is one object per process, and an unset value
        # would inherit whatever the previous app in the process chose (tests, benchmarks).
        "RATELIMIT_ENABLED": _bool_env(env, "RATELIMIT_ENABLED", True),
        "EMBEDDED": embedded,
        **mail_settings(env, instance),
        "MAIL_DEFAULT_SENDER": _mail_from(env),
        "MAIL_SEND_INTERVAL": _int_env(env, "MAIL_SEND_INTERVAL", 30, 0, 86400),
        "PUBLIC_URL": _public_url(env),
        "REMINDER_EMAIL_AFTER": _int_env(env, "REMINDER_EMAIL_AFTER", 24 * 3600, 0, 365 * 86400),
        "REMINDER_EMAIL_HOURS": _email_hours(env),
    }
