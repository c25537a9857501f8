"""Friendly error pages (and fragments for htmx); never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, current_app, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, SecurityError

from .extensions import db
from .web import MEGABYTE, NotText, upload_limit

log = logging.getLogger(__name__)

MESSAGES = {
    400: _l("The request could not be understood."),
    403: _l("You do not have access to that page."),
    404: _l("There is nothing here. Check the address, or go back to your dashboard."),
    405: _l("That action is not allowed here."),
    # REQUEST_TIMEOUT (webapp/connections.py): the body stalled or crawled.
    408: _l(
        "The request stopped arriving (the connection stalled or was far too slow), so nothing was saved. "
        "Check your connection and try again."
    ),
    413: _l("That request is too large."),
    429: _l("Too many requests. Please wait a little and try again."),
    500: _l("Something went wrong on our side. Please try again in a moment."),
}
# Werkzeug's own descriptions are English: any other code gets this, in the reader's language.
OTHER_MESSAGE = _l("That request could not be handled.")
CSRF_MESSAGE = _l("Your form expired or came from somewhere else. Reload the page and try again.")

# How long a client is asked to wait while the database is unreachable (a restart or failover
# takes a few seconds; webapp/pool.py then replaces the dead connections on the next checkout).
DATABASE_RETRY_AFTER = 5

# Headers of the original error that a client needs: which methods are allowed, when to retry.
_KEPT_HEADERS = ("Allow", "Retry-After")


def _render_error(code: int, message: str, headers: dict | None = None):
    """The error page, or only its panel for an htmx request; a bare page if even that fails."""
    fragment = request.headers.get("HX-Request") == "true"
    template = "errors/_error.html" if fragment else "errors/error.html"
    try:
        body = render_template(template, code=code, message=message)
    except Exception as failure:
        # The layout reads the session user and the reminder from the database; when that is
        # what failed, a page that needs nothing still beats Werkzeug's bare 500.
        if database_unavailable(failure):
            log.warning("the %s error page is shown without its layout: the database is unavailable", code)
        else:
            log.exception("rendering the %s error page failed", code)
        _rollback_quietly()
        # Straight from the Jinja environment: render_template would run the context
        # processors, and Flask-Login's loads the user from the database again.
        # The htmx panel needs nothing either, so an htmx request still gets a panel to swap.
        bare = "errors/_error.html" if fragment else "errors/plain.html"
        body = current_app.jinja_env.get_template(bare).render(code=code, message=message)
    response_headers = {"Vary": "HX-Request"}
    response_headers.update(headers or {})
    return body, code, response_headers


def _rollback_quietly() -> None:
    try:
        db.session.rollback()
    except Exception:  # the database itself may be what is down
        log.warning("rollback after an error failed", exc_info=True)


def _http_error(error: HTTPException):
    if isinstance(error, SecurityError):
        # A Host that is not in TRUSTED_HOSTS: no URL can be built for it, so no page either.
        text = _("This site does not answer to that host name.") + "\n"
        return text, 400, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
    code = error.code or 500
    message = str(MESSAGES.get(code, OTHER_MESSAGE))
    if isinstance(error, NotText):
        message = _(
            "The form held characters that are not valid text, so nothing was saved. Check what you "
            "typed or pasted, and try again."
        )
    if code == 413 and (limit := upload_limit(request)) is not None:
        message = _(
            "That file is larger than %(size)d MB, the most Weigh-in takes at once. Split it into "
            "smaller files and import them one after the other.",
            size=limit // MEGABYTE,
        )
    headers = {name: value for name, value in error.get_headers() if name in _KEPT_HEADERS}
    return _render_error(code, message, headers)


def _csrf_error(error: CSRFError):
    return _render_error(400, str(CSRF_MESSAGE))


def database_unavailable(error: BaseException) -> bool:
    """Whether an error means the database cannot be reached now (down, restarting, failing over,
    the pool exhausted), which a retry a little later can cure, unlike a bug or a bad query."""
    import sqlite3

    from sqlalchemy import exc as sa_exc

    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    if isinstance(orig, sqlite3.OperationalError):
        # "no such table" and the like are bugs; a lock held too long by another writer is not.
        return "locked" in str(orig) or "busy" in str(orig)
    try:
        import psycopg
    except ImportError:
        return False
    # Refused or dropped connections, "the database system is starting up / shutting down",
    # an administrator's termination: psycopg's OperationalError and its subclasses.
    return isinstance(orig, psycopg.OperationalError)


def _unhandled(error: Exception):
    if isinstance(error, HTTPException):
        return _http_error(error)
    if database_unavailable(error):
        # Not the app's fault, and not for good: the honest answer is 503 with when to retry.
        current_app.logger.warning(
            "database unavailable on %s %s: %s", request.method, request.path, str(error).splitlines()[0]
        )
        _rollback_quietly()
        return _render_error(
            503,
            _("The database is not answering right now. Please try again in a few seconds."),
            {"Retry-After": str(DATABASE_RETRY_AFTER), "Cache-Control": "no-store"},
        )
    # A registered handler means Flask no longer logs the exception; it must not vanish.
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    _rollback_quietly()
    return _render_error(500, str(MESSAGES[500]))


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unhandled)
