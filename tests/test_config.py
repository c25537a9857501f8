"""Configuration from environment variables: defaults, validation, and how a bad value is reported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT, TEST_SECRET, free_port, server_env
from webapp.config import ConfigError, instance_folder, load_config

SHARED_DB = "postgresql+psycopg://weighin@db.example.com:5432/weighin"


def config(tmp_path, **env):
    return load_config(tmp_path / "instance", env={k: str(v) for k, v in env.items()})


def test_embedded_defaults(tmp_path):
    cfg = config(tmp_path)
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'instance' / 'weighin.db'}"
    assert cfg["BROKER_URL"] == "memory://"
    assert cfg["RATELIMIT_STORAGE_URI"] == "memory://"
    assert (cfg["REMINDER_AFTER_DAYS"], cfg["REMINDER_SCAN_INTERVAL"], cfg["SSE_HEARTBEAT"]) == (7, 60, 15)
    # A stream lives about an hour (48-60 minutes): its end is a reconnect (issue 16).
    assert cfg["SSE_MAX_LIFETIME"] == 3600
    assert cfg["EMBEDDED"] is True
    assert cfg["SESSION_COOKIE_HTTPONLY"] and cfg["REMEMBER_COOKIE_HTTPONLY"]
    assert cfg["SESSION_COOKIE_SAMESITE"] == cfg["REMEMBER_COOKIE_SAMESITE"] == "Lax"
    assert cfg["SESSION_COOKIE_SECURE"] is False and cfg["REMEMBER_COOKIE_SECURE"] is False
    assert cfg["RATELIMIT_ENABLED"] is True
    assert cfg["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_embedded_secret_key_is_generated_once_and_kept(tmp_path):
    first = config(tmp_path)["SECRET_KEY"]
    assert len(first) >= 32
    assert config(tmp_path)["SECRET_KEY"] == first
    key_file = tmp_path / "instance" / "secret_key"
    assert key_file.stat().st_mode & 0o077 == 0
    # An emptied key file is replaced, never used as an empty key.
    key_file.write_text("")
    assert len(config(tmp_path)["SECRET_KEY"]) >= 32


def test_scale_out_values(tmp_path):
    cfg = config(
        tmp_path,
        DATABASE_URL="postgres://weighin@db/weighin",
        BROKER_URL="redis://cache:6379/2",
        SECRET_KEY=TEST_SECRET,
        REMINDER_AFTER_DAYS="14",
        REMINDER_SCAN_INTERVAL="0",
        SSE_HEARTBEAT="5",
        SESSION_COOKIE_SECURE="yes",
        PROXY_FIX="1",
    )
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://weighin@db/weighin"
    assert cfg["BROKER_URL"] == cfg["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/2"
    assert (cfg["REMINDER_AFTER_DAYS"], cfg["REMINDER_SCAN_INTERVAL"], cfg["SSE_HEARTBEAT"]) == (14, 0, 5)
    assert cfg["SESSION_COOKIE_SECURE"] is True and cfg["REMEMBER_COOKIE_SECURE"] is True
    assert cfg["PROXY_FIX"] == 1 and cfg["EMBEDDED"] is False
    assert cfg["SECRET_KEY"] == TEST_SECRET


def test_blank_values_mean_the_default(tmp_path):
    cfg = config(tmp_path, REMINDER_AFTER_DAYS="  ", BROKER_URL="", DATABASE_URL=" ")
    assert cfg["REMINDER_AFTER_DAYS"] == 7 and cfg["BROKER_URL"] == "memory://"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"REMINDER_AFTER_DAYS": "abc"},
            "REMINDER_AFTER_DAYS must be a whole number from 1 to 3650, got 'abc'",
        ),
        ({"REMINDER_AFTER_DAYS": "-1"}, "REMINDER_AFTER_DAYS must be a whole number from 1 to 3650, got -1"),
        ({"REMINDER_AFTER_DAYS": "0"}, "REMINDER_AFTER_DAYS must be a whole number from 1 to 3650, got 0"),
        ({"REMINDER_AFTER_DAYS": "7.5"}, "REMINDER_AFTER_DAYS must be a whole number"),
        ({"REMINDER_AFTER_DAYS": "1e3"}, "REMINDER_AFTER_DAYS must be a whole number"),
        ({"REMINDER_AFTER_DAYS": "1_000"}, "REMINDER_AFTER_DAYS must be a whole number"),
        ({"REMINDER_AFTER_DAYS": "\uff17"}, "REMINDER_AFTER_DAYS must be a whole number"),
        ({"REMINDER_AFTER_DAYS": "9" * 40}, "REMINDER_AFTER_DAYS must be a whole number"),
        (
            {"REMINDER_SCAN_INTERVAL": "-5"},
            "REMINDER_SCAN_INTERVAL must be a whole number from 0 to 86400, got -5",
        ),
        ({"REMINDER_SCAN_INTERVAL": "soon"}, "REMINDER_SCAN_INTERVAL must be a whole number"),
        ({"SSE_HEARTBEAT": "0"}, "SSE_HEARTBEAT must be a whole number from 1 to 3600, got 0"),
        ({"SSE_HEARTBEAT": "15s"}, "SSE_HEARTBEAT must be a whole number"),
        ({"SSE_MAX_LIFETIME": "1"}, "SSE_MAX_LIFETIME must be a whole number from 5"),
        ({"SSE_QUEUE_SIZE": "0"}, "SSE_QUEUE_SIZE must be a whole number from 1"),
        (
            {"SSE_MAX_STREAMS_PER_USER": "0"},
            "SSE_MAX_STREAMS_PER_USER must be a whole number from 1 to 10000",
        ),
        ({"SSE_MAX_STREAMS_PER_USER": "ten"}, "SSE_MAX_STREAMS_PER_USER must be a whole number"),
        ({"SSE_MAX_STREAMS_PER_PROCESS": "-1"}, "SSE_MAX_STREAMS_PER_PROCESS must be a whole number from 1"),
        ({"OUTBOX_RETENTION_DAYS": "-3"}, "OUTBOX_RETENTION_DAYS must be a whole number from 1"),
        ({"PROXY_FIX": "9"}, "PROXY_FIX must be a whole number from 0 to 5, got 9"),
        ({"TRUSTED_PROXIES": "nginx.internal"}, "TRUSTED_PROXIES must be IP addresses or networks"),
        ({"TRUSTED_PROXIES": "10.0.0.300"}, "TRUSTED_PROXIES must be IP addresses or networks"),
        ({"TRUSTED_HOSTS": "weighin.example.com,evil example"}, "TRUSTED_HOSTS must be host names"),
        ({"TRUSTED_HOSTS": "http://weighin.example.com"}, "TRUSTED_HOSTS must be host names"),
        ({"REMEMBER_COOKIE_DAYS": "0"}, "REMEMBER_COOKIE_DAYS must be a whole number from 1 to 365"),
        ({"SESSION_COOKIE_SECURE": "maybe"}, "SESSION_COOKIE_SECURE must be one of"),
        ({"RATELIMIT_ENABLED": "sometimes"}, "RATELIMIT_ENABLED must be one of"),
        ({"BROKER_URL": "amqp://rabbit:5672"}, "BROKER_URL must be memory:// or redis://host:6379/0"),
        ({"BROKER_URL": "redis"}, "BROKER_URL must be memory:// or redis://host:6379/0"),
        ({"BROKER_URL": "localhost:6379"}, "BROKER_URL must be memory:// or redis://host:6379/0"),
        ({"BROKER_URL": "redis://"}, "BROKER_URL must name the Redis host"),
        ({"BROKER_URL": "redis://cache:port/0"}, "BROKER_URL has an invalid port"),
        ({"BROKER_URL": "redis://cache:99999/0"}, "BROKER_URL has an invalid port"),
        ({"BROKER_URL": "redis://cache:6379/zero"}, "BROKER_URL's database must be a number"),
        (
            {"DATABASE_URL": "mysql://db/weighin"},
            "DATABASE_URL must start with sqlite:/// or postgresql+psycopg://",
        ),
        ({"DATABASE_URL": "postgresql+psycopg2://db/weighin"}, "DATABASE_URL must start with"),
        (
            {"DATABASE_URL": "weighin.db"},
            "DATABASE_URL must start with sqlite:/// or postgresql+psycopg:// "
            "(or postgresql://), got no scheme",
        ),
        ({"DATABASE_URL": "postgresql://db:port/weighin"}, "DATABASE_URL is not a valid database URL"),
        ({"DATABASE_URL": "postgresql://db:5432"}, "DATABASE_URL for PostgreSQL must name a database"),
        ({"DATABASE_URL": SHARED_DB}, "SECRET_KEY is required"),
        ({"BROKER_URL": "redis://cache:6379/0"}, "SECRET_KEY is required"),
        ({"DATABASE_URL": SHARED_DB, "SECRET_KEY": "   "}, "SECRET_KEY is required"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 16 characters long"),
    ],
)
def test_bad_values_get_a_clear_error(tmp_path, env, message):
    with pytest.raises(ConfigError) as raised:
        config(tmp_path, **env)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unusable_instance_folder_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot create the instance folder"):
        load_config(blocker / "instance", env={})


# --- how a bad value looks from the command line ------------------------------------------------


def _run(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _assert_one_clear_line(result: subprocess.CompletedProcess, message: str) -> None:
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert output.splitlines() == [output], f"expected one line, got:\n{output}"
    assert output.startswith("Weigh-in cannot start:") and message in output, output


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"REMINDER_AFTER_DAYS": "-2"}, "REMINDER_AFTER_DAYS must be a whole number from 1 to 3650, got -2"),
        ({"BROKER_URL": "kafka://queue"}, "BROKER_URL must be memory://"),
        ({"PORT": "http"}, "PORT must be a number from 1 to 65535, got 'http'"),
        ({"PORT": "70000"}, "PORT must be a number from 1 to 65535, got '70000'"),
    ],
)
def test_python_wsgi_py_reports_one_line(tmp_path, overrides, message):
    result = _run([sys.executable, "wsgi.py"], server_env(tmp_path, **overrides))
    _assert_one_clear_line(result, message)


def test_python_wsgi_py_without_secret_key_for_shared_services(tmp_path):
    env = server_env(tmp_path, DATABASE_URL=SHARED_DB)
    env.pop("SECRET_KEY")
    _assert_one_clear_line(_run([sys.executable, "wsgi.py"], env), "SECRET_KEY is required")


@pytest.mark.parametrize(
    "command", [["db", "upgrade"], ["create-admin", "ada@example.com"], ["demo"], ["--help"]]
)
def test_flask_cli_reports_one_line(tmp_path, command):
    env = server_env(tmp_path, SSE_HEARTBEAT="often")
    result = _run([sys.executable, "-m", "flask", "--app", "wsgi", *command], env)
    _assert_one_clear_line(result, "SSE_HEARTBEAT must be a whole number")


def test_gunicorn_stops_instead_of_respawning_workers(tmp_path):
    """A worker that cannot load the app exits with gunicorn's APP_LOAD_ERROR, so the master halts."""
    env = server_env(tmp_path, REMINDER_AFTER_DAYS="never")
    result = _run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{free_port()}",
            "wsgi:app",
        ],
        env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "REMINDER_AFTER_DAYS must be a whole number" in result.stderr
    assert result.stderr.count("Weigh-in cannot start:") == 1
    assert "Traceback" not in result.stderr


def test_redis_prefix_defaults_to_one_per_secret_key(tmp_path):
    shared = {"DATABASE_URL": SHARED_DB, "BROKER_URL": "redis://cache:6379/0"}
    one = config(tmp_path, SECRET_KEY=TEST_SECRET, **shared)["REDIS_PREFIX"]
    assert one == config(tmp_path, SECRET_KEY=TEST_SECRET, **shared)["REDIS_PREFIX"]
    other = config(tmp_path, SECRET_KEY=TEST_SECRET + "-other", **shared)["REDIS_PREFIX"]
    assert one != other and one.startswith("weighin:") and one.endswith(":")
    assert TEST_SECRET not in one


def test_an_app_given_its_secret_key_shares_the_channel_of_servers_started_with_it(tmp_path, monkeypatch):
    """A benchmark's publisher (create_app with SECRET_KEY in its config) beside gunicorn workers
    started with that key in their environment: the same default prefix, or its events go to a
    channel no worker listens to and arrive only with the outbox catch-up, seconds late."""
    from webapp import create_app

    monkeypatch.delenv("REDIS_PREFIX", raising=False)
    served = config(tmp_path, SECRET_KEY=TEST_SECRET + "-bench")["REDIS_PREFIX"]
    app = create_app(
        {"SECRET_KEY": TEST_SECRET + "-bench", "INSTANCE_PATH": str(tmp_path / "app"), "TESTING": True}
    )
    assert app.config["REDIS_PREFIX"] == served
    named = create_app(
        {
            "SECRET_KEY": TEST_SECRET,
            "REDIS_PREFIX": "mine:",
            "INSTANCE_PATH": str(tmp_path / "b"),
            "TESTING": True,
        }
    )
    assert named.config["REDIS_PREFIX"] == "mine:"


@pytest.mark.parametrize(
    ("raw", "prefix"),
    [("weighin:prod:", "weighin:prod:"), ("acme-weighin", "acme-weighin:"), ("{w}", "{w}:")],
)
def test_redis_prefix_is_taken_as_given_with_one_separator(tmp_path, raw, prefix):
    assert config(tmp_path, REDIS_PREFIX=raw)["REDIS_PREFIX"] == prefix


@pytest.mark.parametrize("raw", ["has space", "glob*", "a?b", "[x]", "x" * 65, "caf\u00e9"])
def test_redis_prefix_rejects_what_would_break_a_key_pattern(tmp_path, raw):
    with pytest.raises(ConfigError, match="REDIS_PREFIX must be"):
        config(tmp_path, REDIS_PREFIX=raw)


@pytest.mark.parametrize(("raw", "threshold"), [("none", None), ("off", None), ("0", 0), ("5", 5)])
def test_prepare_threshold_in_the_database_url_goes_to_psycopg(tmp_path, raw, threshold):
    cfg = config(tmp_path, SECRET_KEY=TEST_SECRET, DATABASE_URL=f"{SHARED_DB}?prepare_threshold={raw}")
    assert cfg["SQLALCHEMY_DATABASE_URI"] == SHARED_DB
    assert cfg["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] == {"prepare_threshold": threshold}


def test_a_bad_prepare_threshold_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="prepare_threshold must be none"):
        config(tmp_path, SECRET_KEY=TEST_SECRET, DATABASE_URL=f"{SHARED_DB}?prepare_threshold=sometimes")


def test_instance_path_names_the_instance_folder(tmp_path):
    default = tmp_path / "beside-the-code"
    assert instance_folder({}, default) == default
    assert instance_folder({"INSTANCE_PATH": "  "}, default) == default
    assert instance_folder({"INSTANCE_PATH": str(tmp_path / "data")}, default) == tmp_path / "data"
