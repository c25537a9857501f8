"""Security properties of the whole app: cookie flags, CSRF on every POST route, no open redirects."""

from __future__ import annotations

import re

import pytest

from webapp import create_app
from webapp.errors import CSRF_MESSAGE
from webapp.extensions import db
from webapp.models import User
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
                converter = type(rule._converters[name]).__name__.replace("Converter", "").lower()
                values[name] = samples.get(
                    {"integer": "int", "unicode": "string"}.get(converter, converter), "x"
                )
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
    with app.app_context():
        db.engine.dispose()


def test_security_headers(client):
    response = client.get("/account/login")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


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
