"""Importing a CSV file through the History page: upload, preview, confirm, and the bad cases."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from webapp.extensions import db
from webapp.models import OutboxEvent, PendingImport, PendingImportRow, User, WeightEntry
from webapp.timeutil import utcnow

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
OTHER = "bob@example.com"


@pytest.fixture
def ada(client, auth):
    auth.register()
    return auth


def upload(client, data: bytes | str, name="weights.csv", unit="kg", date_order="dmy", **headers):
    raw = data.encode() if isinstance(data, str) else data
    # Encoded here, in memory: the test client spools bodies over 500 KB to a file it never closes.
    boundary, body = encode_multipart(
        {"file": FileStorage(io.BytesIO(raw), filename=name), "unit": unit, "date_order": date_order}
    )
    return client.post(
        "/entries/import",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=headers,
    )


def preview_path(response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert re.fullmatch(r"/entries/import/[A-Za-z0-9_-]{43}", response.location)
    return response.location


def counts(page: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-count="(\w+)"><strong>(\d+)</strong>', page)}


def entries(email="ada@example.com") -> list[tuple[datetime, int, str]]:
    user = db.session.scalar(db.select(User).where(User.email == email))
    return [
        (e.measured_at, e.mass_g, e.note)
        for e in db.session.scalars(
            db.select(WeightEntry).where(WeightEntry.user_id == user.id).order_by(WeightEntry.measured_at)
        )
    ]


def add(app, grams, measured_at, email="ada@example.com", note=""):
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == email))
        db.session.add(WeightEntry(user_id=user.id, mass_g=grams, measured_at=measured_at, note=note))
        db.session.commit()


def staged_count(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(PendingImportRow))


def test_import_page_is_linked_from_history_and_settings(ada, client):
    assert "/entries/import" in client.get("/entries").get_data(as_text=True)
    assert "/entries/import" in client.get("/account/settings").get_data(as_text=True)
    page = client.get("/entries/import").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and "CSV file" in page


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.csv")))
def test_every_sample_file_previews_then_imports(app, ada, client, name):
    response = upload(client, (FIXTURES / name).read_bytes(), name=name, unit="lb" if "lb" in name else "kg")
    path = preview_path(response)
    page = client.get(path).get_data(as_text=True)
    found = counts(page)
    assert found["added"] >= 2 and found["refused"] == 0, page
    with app.app_context():
        assert entries() == []  # nothing saved before the click
    saved = client.post(path)
    assert saved.status_code == 302 and saved.location == "/entries"
    with app.app_context():
        assert len(entries()) == found["added"]
        assert db.session.scalar(db.select(db.func.count()).select_from(PendingImport)) == 0
    assert staged_count(app) == 0


def test_importing_old_history_tells_the_users_other_tabs(app, ada, client):
    """Not activity (old entries), but the entries changed: the user's own channel hears of it."""
    path = preview_path(upload(client, "date,weight\n2024-03-01T07:00:00Z,80\n"))
    assert client.post(path).status_code == 302
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.email == "ada@example.com"))
        assert user.last_weight_at is None
        kinds = db.session.scalars(db.select(OutboxEvent.kind).where(OutboxEvent.channel == user.channel))
        assert list(kinds) == ["entries"]


def test_preview_reports_duplicates_conflicts_and_refused_rows_with_line_numbers(app, ada, client):
    add(app, 80_000, datetime(2024, 3, 1, 7, 0, 0, 123456, tzinfo=UTC))  # the form keeps microseconds
    add(app, 81_000, datetime(2024, 3, 2, 7, 0, tzinfo=UTC))
    data = (
        "date,weight,note\n"
        "2024-03-01T07:00:00Z,80,same as an entry\n"  # 2: duplicate of the first entry
        "2024-03-02T07:00:00Z,82,\n"  # 3: conflict with the second
        "2024-03-03T07:00:00Z,0,\n"  # 4: refused
        "2024-03-04T07:00:00Z,79.5,new\n"  # 5: new
        "2024-03-04T07:00:00Z,79.5,again\n"  # 6: duplicate of line 5
        "2024-03-04T07:00:00Z,79.9,\n"  # 7: conflict with line 5
        "2024-03-05T07:00:00Z,abc,\n"  # 8: refused
    )
    path = preview_path(upload(client, data))
    page = client.get(path).get_data(as_text=True)
    assert counts(page) == {"added": 1, "duplicate": 2, "conflict": 2, "refused": 2}
    for text in (
        "line 3: an entry at that moment already has another weight",
        "line 4: weight 0 is below 20 kg",
        "line 7: an entry at that moment already has another weight",
        "line 8: weight &#34;abc&#34; is not a number",
    ):
        assert text in page
    client.post(path)
    with app.app_context():
        assert [(g, n) for _, g, n in entries()] == [(80_000, ""), (81_000, ""), (79_500, "new")]


def test_export_then_import_round_trips_notes_and_times(app, ada, client):
    moments = [utcnow().replace(microsecond=0) - timedelta(days=d, hours=3) for d in (30, 20, 10)]
    for moment, grams, note in zip(
        moments, (80_123, 79_456, 78_789), ("=1+1", 'a, "b"', "ünïcode"), strict=True
    ):
        add(app, grams, moment, note=note)
    exported = client.get("/export.csv").data
    with app.app_context():
        before = entries()
        user = db.session.scalar(db.select(User).where(User.email == "ada@example.com"))
        db.session.execute(db.delete(WeightEntry).where(WeightEntry.user_id == user.id))
        db.session.commit()
    path = preview_path(upload(client, exported, name="weighin.csv", unit="lb"))
    assert counts(client.get(path).get_data(as_text=True))["added"] == 3
    client.post(path)
    with app.app_context():
        assert entries() == before
    # Importing the same file again adds nothing: every row is a duplicate.
    path = preview_path(upload(client, exported))
    assert counts(client.get(path).get_data(as_text=True)) == {
        "added": 0,
        "duplicate": 3,
        "conflict": 0,
        "refused": 0,
    }


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "The file is empty."),
        (b"name,age\nada,36\n", "The first line does not match any format"),
        ("date,weight\n2024-03-01,caf\xe9\n".encode("latin-1"), "Line 2 is not UTF-8 text"),
        (b"date,weight\n" + b"9" * 10_000_000 + b"\n", "Line 2 is longer than 16 KiB"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text"),
    ],
)
def test_unreadable_files_get_a_message_and_store_nothing(app, ada, client, data, message):
    response = upload(client, data)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert staged_count(app) == 0
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(PendingImport)) == 0
        assert entries() == []


@pytest.mark.parametrize(
    "form, message",
    [
        ({"unit": "kg", "date_order": "dmy"}, "Choose a CSV file to import."),
        (
            {"file": (io.BytesIO(b"date,weight\n"), "w.csv"), "unit": "st", "date_order": "dmy"},
            "Choose kilograms (kg) or pounds (lb).",
        ),
        (
            {"file": (io.BytesIO(b"date,weight\n"), "w.csv"), "unit": "kg", "date_order": "ymd"},
            "Choose day/month/year or month/day/year.",
        ),
    ],
)
def test_bad_form_input_gets_a_message(app, ada, client, form, message):
    response = client.post("/entries/import", data=form, content_type="multipart/form-data")
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert staged_count(app) == 0


def test_upload_over_20_mb_gets_a_clear_413(app, ada, client):
    response = upload(client, b"x" * (20 * 1000 * 1000 + 1))
    assert response.status_code == 413
    assert "larger than 20 MB" in response.get_data(as_text=True)


def test_other_forms_keep_the_one_mebibyte_cap(ada, client):
    response = client.post("/entries", data={"weight": "70", "note": "x" * (1024 * 1024 + 1)})
    assert response.status_code == 413
    assert "That request is too large." in response.get_data(as_text=True)


def test_a_file_between_one_and_twenty_megabytes_is_accepted(app, ada, client):
    start = datetime(1990, 1, 1, tzinfo=UTC)
    rows = "".join(
        f"{(start + timedelta(hours=3 * i)).isoformat()},{70 + (i % 100) / 10}\n" for i in range(60_000)
    )
    data = "date,weight\n" + rows
    assert len(data) > 1024 * 1024
    path = preview_path(upload(client, data))
    assert counts(client.get(path).get_data(as_text=True))["added"] == 60_000
    client.post(path)
    with app.app_context():
        assert len(entries()) == 60_000


def test_nobody_reaches_another_users_import(app, client, auth):
    auth.register()
    path = preview_path(upload(client, "date,weight\n2024-03-01,80\n"))
    auth.logout()
    auth.register(OTHER)
    for method, url in (("get", path), ("post", path), ("post", path + "/cancel")):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response.location == "/entries/import"
    with app.app_context():
        assert entries() == [] and entries(OTHER) == []
    assert staged_count(app) == 1  # still waiting for its owner
    auth.logout()
    auth.login()
    assert client.post(path).status_code == 302
    with app.app_context():
        assert len(entries()) == 1


def test_confirming_twice_imports_once(app, ada, client):
    path = preview_path(upload(client, "date,weight\n2024-03-01,80\n"))
    client.post(path)
    second = client.post(path, follow_redirects=True)
    assert "no longer waiting" in second.get_data(as_text=True)
    with app.app_context():
        assert len(entries()) == 1


def test_cancel_saves_nothing(app, ada, client):
    path = preview_path(upload(client, "date,weight\n2024-03-01,80\n"))
    assert client.post(path + "/cancel").status_code == 302
    assert staged_count(app) == 0
    assert client.post(path).location == "/entries/import"
    with app.app_context():
        assert entries() == []


def test_a_preview_expires_after_an_hour(app, ada, client):
    path = preview_path(upload(client, "date,weight\n2024-03-01,80\n"))
    with app.app_context():
        db.session.execute(
            db.update(PendingImport).values(created_at=utcnow() - timedelta(hours=1, minutes=1))
        )
        db.session.commit()
    assert client.get(path).location == "/entries/import"
    upload(client, "date,weight\n2024-03-02,80\n")  # the next upload clears the expired one
    assert staged_count(app) == 1


@pytest.mark.parametrize("token", ["x", "a" * 65, "../../etc", "%00"])
def test_tampered_tokens_are_refused_quietly(ada, client, token):
    assert client.get(f"/entries/import/{token}").status_code in {302, 404}


def test_old_history_does_not_count_as_activity_but_a_new_weight_does(app, ada, client):
    with app.app_context():
        user = db.session.scalar(db.select(User))
        assert user.last_weight_at is None
        user.created_at = utcnow() - timedelta(days=2)
        db.session.commit()
    client.post(preview_path(upload(client, "date,weight\n2015-03-01,80\n2015-03-02,79\n")))
    with app.app_context():
        assert db.session.scalar(db.select(User.last_weight_at)) is None
    recent = (utcnow() - timedelta(minutes=5)).replace(microsecond=0).isoformat()
    client.post(preview_path(upload(client, f"date,weight\n{recent},78\n")))
    with app.app_context():
        assert db.session.scalar(db.select(User.last_weight_at)) is not None


def test_htmx_upload_redirects_to_the_preview_and_errors_swap_the_form(app, ada, client):
    response = upload(client, "date,weight\n2024-03-01,80\n", **{"HX-Request": "true"})
    assert response.status_code == 200
    assert re.fullmatch(r"/entries/import/[A-Za-z0-9_-]{43}", response.headers["HX-Redirect"])
    bad = upload(client, b"name,age\n", **{"HX-Request": "true"})
    body = bad.get_data(as_text=True)
    assert bad.status_code == 422 and body.lstrip().startswith('<div id="import-form">')
    assert "The first line does not match" in body and "<html" not in body


def test_the_progress_fragment_shows_an_upload_being_read(app, ada, client):
    assert client.get("/entries/import/progress").get_data(as_text=True).strip() == ""
    with app.app_context():
        user = db.session.scalar(db.select(User))
        db.session.add(
            PendingImport(
                token="t",
                user_id=user.id,
                file_format="plain",
                unit="kg",
                ready=False,
                percent_read=40,
                lines_read=12000,
            )
        )
        db.session.commit()
    page = client.get("/entries/import/progress").get_data(as_text=True)
    assert "Reading your file: 40% (12000 lines so far)" in page and 'value="40"' in page
    assert client.get("/entries/import/t").location == "/entries/import"  # not previewable yet
    assert 'hx-get="/entries/import/progress"' in client.get("/entries/import").get_data(as_text=True)


def test_a_large_upload_commits_its_progress_and_ends_ready(app, ada, client):
    rows = "".join(f"2001-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z,{70 + i % 7}\n" for i in range(3600)) * 2
    path = preview_path(upload(client, "date,weight\n" + rows))
    with app.app_context():
        pending = db.session.scalar(db.select(PendingImport))
        assert (pending.ready, pending.percent_read) == (True, 100)
        assert pending.lines_read >= 5000  # committed at least once on the way
    assert counts(client.get(path).get_data(as_text=True))["duplicate"] == 3600
