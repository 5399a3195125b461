"""Scenario documents: export a version as JSON, import one onto a portal (all or nothing).

The document::

    {"format": "smart-scenarios", "schema": 1, "app_version": "0.1.0",
     "scenario": {...definition...},
     "requires": {"constants": ["company_phone"], "fields": {"CONTACT": ["NAME", "UF_CRM_TIER"]},
                  "client_fields": []}}

``requires`` is for people reading the file; an import computes what the definition needs
itself, so an edited or stale list can neither hide a missing field nor block an import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from marketapp.bitrix.errors import BitrixError
from marketapp.models import Portal, ScenarioVersion
from marketapp.scenarios import versions
from marketapp.scenarios.constants import constant_values
from marketapp.scenarios.definition import (
    SCHEMA_VERSION,
    DefinitionError,
    Problem,
    Requirements,
    ScenarioDefinition,
    requirements,
    validate_definition,
)

FORMAT = "smart-scenarios"
MAX_DOCUMENT_BYTES = 1024 * 1024


class FieldSource(Protocol):
    """What the field check needs of a portal client (``PortalClient`` is one)."""

    def call(self, method: str, params: Any = None) -> Any: ...


@dataclass
class Missing:
    """What a portal lacks for a definition: constants and CRM fields, by name."""

    constants: list[str] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)
    client_fields: list[str] = field(default_factory=list)  # of a deal's contact or company

    def __bool__(self) -> bool:
        return bool(self.constants or self.fields or self.client_fields)

    def describe(self) -> dict[str, Any]:
        return {
            "constants": self.constants,
            "fields": self.fields,
            "client_fields": self.client_fields,
        }

    def problems(self) -> list[Problem]:
        found = [
            Problem("requires.constants", _("The portal has no constant %(code)s.", code=code))
            for code in self.constants
        ]
        for entity, names in self.fields.items():
            found.extend(
                Problem(
                    f"requires.fields.{entity}",
                    _("The portal has no %(entity)s field %(field)s.", entity=entity, field=name),
                )
                for name in names
            )
        found.extend(
            Problem(
                "requires.client_fields",
                _("The portal has no contact or company field %(field)s.", field=name),
            )
            for name in self.client_fields
        )
        return found


class TransferError(Exception):
    """A document that cannot be imported: every reason, and what the portal lacks."""

    def __init__(self, problems: list[Problem], missing: Missing | None = None) -> None:
        super().__init__(
            "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in problems)
        )
        self.problems = problems
        self.missing = missing or Missing()


@dataclass(frozen=True)
class Imported:
    version: ScenarioVersion
    created: bool  # False: the latest version already had this definition


def app_version() -> str:
    try:
        return version("marketapp")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0"


def export_document(
    session: Session, portal: Portal, key: str, number: int | None = None
) -> dict[str, Any]:
    """The document for version ``number`` (default: current) of ``key`` on ``portal``."""
    pinned = versions.get_version(session, portal, key, number)
    needs = requirements(validate_definition(pinned.definition, language=portal.language))
    return {
        "format": FORMAT,
        "schema": SCHEMA_VERSION,
        "app_version": app_version(),
        "scenario": pinned.definition,
        "requires": describe_requirements(needs),
    }


def describe_requirements(needs: Requirements) -> dict[str, Any]:
    return {
        "constants": sorted(needs.constants),
        "fields": {entity: sorted(names) for entity, names in sorted(needs.fields.items())},
        "client_fields": sorted(needs.client_fields),
    }


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def read_document(data: str | bytes | Any, *, language: str = "en") -> ScenarioDefinition:
    """Parse and validate a document (text or already parsed); raises ``TransferError``."""
    with force_locale(language):
        document = _parsed(data)
        _check_envelope(document)
    try:
        return validate_definition(document["scenario"], language=language)
    except DefinitionError as exc:
        raise TransferError([_in_scenario(p) for p in exc.problems]) from exc


def read_definition(data: str | bytes | Any, *, language: str = "en") -> ScenarioDefinition:
    """A document, or a bare definition (what an editor saves); raises ``TransferError``."""
    with force_locale(language):
        parsed = _parsed(data)
    if isinstance(parsed, Mapping) and "format" in parsed:
        return read_document(parsed, language=language)
    try:
        return validate_definition(parsed, language=language)
    except DefinitionError as exc:
        raise TransferError(exc.problems) from exc


def missing_on(
    session: Session, portal: Portal, defn: ScenarioDefinition, client: FieldSource
) -> Missing:
    """The constants and CRM fields ``defn`` uses that ``portal`` does not have."""
    needs = requirements(defn)
    lacking = Missing(constants=sorted(needs.constants - set(constant_values(session, portal))))
    known: dict[str, set[str]] = {}

    def fields_of(entity: str) -> set[str]:
        if entity not in known:
            known[entity] = _portal_fields(client, entity)
        return known[entity]

    for entity, names in sorted(needs.fields.items()):
        absent = sorted(names - fields_of(entity))
        if absent:
            lacking.fields[entity] = absent
    if needs.client_fields:  # a deal's client is a contact or a company
        either = fields_of("CONTACT") | fields_of("COMPANY")
        lacking.client_fields = sorted(needs.client_fields - either)
    return lacking


def import_document(
    session: Session,
    portal: Portal,
    data: str | bytes | Any,
    client: FieldSource,
    *,
    author_id: int | None = None,
    language: str = "en",
) -> Imported:
    """Validate, check the portal has what the scenario needs, then save it as a version.

    Nothing is stored unless everything passes: the checks run before any write and the
    save commits once.
    """
    defn = read_document(data, language=language)
    with force_locale(language):
        lacking = missing_on(session, portal, defn, client)
        if lacking:
            raise TransferError(lacking.problems(), lacking)
    try:
        before = versions.latest_version(session, portal, defn.key)
        saved = versions.save(session, portal, defn, author_id, language=language)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return Imported(saved, created=before is None or saved.number > before.number)


def _parsed(data: str | bytes | Any) -> Any:
    if isinstance(data, str | bytes):
        if len(data) > MAX_DOCUMENT_BYTES:
            raise TransferError([Problem("", _("The file is larger than 1 MB."))])
        try:
            text = data.decode("utf-8-sig") if isinstance(data, bytes) else data  # editors' BOM
            return json.loads(text)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            message = _(
                "The file is not valid JSON (line %(line)s).", line=getattr(exc, "lineno", 1)
            )
            raise TransferError([Problem("", message)]) from exc
    return data


def _check_envelope(document: Any) -> None:
    if not isinstance(document, Mapping):
        raise TransferError([Problem("", _("The file must hold a JSON object."))])
    if document.get("format") != FORMAT:
        message = _("This is not a scenario file (format must be %(format)s).", format=FORMAT)
        raise TransferError([Problem("format", message)])
    schema = document.get("schema")
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        message = _(
            "Schema version %(found)s is not supported; this app reads version %(ours)s.",
            found=json.dumps(schema),
            ours=SCHEMA_VERSION,
        )
        raise TransferError([Problem("schema", message)])
    if not isinstance(document.get("scenario"), Mapping):
        raise TransferError([Problem("scenario", _("The scenario must be a JSON object."))])


def _in_scenario(problem: Problem) -> Problem:
    return Problem(f"scenario.{problem.path}" if problem.path else "scenario", problem.message)


def _portal_fields(client: FieldSource, entity: str) -> set[str]:
    method = f"crm.{entity.lower()}.fields"
    try:
        result = client.call(method).result
    except BitrixError as exc:
        message = _("The portal did not answer %(method)s: %(error)s", method=method, error=exc)
        raise TransferError([Problem(f"requires.fields.{entity}", message)]) from exc
    return set(result) if isinstance(result, Mapping) else set()
