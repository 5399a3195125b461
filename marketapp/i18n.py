"""Languages: Russian and English; the Bitrix24 ``LANG`` of the page or event picks."""

from __future__ import annotations

from flask import Flask, g, has_request_context, request
from flask_babel import Babel, get_locale

LANGUAGES = ("en", "ru")
# Bitrix24 UI languages whose users read Russian better than English.
_RUSSIAN_READERS = {"ru", "ua", "by", "kz"}


def normalize(lang: str | None) -> str:
    """Map a Bitrix24 ``LANG``/``LANGUAGE_ID`` to a language we ship."""
    code = (lang or "").strip().lower()[:2]
    return "ru" if code in _RUSSIAN_READERS else "en"


def select_locale() -> str:
    if "language" in g:
        return str(g.language)
    if has_request_context() and request.args.get("LANG"):
        return normalize(request.args["LANG"])
    if has_request_context():
        return request.accept_languages.best_match(LANGUAGES) or "en"
    return "en"


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_translation_directories="translations")
    app.context_processor(lambda: {"html_lang": str(get_locale() or "en")})
