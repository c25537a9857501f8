"""Cross-cutting web pieces: whole page or fragment, security headers, health check."""

from __future__ import annotations

import json
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from flask import (
    Blueprint,
    Flask,
    Request,
    current_app,
    has_app_context,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import text
from werkzeug.exceptions import BadRequest
from werkzeug.formparser import FormDataParser
from werkzeug.routing import IntegerConverter

from .extensions import db
from .formatting import format_day, format_day_time

health_bp = Blueprint("health", __name__)
# What makes the site installable: the web app manifest and the favicon browsers ask for at /.
shell_bp = Blueprint("shell", __name__)

# Pico's primary blue, and its light and dark page backgrounds (templates/base.html's theme-color).
THEME_COLOR = "#0172ad"
BACKGROUND_LIGHT = "#ffffff"
BACKGROUND_DARK = "#13171f"

MEGABYTE = 1000 * 1000


def allows_upload(max_bytes: int):
    """Let one view take a body up to max_bytes; every other route keeps MAX_CONTENT_LENGTH."""

    def mark(view):
        view.max_upload_bytes = max_bytes
        return view

    return mark


def upload_limit(routed: Request) -> int | None:
    """The body limit of the view a request was routed to, if that view has its own."""
    rule = routed.url_rule
    view = current_app.view_functions.get(rule.endpoint) if rule is not None and has_app_context() else None
    return getattr(view, "max_upload_bytes", None)


class NotText(BadRequest):
    """A form whose bytes are not UTF-8 text (errors.py gives it its own message)."""


class StrictFormDataParser(FormDataParser):
    """Werkzeug keeps undecodable bytes of a urlencoded form as literal "%FF" text, which would
    then be stored as if typed; refuse such a form whole instead, before any field is used."""

    def _parse_urlencoded(
        self, stream: IO[bytes], mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> Any:
        try:
            items = parse_qsl(stream.read().decode(), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise NotText() from None
        return stream, self.cls(items), self.cls()


class WeighinRequest(Request):
    """A request whose body limit follows the view (see allows_upload).

    The limit has to be known before anything reads the form, and CSRFProtect reads it in a
    before_request hook; routing has already happened by then, so the view is known.
    """

    form_data_parser_class = StrictFormDataParser

    @property
    def max_content_length(self) -> int | None:
        limit = upload_limit(self)
        return limit if limit is not None else super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value


def is_htmx() -> bool:
    """True when htmx made this request (and history restore did not)."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get(
        "HX-History-Restore-Request"
    )


def render_page_or_fragment(page: str, fragment: str, status: int = 200, **context):
    """Render the whole page for a normal request, only the fragment for an htmx one."""
    body = render_template(fragment if is_htmx() else page, **context)
    return body, status, {"Vary": "HX-Request"}


def safe_next(target: str | None) -> str | None:
    """A local path to go to after logging in, or None for anything that could leave the site."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@health_bp.get("/healthz")
def healthz():
    """200 when the database answers, 503 when it does not."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        db.session.rollback()
        return {"status": "error", "database": "unreachable"}, 503
    return {"status": "ok", "database": "ok"}


@shell_bp.get("/manifest.webmanifest")
def manifest():
    """The web app manifest: installed, Weigh-in opens on the dashboard in its own window."""
    from flask_babel import gettext as _

    from .i18n import html_lang

    def icon(filename: str, size: int, purpose: str = "any") -> dict:
        return {
            "src": url_for("static", filename=f"icons/{filename}"),
            "sizes": f"{size}x{size}",
            "type": "image/png",
            "purpose": purpose,
        }

    body = {
        "name": "Weigh-in",
        "short_name": "Weigh-in",
        "description": _("A weight log that reminds you when you have not weighed in for a while."),
        "lang": html_lang(),
        "id": url_for("tracking.dashboard"),
        "start_url": url_for("tracking.dashboard"),
        "scope": url_for("tracking.index"),
        "display": "standalone",
        "theme_color": THEME_COLOR,
        "background_color": BACKGROUND_LIGHT,
        "icons": [
            icon("icon-192.png", 192),
            icon("icon-512.png", 512),
            icon("icon-maskable-512.png", 512, "maskable"),
        ],
    }
    response = current_app.response_class(
        json.dumps(body, ensure_ascii=False, indent=2), mimetype="application/manifest+json"
    )
    response.vary.add("Accept-Language")
    return response


@shell_bp.get("/favicon.ico")
def favicon():
    """The favicon at the address browsers try before they read the page."""
    return current_app.send_static_file("icons/favicon.ico")


# Everything the pages load is this site's own (htmx is vendored, and neither it nor the templates
# use inline scripts, inline styles or eval); Pico's CSS draws its icons from data: URIs.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
HSTS = "max-age=31536000"


def _security_headers(response):
    """Headers every answer carries (docs/DECISIONS.md, Security): written here rather than with
    Flask-Talisman, because they are a handful of constants and the app already forces nothing
    else Talisman would (HTTPS redirects belong to the proxy)."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
    if current_app.config["SESSION_COOKIE_SECURE"]:
        headers.setdefault("Strict-Transport-Security", HSTS)
    # A logged-in browser's pages show personal data: no shared or disk cache may keep them.
    # Read from the session cookie, not current_user, so no answer waits on the database here.
    if request.endpoint != "static" and session.get("_user_id") and "Cache-Control" not in headers:
        headers["Cache-Control"] = "private, no-store"
    return response


def _user_zone():
    from flask_login import current_user

    from .timeutil import get_zone

    return get_zone(current_user.timezone if current_user.is_authenticated else "UTC")


def format_local_date(value, zone, locale: str | None = None) -> str:
    """A date in the given zone, as people write it: '12 Nov' (with the year if not this one),
    in the Babel locale given, else this request's."""
    from .timeutil import in_current_year

    local = value.astimezone(zone)
    return format_day(local.date(), with_year=not in_current_year(local, zone), locale=locale)


def local_date(value) -> str:
    """The template filter: a date in the viewer's time zone."""
    if value is None:
        return ""
    return format_local_date(value, _user_zone())


def local_datetime(value) -> str:
    """A date and time in the viewer's time zone."""
    if value is None:
        return ""
    return format_day_time(value.astimezone(_user_zone()))


def month_day_year(value) -> str:
    """The template filter: a calendar day with its year, e.g. '2 Dec 2026' or '2026년 12월 2일'."""
    return format_day(value) if value is not None else ""


def register_template_helpers(app: Flask) -> None:
    app.add_template_filter(month_day_year, "month_day_year")
    app.add_template_filter(local_date, "local_date")
    app.add_template_filter(local_datetime, "local_datetime")


class AsciiIntegerConverter(IntegerConverter):
    """`<int:...>` of ASCII digits only: werkzeug's \\d also takes "٣" (Arabic-Indic three)."""

    regex = r"[0-9]+"


def init_app(app: Flask) -> None:
    # Before any blueprint adds a rule, so every <int:...> in the app uses it.
    app.url_map.converters["int"] = AsciiIntegerConverter
    app.request_class = WeighinRequest
    app.register_blueprint(health_bp)
    app.register_blueprint(shell_bp)
    register_template_helpers(app)
    app.after_request(_security_headers)
