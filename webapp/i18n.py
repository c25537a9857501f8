"""Languages: which locale a request or a user gets, and the page's `lang`.

The locale is the user's own setting, else the best match in the browser's Accept-Language,
else English. Code with no request (the stream's banner, mail) renders inside
`force_locale(user.locale)` instead, so it needs no selector.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from babel import support
from babel.core import Locale, UnknownLocaleError, get_global
from flask import Flask, has_request_context, request
from flask_babel import get_locale, get_translations
from flask_wtf import FlaskForm
from jinja2 import pass_context
from wtforms.i18n import messages_path

from .extensions import babel

log = logging.getLogger(__name__)

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
# English first: the fallback for a browser that asks for neither.
LANGUAGES = ("en", "ko")
LANGUAGE_NAMES = {"en": "English", "ko": "한국어"}
DEFAULT_LANGUAGE = "en"


def accept_language_locale() -> str:
    """The supported language the browser asks for first (Accept-Language), else English."""
    return request.accept_languages.best_match(LANGUAGES, default=DEFAULT_LANGUAGE)


# Where a country spans several zones, the one most of its people live in; elsewhere CLDR's own
# first zone for the country is the one (KR: Asia/Seoul, DE: Europe/Berlin).
PRIMARY_ZONES = {
    "US": "America/New_York",
    "CA": "America/Toronto",
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "RU": "Europe/Moscow",
    "MX": "America/Mexico_City",
    "ID": "Asia/Jakarta",
    "CN": "Asia/Shanghai",
    "ES": "Europe/Madrid",
    "PT": "Europe/Lisbon",
    "AR": "America/Argentina/Buenos_Aires",
    "KZ": "Asia/Almaty",
    "NZ": "Pacific/Auckland",
}


def zone_from_accept_language() -> str | None:
    """The time zone the browser's languages point at (ko-KR, or plain ko: Asia/Seoul), or None.

    The region of the first language tag that has one, else the region that language is most
    spoken in (CLDR's likely subtags). A guess for the sign-up form to show, never stored unseen.
    """
    if not has_request_context():
        return None
    zones = get_global("territory_zones")
    for tag, _quality in request.accept_languages:
        try:
            locale = Locale.parse(tag, sep="-")
        except (ValueError, TypeError, UnknownLocaleError):
            continue
        territory = locale.territory
        if territory is None:
            likely = get_global("likely_subtags").get(locale.language)
            territory = Locale.parse(likely).territory if likely else None
        if territory is None:
            continue
        if territory in PRIMARY_ZONES:
            return PRIMARY_ZONES[territory]
        if zones.get(territory):
            return zones[territory][0]
    return None


def _user_locale() -> str | None:
    from flask_login import current_user

    try:
        chosen = getattr(current_user, "locale", None) if current_user.is_authenticated else None
    except Exception:  # loading the user failed (the database is down): the error page still speaks
        return None
    return chosen if chosen in LANGUAGES else None


def language_of(user) -> str:
    """The language to write to this user in where no request says (mail): their setting, else English."""
    chosen = getattr(user, "locale", None)
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def banner_language(stored: str | None) -> str:
    """The language of a user's banner: their setting, else this request's language, else English.

    The stream renders the banner outside the request that opened it, so the stored setting
    (every sign-up stores one) is what keeps it in the user's language.
    """
    if stored is not None and stored in LANGUAGES:
        return stored
    if has_request_context():
        locale = get_locale()
        if locale is not None and locale.language in LANGUAGES:
            return locale.language
    return DEFAULT_LANGUAGE


def select_locale() -> str:
    """Flask-Babel's locale selector: the user's setting, else Accept-Language, else English.

    Outside a request (the CLI, the background loops) English, unless the caller forces a locale.
    """
    if not has_request_context():
        return DEFAULT_LANGUAGE
    return _user_locale() or accept_language_locale()


def html_lang() -> str:
    """The BCP 47 tag for `<html lang>`: the locale this response is rendered in."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT_LANGUAGE


@lru_cache(maxsize=len(LANGUAGES) + 1)
def _wtforms_catalogue(locale: str) -> support.NullTranslations:
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class _WTFormsMessages:
    """WTForms' own messages ("Not a valid choice.") in this request's language.

    Flask-WTF reads WTForms' catalogue from disk on every request that builds a form (about 5%
    of a dashboard's CPU, issue 16); the catalogue of a language never changes, so one is kept
    per language.
    """

    def gettext(self, string: str) -> str:
        locale = get_locale()
        return string if locale is None else _wtforms_catalogue(str(locale)).ugettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        locale = get_locale()
        if locale is None:
            return singular if n == 1 else plural
        return _wtforms_catalogue(str(locale)).ungettext(singular, plural, n)


_WTFORMS_MESSAGES = _WTFormsMessages()


class Form(FlaskForm):
    """The app's base form: Flask-WTF's, with WTForms' messages kept per language (above)."""

    class Meta:
        def get_translations(self, form):
            return _WTFORMS_MESSAGES


def _render_translations(context):
    # The catalogue this render started with (the context processor below), else this moment's:
    # a template rendered without render_template (the stream's banner) has none in its context.
    found = context.get("_translations")
    return found if found is not None else get_translations()


@pass_context
def _template_gettext(context, string: str) -> str:
    return _render_translations(context).ugettext(string)


@pass_context
def _template_ngettext(context, singular: str, plural: str, n: int) -> str:
    return _render_translations(context).ungettext(singular, plural, n)


def _vary_on_language(response):
    # An anonymous page's language follows Accept-Language, so a cache must keep one per language.
    if response.mimetype == "text/html":
        response.vary.add("Accept-Language")
    return response


def init_app(app: Flask) -> None:
    babel.init_app(
        app,
        default_locale=DEFAULT_LANGUAGE,
        default_translation_directories=str(TRANSLATIONS),
        locale_selector=select_locale,
    )
    # {% trans %} blocks are joined into one line, as babel.cfg extracts them.
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    # Flask-Babel's template gettext finds the request's catalogue through three context lookups
    # per string, and a dashboard has about fifty; render_template puts the catalogue in the
    # context once and the template's _() and ngettext() read it there.
    app.context_processor(lambda: {"_translations": get_translations()})
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]  # added by jinja2.ext.i18n
        gettext=_template_gettext, ngettext=_template_ngettext, newstyle=True
    )
    app.jinja_env.globals["html_lang"] = html_lang
    app.after_request(_vary_on_language)
    missing = [
        lang for lang in LANGUAGES[1:] if not (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo").exists()
    ]
    if missing:
        # The .mo files are built from the .po files by scripts/install, not kept in git.
        log.warning("no compiled catalogue for %s: run ./scripts/translations compile", ", ".join(missing))


def stored_locale(code: str | None) -> str:
    """The locale to render for a user with no request (banner, mail): theirs, else English."""
    return code if code in LANGUAGES else DEFAULT_LANGUAGE
