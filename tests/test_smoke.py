def test_signup_login_dashboard(client, auth):
    response = auth.register()
    assert response.status_code == 302
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert b"Hello, ada" in page.data
    assert b'hx-sse:connect="/events"' in page.data


def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok", "database": "ok"}
