"""Friendly error pages (and fragments for htmx); never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, current_app, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .extensions import db
from .web import MEGABYTE, upload_limit

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have access to that page.",
    404: "There is nothing here. Check the address, or go back to your dashboard.",
    405: "That action is not allowed here.",
    413: "That request is too large.",
    429: "Too many requests. Please wait a little and try again.",
    500: "Something went wrong on our side. Please try again in a moment.",
}
CSRF_MESSAGE = "Your form expired or came from somewhere else. Reload the page and try again."

# Headers of the original error that a client needs: which methods are allowed, when to retry.
_KEPT_HEADERS = ("Allow", "Retry-After")


def _render_error(code: int, message: str, headers: dict | None = None):
    """The error page, or only its panel for an htmx request; a bare page if even that fails."""
    fragment = request.headers.get("HX-Request") == "true"
    template = "errors/_error.html" if fragment else "errors/error.html"
    try:
        body = render_template(template, code=code, message=message)
    except Exception:
        # The layout reads the session user and the reminder from the database; when that is
        # what failed, a page that needs nothing still beats Werkzeug's bare 500.
        log.exception("rendering the %s error page failed", code)
        _rollback_quietly()
        # Straight from the Jinja environment: render_template would run the context
        # processors, and Flask-Login's loads the user from the database again.
        body = current_app.jinja_env.get_template("errors/plain.html").render(code=code, message=message)
    response_headers = {"Vary": "HX-Request"}
    response_headers.update(headers or {})
    return body, code, response_headers


def _rollback_quietly() -> None:
    try:
        db.session.rollback()
    except Exception:  # the database itself may be what is down
        log.warning("rollback after an error failed", exc_info=True)


def _http_error(error: HTTPException):
    code = error.code or 500
    message = MESSAGES.get(code) or error.description or "Something went wrong."
    if code == 413 and (limit := upload_limit(request)) is not None:
        message = _(
            "That file is larger than %(size)d MB, the most Weigh-in takes at once. Split it into "
            "smaller files and import them one after the other.",
            size=limit // MEGABYTE,
        )
    headers = {name: value for name, value in error.get_headers() if name in _KEPT_HEADERS}
    return _render_error(code, message, headers)


def _csrf_error(error: CSRFError):
    return _render_error(400, CSRF_MESSAGE)


def _unhandled(error: Exception):
    if isinstance(error, HTTPException):
        return _http_error(error)
    # A registered handler means Flask no longer logs the exception; it must not vanish.
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    _rollback_quietly()
    return _render_error(500, MESSAGES[500])


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unhandled)
