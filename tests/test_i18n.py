"""Languages: the catalogue covers every string, and a page speaks the language it is asked for."""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po

from .support import ROOT, translations_script

CATALOGUES = {"ko": ROOT / "translations" / "ko" / "LC_MESSAGES" / "messages.po"}
KOREAN_BROWSER = "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"


def _read(path):
    with open(path, "rb") as file:
        return read_po(file)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Every string the code and the templates mark for translation, extracted as pybabel does."""
    pot = tmp_path_factory.mktemp("i18n") / "messages.pot"
    translations_script("extract", str(pot))
    return _read(pot)


@pytest.mark.parametrize("language", sorted(CATALOGUES))
def test_catalogue_has_every_string_translated(template, language):
    catalogue = _read(CATALOGUES[language])
    problems = []
    for message in template:
        if not message.id:
            continue
        entry = catalogue.get(message.id, message.context)
        label = message.id if isinstance(message.id, str) else message.id[0]
        if entry is None:
            problems.append(f"missing: {label!r}")
            continue
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if not all(strings):
            problems.append(f"not translated: {label!r}")
        if entry.fuzzy:
            problems.append(f"fuzzy (check it, then drop the flag): {label!r}")
    known = {(message.id, message.context) for message in template if message.id}
    for entry in catalogue:
        if entry.id and (entry.id, entry.context) not in known:
            problems.append(f"no longer in the code: {entry.id!r}")
    for entry, errors in catalogue.check():
        problems.extend(f"{entry.id!r}: {error}" for error in errors)
    assert not problems, (
        f"translations/{language} is out of step with the code; run ./scripts/translations update "
        "and fill in every empty msgstr:\n" + "\n".join(problems)
    )


def test_anonymous_page_follows_accept_language(client):
    page = client.get("/account/login", headers={"Accept-Language": KOREAN_BROWSER})
    html = page.get_data(as_text=True)
    assert '<html lang="ko">' in html
    assert "본문으로 건너뛰기" in html
    assert "Accept-Language" in page.headers["Vary"]


@pytest.mark.parametrize("header", [None, "fr-FR,fr;q=0.9", "en-GB,en;q=0.9,ko;q=0.5", "*", "ko;q=x"])
def test_other_browsers_get_english(client, header):
    page = client.get("/account/login", headers={"Accept-Language": header} if header else {})
    html = page.get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "Skip to content" in html


def test_sign_up_errors_speak_korean(client):
    page = client.post(
        "/account/signup",
        data={"email": "not an address", "password": "short"},
        headers={"Accept-Language": KOREAN_BROWSER},
    )
    html = page.get_data(as_text=True)
    assert page.status_code == 422
    assert "올바른 이메일 주소를 입력하세요" in html
    assert "8자 이상 입력하세요." in html
    assert ">비밀번호</label>" in html


def test_login_required_message_speaks_korean(client):
    page = client.get("/dashboard", headers={"Accept-Language": KOREAN_BROWSER}, follow_redirects=True)
    assert "이 페이지를 보려면 로그인하세요." in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "header, zone",
    [
        ("ko-KR,ko;q=0.9", "Asia/Seoul"),
        ("ko", "Asia/Seoul"),
        ("de-DE", "Europe/Berlin"),
        ("en-US", "America/New_York"),
    ],
)
def test_sign_up_prefills_the_zone_from_the_browser(client, header, zone):
    html = client.get("/account/signup", headers={"Accept-Language": header}).get_data(as_text=True)
    assert f'<option selected value="{zone}">' in html


def test_sign_up_keeps_the_zone_and_language_the_person_confirmed(client, auth, app):
    response = client.post(
        "/account/signup",
        data={"email": "min@example.com", "password": "correct horse", "timezone": "Asia/Seoul"},
        headers={"Accept-Language": KOREAN_BROWSER},
    )
    assert response.status_code == 302
    with app.app_context():
        user = auth.user("min@example.com")
        assert (user.timezone, user.locale) == ("Asia/Seoul", "ko")
    # The setting now wins over the browser.
    page = client.get("/account/settings", headers={"Accept-Language": "en-US"})
    assert '<html lang="ko">' in page.get_data(as_text=True)


def test_sign_up_refuses_an_unknown_zone(client):
    page = client.post(
        "/account/signup",
        data={"email": "min@example.com", "password": "correct horse", "timezone": "Mars/Olympus"},
    )
    assert page.status_code == 422
    assert "Choose a time zone from the list." in page.get_data(as_text=True)


def test_language_setting_switches_the_pages(client, auth, app):
    auth.register()
    response = client.post(
        "/account/settings",
        data={
            "display_name": "",
            "unit": "kg",
            "timezone": "Asia/Seoul",
            "locale": "ko",
            "reminders_enabled": "y",
        },
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert '<html lang="ko">' in html
    assert "설정을 저장했습니다." in html
    bad = client.post("/account/settings", data={"unit": "kg", "timezone": "UTC", "locale": "xx"})
    assert bad.status_code == 422


def _korean_user(client, auth, app):
    client.post(
        "/account/signup",
        data={"email": "min@example.com", "password": "correct horse", "timezone": "Asia/Seoul"},
        headers={"Accept-Language": KOREAN_BROWSER},
    )


def test_dashboard_speaks_korean_with_korean_dates(client, auth, app):
    _korean_user(client, auth, app)
    empty = client.get("/dashboard").get_data(as_text=True)
    assert "체중 기록하기" in empty
    assert "아직 기록이 없습니다." in empty
    bad = client.post("/entries", data={"weight": "-3"})
    assert bad.status_code == 422
    assert "체중은 음수일 수 없습니다." in bad.get_data(as_text=True)
    saved = client.post(
        "/entries", data={"weight": "72,5", "measured_at": "2026-12-02T07:00"}, follow_redirects=True
    )
    html = saved.get_data(as_text=True)
    assert "기록했습니다: 72.5 kg" in html
    assert "12월 2일 07:00" in html  # the entry's time in the table, in Korean order
    assert "Latest" not in html and "Recent entries" not in html


def test_admin_page_and_error_pages_speak_korean(client, auth, app):
    _korean_user(client, auth, app)
    auth.make_admin("min@example.com")
    with app.app_context():
        from .support import add_user

        add_user("quiet@example.com", days_ago=30)
    html = client.get("/admin/").get_data(as_text=True)
    assert "<h1>비활성 사용자</h1>" in html
    assert "지금 알림 보내기" in html and "30일 이상 비활성" not in html
    for english in ("Inactive users", "Remind now", "Last weight", ">never<", "Apply"):
        assert english not in html
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert "여기에는 아무것도 없습니다." in missing.get_data(as_text=True)


def test_wtforms_own_messages_speak_the_requests_language(app):
    """The few validators without a message of ours use WTForms' own catalogue of the request's
    language, kept once per language (webapp.i18n.Form): English and Korean alternate correctly."""
    from wtforms import IntegerField, StringField
    from wtforms.validators import DataRequired

    from webapp.i18n import Form

    class Probe(Form):
        class Meta:
            csrf = False

        name = StringField(validators=[DataRequired()])
        count = IntegerField()

    expected = {
        "ko": {"name": ["이 항목은 필수입니다."], "count": ["올바르지 않은 정수 값입니다."]},
        "en": {"name": ["This field is required."], "count": ["Not a valid integer value."]},
    }
    for language in ("ko", "en", "ko"):
        headers = {"Accept-Language": language}
        with app.test_request_context(method="POST", data={"count": "x"}, headers=headers):
            form = Probe()
            assert not form.validate()
            assert form.errors == expected[language]


@pytest.mark.parametrize(
    "header, heading, button",
    [
        ("en-US", "A weight log that reminds you", "Create an account"),
        (KOREAN_BROWSER, "체중 기록장", "계정 만들기"),
    ],
)
def test_the_front_page_says_what_weigh_in_is(client, auth, header, heading, button):
    page = client.get("/", headers={"Accept-Language": header})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert heading in html and button in html
    auth.register()
    assert client.get("/").location.endswith("/dashboard")


def test_an_idle_users_changes_say_up_to_which_day(client, auth):
    from datetime import timedelta

    from webapp.timeutil import utcnow

    auth.register()
    then = (utcnow() - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M")
    client.post("/entries", data={"weight": "72.5", "measured_at": then})
    html = client.get("/dashboard").get_data(as_text=True)
    assert 'id="change-as-of">up to your last weight, on ' in html
    # The form's own "now", in the user's zone: a weight today brings the changes up to date.
    now = re.search(r'name="measured_at_default" type="hidden" value="([^"]+)"', html).group(1)
    client.post("/entries", data={"weight": "72.4", "measured_at": now, "measured_at_default": now})
    assert 'id="change-as-of"' not in client.get("/dashboard").get_data(as_text=True)


def test_the_latest_card_shows_the_entry_as_the_table_does(client, auth):
    auth.register()
    page = client.get("/dashboard").get_data(as_text=True)
    now = re.search(r'name="measured_at_default" type="hidden" value="([^"]+)"', page).group(1)
    client.post("/entries", data={"weight": "79.25", "measured_at": now, "measured_at_default": now})
    html = client.get("/dashboard").get_data(as_text=True)
    card = html[html.index('id="stat-latest"') : html.index('id="stat-trend"')]
    assert "79.25 kg" in card
    assert '<td class="num">79.25 kg</td>' in html
