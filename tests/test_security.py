"""Security properties of the whole app: who may reach each route (AUTHORIZATION), CSRF on every
POST route, cookie flags, no open redirects."""

from __future__ import annotations

import io
import re
from urllib.parse import urlsplit

import pytest
from werkzeug.routing import IntegerConverter

from webapp import create_app
from webapp.errors import CSRF_MESSAGE
from webapp.extensions import db
from webapp.models import AdminAction, Reminder, User, WeightEntry
from webapp.timeutil import utcnow
from webapp.web import safe_next

from .support import FAST_HASH, TEST_SECRET, add_user, log_in_client

PASSWORD = "correct horse"


@pytest.fixture
def csrf_app(csrf_app):
    """The CSRF-checking app with an admin, so every route (admin ones too) can be reached."""
    with csrf_app.app_context():
        add_user("ada@example.com", admin=True, password=PASSWORD)
    return csrf_app


def csrf_token_from(page: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


def logged_in_client(app):
    client = app.test_client()
    with app.app_context():
        user_id = db.session.scalar(db.select(User.id).where(User.email == "ada@example.com"))
    log_in_client(client, app, user_id)
    return client


def post_rules(app):
    """Every URL rule that accepts POST (or another state-changing method), with sample arguments."""
    samples = {"int": 1, "string": "x", "path": "x", "uuid": "00000000-0000-0000-0000-000000000000"}
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}):
            values = {}
            for name in rule.arguments:
                converter_obj = rule._converters[name]
                converter = type(converter_obj).__name__.replace("Converter", "").lower()
                if isinstance(converter_obj, IntegerConverter):  # the app's ASCII-digits one too
                    converter = "int"
                values[name] = samples.get({"unicode": "string"}.get(converter, converter), "x")
            found.append((rule.endpoint, method, values))
    return found


# The POST routes that take no CSRF token, each with why. A new one needs a reason here.
CSRF_EXEMPT = {
    # RFC 8058 one-click unsubscribe: the mail program POSTs with no session; the signed token in
    # the URL authorizes it, and it can only turn that user's reminder emails off
    # (tests/test_unsubscribe.py posts it without a session).
    "reminders.unsubscribe",
}


def test_csrf_exemptions_are_exactly_the_documented_ones(csrf_app):
    from webapp.extensions import csrf

    exempt = {view.rsplit(".", 1)[-1] for view in csrf._exempt_views}
    endpoints = {name.rsplit(".", 1)[-1] for name in CSRF_EXEMPT}
    assert exempt == endpoints and not csrf._exempt_blueprints


def test_there_are_post_routes_to_check(csrf_app):
    endpoints = {endpoint for endpoint, _, _ in post_rules(csrf_app)}
    assert {"accounts.signup", "accounts.login", "accounts.logout", "accounts.settings"} <= endpoints


def test_every_post_route_refuses_a_request_without_csrf_token(csrf_app):
    client = logged_in_client(csrf_app)
    failures = []
    for endpoint, method, values in post_rules(csrf_app):
        if endpoint in CSRF_EXEMPT:
            continue
        with csrf_app.test_request_context():
            from flask import url_for

            url = url_for(endpoint, **values)
        for headers in ({}, {"HX-Request": "true"}, {"X-CSRFToken": "forged"}):
            response = client.open(
                url, method=method, data={"csrf_token": "forged"} if not headers else {}, headers=headers
            )
            body = response.get_data(as_text=True)
            if response.status_code != 400 or str(CSRF_MESSAGE) not in body:
                failures.append((endpoint, method, headers, response.status_code))
    assert not failures, f"POST routes that did not refuse a missing or forged CSRF token: {failures}"


def test_anonymous_post_without_token_is_refused_with_a_clear_page(csrf_app):
    response = csrf_app.test_client().post(
        "/account/signup", data={"email": "x@example.com", "password": PASSWORD}
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert str(CSRF_MESSAGE) in body and "<html" in body and "Traceback" not in body
    with csrf_app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == 1


def test_form_token_and_htmx_header_token_are_accepted(csrf_app):
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/account/login").get_data(as_text=True))
    response = client.post(
        "/account/login", data={"csrf_token": token, "email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302
    # htmx sends the token from <body hx-headers:inherited> as X-CSRFToken.
    page = client.get("/account/settings").get_data(as_text=True)
    header_token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    response = client.post("/account/logout", headers={"X-CSRFToken": header_token, "HX-Request": "true"})
    assert response.status_code == 302


def test_logout_button_carries_a_token(csrf_app):
    page = logged_in_client(csrf_app).get("/account/settings").get_data(as_text=True)
    form = re.search(r'<form method="post" action="/account/logout".*?</form>', page, re.S).group(0)
    assert 'name="csrf_token"' in form


# --- cookies ----------------------------------------------------------------------------------


def _cookie(response, name):
    return next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{name}="))


def test_session_and_remember_cookies_are_httponly_and_lax(client, auth):
    auth.register()
    auth.logout()
    response = auth.login(remember="y")
    for name in ("session", "remember_token"):
        cookie = _cookie(response, name)
        assert "HttpOnly" in cookie, cookie
        assert "SameSite=Lax" in cookie, cookie
        assert "Secure" not in cookie, cookie


def test_secure_cookies_when_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "1")
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "WTF_CSRF_ENABLED": False,
            "PASSWORD_HASH_METHOD": FAST_HASH,
        }
    )
    with app.app_context():
        db.create_all()
    client = app.test_client()
    client.post("/account/signup", data={"email": "ada@example.com", "password": PASSWORD})
    client.post("/account/logout")
    response = client.post(
        "/account/login",
        data={"email": "ada@example.com", "password": PASSWORD, "remember": "y"},
        base_url="https://localhost",
    )
    for name in ("session", "remember_token"):
        cookie = _cookie(response, name)
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Behind HTTPS the browser is told to stay on it.
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    with app.app_context():
        db.engine.dispose()


def test_security_headers(client):
    response = client.get("/account/login")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "camera=()" in response.headers["Permissions-Policy"]
    # Without SESSION_COOKIE_SECURE the site may be plain HTTP (the embedded default): no HSTS.
    assert "Strict-Transport-Security" not in response.headers


def test_a_strict_content_security_policy_on_every_page(client, auth):
    auth.register()
    for path in ("/account/login", "/dashboard", "/account/settings", "/entries"):
        policy = client.get(path).headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'self'"
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
        assert "unsafe" not in policy


def test_pages_with_personal_data_are_not_cached(client, auth):
    assert "no-store" not in client.get("/account/login").headers.get("Cache-Control", "")
    auth.register()
    for path in ("/dashboard", "/account/settings", "/entries", "/export.csv"):
        cache = client.get(path).headers["Cache-Control"]
        assert "no-store" in cache and "public" not in cache, (path, cache)
    # Static files stay cacheable for everyone.
    static = client.get("/static/vendor/htmx-4.0.1.min.js")
    static.close()
    assert "no-store" not in static.headers.get("Cache-Control", "")


# --- open redirects ---------------------------------------------------------------------------

HOSTILE_NEXT = [
    "//evil.com",
    "///evil.com",
    "////evil.com/path",
    "https://evil.com",
    "http://evil.com/dashboard",
    "HTTPS://EVIL.COM",
    "http:evil.com",
    "https:/evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "\\/evil.com",
    "/\\/evil.com",
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.com",
    "%2f%2fevil.com",
    "evil.com",
    "dashboard",
    " //evil.com",
    "\t//evil.com",
    "/\t/evil.com",
    "/\n/evil.com",
    "/dashboard\r\nSet-Cookie: pwned=1",
    "/dashboard\nLocation: https://evil.com",
    "/\x00/evil.com",
    "//evil.com@localhost",
    "http://localhost@evil.com",
    "",
]


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_safe_next_refuses_anything_that_could_leave_the_site(target):
    assert safe_next(target) is None


@pytest.mark.parametrize(
    "target", ["/dashboard", "/account/settings?tab=units", "/entries?page=2#top", "/%2F%2Fevil.com"]
)
def test_safe_next_keeps_local_paths(target):
    assert safe_next(target) == target


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_login_never_redirects_off_site(client, auth, target):
    auth.register()
    auth.logout()
    response = client.post(
        "/account/login",
        query_string={"next": target},
        data={"email": "ada@example.com", "password": PASSWORD},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    # And the login form does not carry the hostile value along.
    auth.logout()
    page = client.get("/account/login", query_string={"next": target}).get_data(as_text=True)
    assert "evil" not in page


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_logged_in_visit_to_login_never_redirects_off_site(client, auth, target):
    auth.register()
    response = client.get("/account/login", query_string={"next": target})
    assert response.headers["Location"] == "/dashboard"


# --- who may reach each route -----------------------------------------------------------------

# The authorization table: every route the app serves, by endpoint, with what each kind of visitor
# gets from it. test_every_route_is_in_the_authorization_table fails until a new route is added
# here. Add a new route as one line: copy the line of a route that works the same way.
#
# A cell is "login" (redirected to the login page), "ok" (let in: any answer below 500 but a
# redirect to log in, 401, 403 or 404; a form posted empty gets 422, a made-up token 400), or an
# exact status such as 403 or 404. Columns: anonymous; a logged-in
# user who owns the object in the URL; another logged-in user; an admin who owns nothing in the
# URL. Every POST is also in the CSRF check above (test_every_post_route_refuses_...).
ANON, USER, OTHER_USER, ADMIN = "anonymous", "user", "other user", "admin"
PUBLIC = {ANON: "ok", USER: "ok", OTHER_USER: "ok", ADMIN: "ok"}
LOGGED_IN = {ANON: "login", USER: "ok", OTHER_USER: "ok", ADMIN: "ok"}
OWNER_ONLY = {ANON: "login", USER: "ok", OTHER_USER: 404, ADMIN: 404}  # someone else's: not found
ADMINS_ONLY = {ANON: "login", USER: 403, OTHER_USER: 403, ADMIN: "ok"}
STREAM = {ANON: 401, USER: "ok", OTHER_USER: "ok", ADMIN: "ok"}  # polling transports: no login page

AUTHORIZATION = {
    "static": PUBLIC,
    "health.healthz": PUBLIC,
    "shell.manifest": PUBLIC,  # what makes the site installable, and the favicon browsers ask for
    "shell.favicon": PUBLIC,
    "tracking.index": PUBLIC,  # what Weigh-in is for a visitor; the dashboard for a user
    # accounts: signing up and in is for anyone; a signed link in an email needs no session
    "accounts.signup": PUBLIC,
    "accounts.login": PUBLIC,
    "accounts.forgot_password": PUBLIC,
    "accounts.reset_password": PUBLIC,
    "accounts.confirm_email": PUBLIC,
    # logging out always ends on the login page, and without a session it is harmless
    "accounts.logout": {ANON: "login", USER: "login", OTHER_USER: "login", ADMIN: "login"},
    "accounts.settings": LOGGED_IN,
    "accounts.change_email": LOGGED_IN,
    "accounts.change_password": LOGGED_IN,
    "accounts.delete_account": LOGGED_IN,
    "accounts.export_data": LOGGED_IN,
    "accounts.logout_everywhere": LOGGED_IN,
    # tracking: a user's own log
    "tracking.dashboard": LOGGED_IN,
    "tracking.dashboard_summary": LOGGED_IN,
    "tracking.add_entry": LOGGED_IN,
    "tracking.history": LOGGED_IN,
    "tracking.goal": LOGGED_IN,
    "tracking.export_csv": LOGGED_IN,
    "tracking.import_upload": LOGGED_IN,
    "tracking.import_progress": LOGGED_IN,
    "tracking.edit_entry": OWNER_ONLY,
    "tracking.delete_entry": OWNER_ONLY,
    # someone else's import is "no longer waiting": sent back to the upload form, nothing imported
    "tracking.import_preview": {**OWNER_ONLY, OTHER_USER: "ok", ADMIN: "ok"},
    "tracking.import_cancel": {**OWNER_ONLY, OTHER_USER: "ok", ADMIN: "ok"},
    # reminders
    "reminders.dismiss_banner": LOGGED_IN,
    "reminders.unsubscribe": PUBLIC,  # the signed token in the URL is the authorization
    # the live path: /events answers 204 (stop retrying) without a session, the others 401
    "events.stream": {**STREAM, ANON: 204},
    "events_fallback.area": STREAM,
    "events_fallback.wait": STREAM,
    # a plain GET without the Upgrade headers is a client error for anyone; the handshake itself
    # is refused without a session (tests/test_fallback_transports.py)
    "events_fallback.websocket": {ANON: 400, USER: 400, OTHER_USER: 400, ADMIN: 400},
    # admin
    "admin.inactive_users": ADMINS_ONLY,
    "admin.live": ADMINS_ONLY,
    "admin.export_csv": ADMINS_ONLY,
    "admin.admins": ADMINS_ONLY,
    "admin.grant_admin": ADMINS_ONLY,
    "admin.remind": ADMINS_ONLY,
    "admin.remove_admin": ADMINS_ONLY,
}


def _route_methods(app) -> list[tuple[str, str]]:
    """Every (endpoint, GET or POST) the app serves; deleting the owner's entry comes last."""
    return sorted(
        (
            (rule.endpoint, method)
            for rule in app.url_map.iter_rules()
            for method in (rule.methods or set()) & {"GET", "POST"}
        ),
        key=lambda pair: (pair == ("tracking.delete_entry", "POST"), pair),
    )


def test_every_route_is_in_the_authorization_table(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert sorted(endpoints - AUTHORIZATION.keys()) == [], "add these routes to AUTHORIZATION"
    assert sorted(AUTHORIZATION.keys() - endpoints) == [], (
        "these routes are gone: drop them from AUTHORIZATION"
    )


def _answered_as(response, expected: str | int) -> bool:
    if isinstance(expected, int):
        return response.status_code == expected
    to_login = response.status_code in (301, 302, 303) and response.location.startswith("/account/login")
    if expected == "login":
        return to_login
    return not to_login and response.status_code not in (401, 403, 404) and response.status_code < 500


def _seed(app, client) -> dict:
    """The owner's entry and pending import, another user and an admin; the URL values for each rule."""
    with app.app_context():
        owner = add_user("owner@example.com")
        other = add_user("other@example.com")
        admin = add_user("boss@example.com", admin=True)
        db.session.add(WeightEntry(user_id=owner.id, measured_at=utcnow(), mass_g=72_000, note="mine"))
        db.session.commit()
        entry_id = db.session.scalar(db.select(WeightEntry.id))
        ids = {OWNER: owner.id, OTHER_USER: other.id, ADMIN: admin.id}
    log_in_client(client, app, ids[OWNER])
    upload = client.post(
        "/entries/import",
        data={
            "file": (io.BytesIO(b"date,weight\n2024-03-01,80\n"), "w.csv"),
            "unit": "kg",
            "date_order": "dmy",
        },
    )
    token = upload.location.rsplit("/", 1)[-1]
    client.post("/account/logout")
    return {"ids": ids, "values": {"entry_id": entry_id, "token": token, "user_id": ids[OTHER_USER]}}


OWNER = USER
STATIC_FILE = "css/app.css"


@pytest.mark.parametrize("role", [ANON, USER, OTHER_USER, ADMIN])
def test_each_route_answers_each_visitor_as_the_table_says(app, role):
    from flask import url_for

    client = app.test_client()
    seeded = _seed(app, client)
    wrong = []
    for endpoint, method in _route_methods(app):
        rule = next(rule for rule in app.url_map.iter_rules() if rule.endpoint == endpoint)
        values = {name: seeded["values"].get(name, "not-a-real-token") for name in rule.arguments}
        if endpoint == "static":
            values = {"filename": STATIC_FILE}
        with app.test_request_context():
            url = urlsplit(url_for(endpoint, **values)).path  # the websocket rule builds ws://
        visitor = app.test_client()
        if role != ANON:
            log_in_client(visitor, app, seeded["ids"][role])
        response = visitor.open(url, method=method)
        expected = AUTHORIZATION[endpoint][role]
        if not _answered_as(response, expected):
            wrong.append((method, url, expected, response.status_code, response.location))
        response.close()
    assert not wrong, f"routes that did not answer {role} as AUTHORIZATION says: {wrong}"
    if role != ADMIN:
        with app.app_context():  # and nobody but an admin made an admin action or a reminder
            assert db.session.scalar(db.select(db.func.count()).select_from(AdminAction)) == 0
            assert db.session.scalar(db.select(db.func.count()).select_from(Reminder)) == 0
