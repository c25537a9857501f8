"""Languages: which locale a request or a user gets, and the page's `lang`.

The locale is the user's own setting, else the best match in the browser's Accept-Language,
else English. Code with no request (the stream's banner, mail) renders inside
`force_locale(user.locale)` instead, so it needs no selector.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, has_request_context, request
from flask_babel import get_locale

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


def _user_locale() -> str | None:
    from flask_login import current_user

    try:
        chosen = getattr(current_user, "locale", None) if current_user.is_authenticated else None
    except Exception:  # loading the user failed (the database is down): the error page still speaks
        return None
    return chosen if chosen in LANGUAGES else None


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
    app.jinja_env.globals["html_lang"] = html_lang
    app.after_request(_vary_on_language)
    missing = [
        lang for lang in LANGUAGES[1:] if not (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo").exists()
    ]
    if missing:
        # The .mo files are built from the .po files by scripts/install, not kept in git.
        log.warning("no compiled catalogue for %s: run ./scripts/translations compile", ", ".join(missing))
