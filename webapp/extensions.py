"""Flask extensions, created unbound and bound to an app in create_app; the app's broker accessor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mailman import Mail
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    from .events.broker import Broker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)

if TYPE_CHECKING:
    # mypy cannot follow a base class held in an attribute (python/mypy#8603); db.Model is Base
    # with Flask-SQLAlchemy's Model mixed in, so models subclass this name instead.
    from flask_sqlalchemy.model import Model as _FlaskModel

    class Model(Base, _FlaskModel):
        pass
else:
    Model = db.Model
login_manager = LoginManager()
csrf = CSRFProtect()
mail = Mail()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
babel = Babel()

_BROKER = "weighin_broker"


def install_broker(app: Flask, broker: Broker) -> None:
    """Hand the app its one broker for this process (create_app does; a test may swap it)."""
    app.extensions[_BROKER] = broker


def current_broker(app: Flask | None = None) -> Broker:
    """The broker of the given app, else of the current one: the one way code reaches it."""
    return (app if app is not None else current_app).extensions[_BROKER]
