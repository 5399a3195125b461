"""Russian catalog: complete, placeholders intact, compiled, in sync with the code and in use."""

from __future__ import annotations

import re
from collections import Counter
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask_babel import force_locale, gettext

from marketapp.actions.base import skipped
from marketapp.i18n import normalize

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "marketapp" / "translations"
PO = TRANSLATIONS / "ru" / "LC_MESSAGES" / "messages.po"
MO = TRANSLATIONS / "ru" / "LC_MESSAGES" / "messages.mo"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdifr]")


def _load_po() -> Catalog:
    with PO.open("rb") as f:
        return read_po(f, locale="ru")


def _entries(catalog: Catalog) -> dict[str, str]:
    return {str(m.id): str(m.string) for m in catalog if m.id}


def _placeholders(text: str) -> Counter[str]:
    return Counter(PLACEHOLDER.findall(text))


def test_every_message_has_a_russian_translation_with_the_same_placeholders() -> None:
    catalog = _load_po()
    messages = [m for m in catalog if m.id]
    assert len(messages) > 40
    problems = []
    for m in messages:
        assert isinstance(m.id, str), f"no plural messages expected: {m.id!r}"
        if not m.string or not str(m.string).strip():
            problems.append(f"untranslated: {m.id!r}")
        elif m.fuzzy:
            problems.append(f"fuzzy: {m.id!r}")
        elif _placeholders(m.id) != _placeholders(str(m.string)):
            problems.append(f"placeholders differ: {m.id!r} -> {m.string!r}")
        elif m.id == m.string and PLACEHOLDER.sub("", m.id).strip(" .:"):
            problems.append(f"copied, not translated: {m.id!r}")
    assert not problems, "\n".join(problems)
    assert not [m for m in catalog.obsolete.values()], (
        "obsolete (#~) entries: run make translations"
    )


def test_compiled_catalog_is_up_to_date() -> None:
    fresh = BytesIO()
    write_mo(fresh, _load_po())
    fresh.seek(0)
    with MO.open("rb") as f:
        committed = read_mo(f)
    assert _entries(committed) == _entries(read_mo(fresh)), "run make translations"


def test_catalog_covers_every_string_in_the_code() -> None:
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = {
        message if isinstance(message, str) else message[0]
        for filename, _lineno, message, _comments, _context in extract_from_dir(
            ROOT, method_map, options_map, keywords=KEYWORDS
        )
        if not filename.startswith("marketapp/devportal/")
    }
    assert found, "extraction found nothing: is babel.cfg right?"
    assert found == set(_entries(_load_po())), "run make translations and translate new strings"


@pytest.mark.parametrize(
    ("lang", "title", "text"),
    [
        ("ru", "Умные сценарии", "Это приложение работает внутри Битрикс24"),
        ("en", "Smart scenarios", "This application runs inside Bitrix24"),
    ],
)
def test_outside_page_follows_lang(app: Flask, lang: str, title: str, text: str) -> None:
    resp = app.test_client().get(f"/?LANG={lang}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert f"<h1>{title}</h1>" in page
    assert text in page


def test_outside_page_without_lang_uses_accept_language(app: Flask) -> None:
    resp = app.test_client().get("/", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert "Умные сценарии" in resp.get_data(as_text=True)


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("ru", "ru"), ("ua", "ru"), ("by", "ru"), ("kz", "ru"), ("RU", "ru"), ("de", "en")]
    + [("en", "en"), ("", "en"), (None, "en")],
)
def test_normalize(lang: str | None, expected: str) -> None:
    assert normalize(lang) == expected


def test_robot_messages_follow_the_forced_locale(app: Flask) -> None:
    with app.app_context():
        with force_locale("ru"):
            assert gettext("The record has no e-mail address.") == "У записи нет адреса e-mail."
            outcome = skipped("no_phone", gettext("The record has no phone number."))
            assert outcome.message == "У записи нет номера телефона."
            assert gettext("E-mail sent to %(to)s.", to="a@example.com") == (
                "Письмо отправлено на a@example.com."
            )
        with force_locale("en"):
            assert gettext("The record has no e-mail address.") == (
                "The record has no e-mail address."
            )
