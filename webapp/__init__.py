"""Weigh-in: a weight log that nudges people who have stopped using it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask

from .config import ConfigError, default_redis_prefix, instance_folder, load_config

if TYPE_CHECKING:
    from .events.broker import Broker

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["create_app", "make_broker", "ConfigError"]


def make_broker(url: str, app: Flask) -> Broker:
    """The broker implementation that a BROKER_URL names, for create_app to hand to the app."""
    if url.startswith("memory:"):
        from .events.broker import MemoryBroker

        return MemoryBroker(app)
    from .events.redis_broker import RedisBroker

    return RedisBroker(url, app, prefix=app.config["REDIS_PREFIX"])


def create_app(config: dict | None = None) -> Flask:
    """Build the app: configuration from the environment, overridden by `config` (tests)."""
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    # The environment's INSTANCE_PATH, unless `config` names one.
    instance_path = (config or {}).get("INSTANCE_PATH") or instance_folder(os.environ, app.instance_path)
    app.instance_path = str(instance_path)
    app.config.update(load_config(instance_path))
    if config:
        app.config.update(config)
        if (
            "SECRET_KEY" in config
            and "REDIS_PREFIX" not in config
            and not os.environ.get("REDIS_PREFIX", "").strip()
        ):
            # The default prefix follows the key the app runs with, as every server of the same
            # deployment derives it (an app given its key here, say a benchmark's publisher beside
            # servers started with it in their environment, must share their channel).
            app.config["REDIS_PREFIX"] = default_redis_prefix(config["SECRET_KEY"])
    Path(instance_path).mkdir(parents=True, exist_ok=True)

    if app.config["PROXY_FIX"]:
        from .proxies import TrustedProxyFix

        # Wrapping wsgi_app is how Flask documents middleware; its annotation as a method cannot say so.
        app.wsgi_app = TrustedProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, app.config["PROXY_FIX"], app.config["TRUSTED_PROXIES"]
        )

    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)

    from .connections import ConnectionLimits

    # Outermost, so its timers see every byte the servers write (webapp/connections.py).
    app.wsgi_app = ConnectionLimits(  # type: ignore[method-assign]
        app.wsgi_app,
        write_timeout=2 * app.config["SSE_HEARTBEAT"],
        stream_lifetime=app.config["SSE_MAX_LIFETIME"],
        request_timeout=app.config["REQUEST_TIMEOUT"],
    )

    from . import errors, i18n, web
    from .extensions import csrf, db, install_broker, limiter, login_manager

    db.init_app(app)
    from .pool import install_liveness_check

    with app.app_context():
        for engine in db.engines.values():
            install_liveness_check(engine)
    # `flask db ...` only: Flask-Migrate brings Alembic, Mako and Pygments, a good part of the
    # app's import time, which no web worker needs (docs/BENCHMARKS.md, "Import time").
    from .migrate import LazyMigrateGroup

    app.cli.add_command(LazyMigrateGroup(app, directory=str(ROOT / "migrations")))
    csrf.init_app(app)
    # Limit counters in Redis sit beside the broker's keys, under this deployment's prefix.
    app.config["RATELIMIT_STORAGE_OPTIONS"] = {"key_prefix": app.config["REDIS_PREFIX"] + "limits"}
    limiter.init_app(app)
    login_manager.init_app(app)
    i18n.init_app(app)
    # The one broker of this process, started lazily on the first subscribe.
    install_broker(app, make_broker(app.config["BROKER_URL"], app))

    from . import accounts, admin, cli, events, mail, reminders, tracking

    events.init_app(app)
    mail.init_app(app)
    accounts.init_app(app)
    tracking.init_app(app)
    reminders.init_app(app)
    admin.init_app(app)
    cli.init_app(app)
    web.init_app(app)
    errors.init_app(app)

    app.register_blueprint(accounts.bp, url_prefix="/account")
    app.register_blueprint(tracking.bp)
    app.register_blueprint(reminders.bp, url_prefix="/reminders")
    app.register_blueprint(admin.bp, url_prefix="/admin")
    app.register_blueprint(events.bp)
    from .events import fallback

    fallback.init_app(app)
    app.register_blueprint(fallback.bp)  # polling, long polling and WebSocket beside /events
    return app
