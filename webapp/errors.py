"""Friendly error pages (and fragments for htmx); never a traceback."""

from __future__ import annotations

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .extensions import db

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have access to that page.",
    404: "There is nothing here.",
    405: "That action is not allowed here.",
    413: "That request is too large.",
    429: "Too many attempts. Please wait a little and try again.",
    500: "Something went wrong on our side. Nothing you entered was lost; please try again.",
}


def _render_error(code: int, message: str):
    template = "errors/_error.html" if request.headers.get("HX-Request") == "true" else "errors/error.html"
    return render_template(template, code=code, message=message), code


def _http_error(error: HTTPException):
    code = error.code or 500
    message = MESSAGES.get(code, error.description or "Something went wrong.")
    if code == 429 and error.description:
        message = error.description
    return _render_error(code, message)


def _csrf_error(error: CSRFError):
    return _render_error(400, "Your form expired or came from somewhere else. Reload the page and try again.")


def _unhandled(error: Exception):
    db.session.rollback()
    if isinstance(error, HTTPException):
        return _http_error(error)
    return _render_error(500, MESSAGES[500])


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _unhandled)
    app.register_error_handler(Exception, _unhandled)
