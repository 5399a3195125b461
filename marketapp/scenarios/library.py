"""Ready-made scenarios shipped with the app (``library/*.json``).

A library file is a definition whose step texts (and parameter defaults) may be given in both
languages, ``{"ru": "…", "en": "…"}``; :func:`load_library` resolves them for one language, so
the Russian and the English scenario share one structure. Names, descriptions and results are
already bilingual in the schema: they make the Market listing (:func:`library_listing`).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from marketapp.scenarios.definition import ScenarioDefinition, listing, validate_definition

LANGUAGES = ("ru", "en")


def _is_text_pair(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == set(LANGUAGES)


def resolve(value: Any, language: str) -> Any:
    """``{"ru": …, "en": …}`` pairs replaced by the ``language`` text, anywhere in ``value``."""
    if _is_text_pair(value):
        return value[language]
    if isinstance(value, dict):
        return {k: resolve(v, language) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, language) for v in value]
    return value


def for_language(document: dict[str, Any], language: str) -> dict[str, Any]:
    """A library document as a plain definition in ``language``."""
    data = dict(document)
    data["language"] = language
    data["steps"] = resolve(document.get("steps", []), language)
    data["parameters"] = [
        {**p, "default": resolve(p.get("default"), language)}
        for p in document.get("parameters", [])
    ]
    return data


@functools.cache
def library_documents() -> tuple[tuple[str, str], ...]:
    """(file name, text) of every library file, in name order."""
    folder = resources.files("marketapp.scenarios") / "library"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    return tuple((f.name, f.read_text(encoding="utf-8")) for f in files)


def load_library(language: str = "en") -> list[ScenarioDefinition]:
    """Every library scenario with its texts in ``language`` (``ru`` or ``en``), validated."""
    if language not in LANGUAGES:
        language = "en"
    return [
        validate_definition(for_language(json.loads(text), language), language=language)
        for _name, text in library_documents()
    ]


def library_scenario(key: str, language: str = "en") -> ScenarioDefinition | None:
    return next((d for d in load_library(language) if d.key == key), None)


def library_listing(language: str) -> list[dict[str, Any]]:
    """Name, description, result and entity types of each scenario (the Market listing)."""
    return [listing(defn, language) for defn in load_library(language)]
