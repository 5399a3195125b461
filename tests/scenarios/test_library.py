"""The ready-made scenarios: each validates in both languages against the emulator's fields,
and every template renders with a sample record, parameters and constants."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from marketapp.actions import templating
from marketapp.actions.records import parse_assignments
from marketapp.devportal.crmmeta import STANDARD
from marketapp.scenarios import steps as st
from marketapp.scenarios.context import portal_view, template_context
from marketapp.scenarios.definition import (
    Parameter,
    ScenarioDefinition,
    requirements,
    validate_definition,
)
from marketapp.scenarios.library import (
    for_language,
    library_documents,
    library_listing,
    load_library,
)

REQUIRED = {
    "welcome-series", "re-engagement-offer", "payment-reminder", "event-invitation",
    "birthday-greeting", "assign-and-notify", "lost-deal-win-back", "post-purchase-feedback",
}  # fmt: skip
# The seeded emulator portal's fields, custom ones included.
CUSTOM = {"CONTACT": {"UF_CRM_NO_EMAIL", "UF_CRM_NO_SMS", "UF_CRM_SEGMENT"},
          "DEAL": {"UF_CRM_PAYMENT_DUE"}}  # fmt: skip
FIELDS = {e.upper(): set(f) | CUSTOM.get(e.upper(), set()) for e, f in STANDARD.items()}
SAMPLE = {
    "string": "Sample",
    "text": "Line one",
    "integer": 7,
    "decimal": Decimal("9.90"),
    "boolean": True,
    "date": date(2025, 3, 8),
    "datetime": datetime(2025, 3, 8, 18, 30),
    "employee": 3,
}
RECORD = {
    "ID": "5", "NAME": "Анна", "LAST_NAME": "Иванова", "TITLE": "Поставка оборудования",
    "OPPORTUNITY": "12500.00", "CURRENCY_ID": "RUB",
    "UF_CRM_PAYMENT_DUE": "2025-03-08T00:00:00+03:00",
    "BIRTHDATE": "1990-03-08", "STAGE_ID": "LOSE", "ASSIGNED_BY_ID": "1",
}  # fmt: skip


def test_the_library_has_the_eight_scenarios() -> None:
    keys = {d.key for d in load_library("en")}
    assert keys >= REQUIRED
    assert len(library_documents()) >= 8


@pytest.mark.parametrize("language", ["ru", "en"])
def test_each_scenario_validates_against_the_seeded_portal(language: str) -> None:
    for name, _text in library_documents():
        document = __import__("json").loads(_text)
        defn = validate_definition(
            for_language(document, language),
            language=language,
            known_fields=FIELDS,
            constants={"company_name"},
        )
        assert defn.language == language
        assert f"{defn.key}.json" == name


def _params(defn: ScenarioDefinition) -> dict[str, Any]:
    def sample(p: Parameter) -> Any:
        return p.options[0].value if p.type == "select" else SAMPLE[p.type]

    return {p.key: p.default if p.default is not None else sample(p) for p in defn.parameters}


def _templates(defn: ScenarioDefinition) -> list[tuple[str, str]]:
    found = []
    for path, step in st.walk(defn.steps):
        for name in step.template_fields:
            found.append((f"{path}.{name}", getattr(step, name)))
        if isinstance(step, st.EditFieldsStep):
            found += [(f"{path}.fields", v) for v in parse_assignments(step.fields).values()]
    return found


@pytest.mark.parametrize("language", ["ru", "en"])
def test_every_template_renders(language: str) -> None:
    for defn in load_library(language):
        entity = defn.entity_types[0]
        record = dict(RECORD, _client={"NAME": "Анна", "ID": "9", "_entity": "CONTACT"})
        context = template_context(
            templating.record_context(entity, record),
            _params(defn),
            {"company_name": "Ромашка"},
            {"ID": "1", "NAME": "Иван", "LAST_NAME": "Петров"},
            portal_view("demo.bitrix24.ru", language, "Europe/Moscow"),
        )
        for path, source in _templates(defn):
            text = templating.render(source, context)
            assert text.strip(), (defn.key, path)
            assert "{{" not in text and "{%" not in text, (defn.key, path)
            # Texts of a language use its alphabet (Latin-only names aside).
            letters = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|<[^>]+>|https?://\S+", "", source)
            if language == "en":
                assert not re.search("[а-яё]", letters, re.I), (defn.key, path)
            elif len(letters) > 40:
                assert re.search("[а-яё]", letters, re.I), (defn.key, path)


def test_dates_and_plurals_follow_the_language() -> None:
    ru = next(d for d in load_library("ru") if d.key == "payment-reminder")
    en = next(d for d in load_library("en") if d.key == "payment-reminder")
    context = template_context(
        templating.record_context("DEAL", dict(RECORD)), _params(ru), {"company_name": "X"},
        None, portal_view("demo.bitrix24.ru", "ru"),
    )  # fmt: skip
    body = templating.render(ru.steps[1].yes[0].body, context)
    assert "8 марта 2025 г." in body
    context["portal"]["language"] = "en"
    assert "March 8, 2025" in templating.render(en.steps[1].yes[0].body, context)


@pytest.mark.parametrize("language", ["ru", "en"])
def test_listing_says_what_for_whom_and_result(language: str) -> None:
    for entry in library_listing(language):
        assert entry["name"] and entry["entity_types"]
        assert len(entry["description"]) > 80
        assert entry["result"]


def test_the_scenarios_need_only_what_the_seed_has() -> None:
    for defn in load_library("en"):
        req = requirements(defn)
        assert req.constants <= {"company_name"}
        for entity, names in req.fields.items():
            assert names <= FIELDS[entity], (defn.key, entity, names - FIELDS[entity])


def test_library_files_are_packaged() -> None:
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "*.json" in config["tool"]["setuptools"]["package-data"]["*"]
