"""Error pages are friendly pages (or panels for htmx), never tracebacks."""

from __future__ import annotations

import pytest
from flask import abort
from sqlalchemy import text

from webapp.errors import CSRF_MESSAGE, MESSAGES
from webapp.extensions import db


@pytest.fixture
def failing_app(app):
    """The test app with a few views that fail on purpose."""

    def forbidden():
        abort(403)

    def bad_request():
        abort(400)

    def too_many():
        abort(429)

    def crash():
        raise RuntimeError("secret internal detail")

    def crash_after_query():
        db.session.execute(text("SELECT * FROM no_such_table"))

    for view in (forbidden, bad_request, too_many, crash, crash_after_query):
        app.add_url_rule(f"/_test/{view.__name__}", view.__name__, view, methods=["GET", "POST"])
    return app


def assert_friendly(response, code: int, message: str) -> str:
    body = response.get_data(as_text=True)
    assert response.status_code == code
    assert response.mimetype == "text/html"
    assert str(message) in body
    for leak in ("Traceback", "RuntimeError", "secret internal detail", "no_such_table", "werkzeug"):
        assert leak not in body
    return body


@pytest.mark.parametrize(
    ("path", "method", "code"),
    [
        ("/no/such/page", "GET", 404),
        ("/account/logout", "GET", 405),
        ("/_test/forbidden", "GET", 403),
        ("/_test/bad_request", "POST", 400),
        ("/_test/too_many", "GET", 429),
        ("/_test/crash", "GET", 500),
        ("/_test/crash_after_query", "POST", 500),
    ],
)
def test_error_pages_are_friendly(failing_app, path, method, code):
    client = failing_app.test_client()
    response = client.open(path, method=method)
    body = assert_friendly(response, code, MESSAGES[code])
    assert "<html" in body and "Back to Weigh-in" in body
    # The same error for htmx is a panel to swap, not a whole page.
    response = client.open(path, method=method, headers={"HX-Request": "true"})
    body = assert_friendly(response, code, MESSAGES[code])
    assert "<html" not in body and 'role="alert"' in body
    assert "HX-Request" in response.headers["Vary"]


def test_oversized_request_is_a_friendly_413(client):
    response = client.post(
        "/account/login", data={"email": "a@example.com", "password": "x" * (2 * 1024 * 1024)}
    )
    assert_friendly(response, 413, MESSAGES[413])


def test_405_keeps_the_allow_header(client):
    response = client.get("/account/logout")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_unhandled_error_is_logged(failing_app, caplog):
    failing_app.test_client().get("/_test/crash")
    assert any("unhandled error on GET /_test/crash" in r.getMessage() and r.exc_info for r in caplog.records)


def test_session_is_usable_after_a_failed_query(failing_app, client, auth):
    auth.register()
    assert client.post("/_test/crash_after_query").status_code == 500
    assert client.get("/dashboard").status_code == 200


def test_error_page_still_renders_when_the_database_is_what_failed(failing_app, client, auth):
    auth.register()
    with failing_app.app_context():
        # The layout needs the logged-in user from the database; take that away.
        db.session.execute(text("ALTER TABLE users RENAME TO users_gone"))
        db.session.commit()
    response = client.get("/_test/crash")
    body = assert_friendly(response, 500, MESSAGES[500])
    assert "Back to Weigh-in" in body


def test_rate_limited_login_is_a_page_with_a_wait(client, auth):
    auth.register()
    auth.logout()
    for _ in range(5):
        auth.login(password="wrong password")
    response = auth.login()
    assert_friendly(response, 429, "Try again in")


def test_csrf_failure_page(tmp_path):
    from tests.support import TEST_SECRET
    from webapp import create_app

    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": TEST_SECRET,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
        }
    )
    with app.app_context():
        db.create_all()
    response = app.test_client().post("/account/login", data={"email": "a@example.com", "password": "x"})
    assert_friendly(response, 400, CSRF_MESSAGE)
    with app.app_context():
        db.engine.dispose()
