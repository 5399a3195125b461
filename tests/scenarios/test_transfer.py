"""Import / export documents: a round trip keeps the digest, on this portal or another one of
the emulator; an import that lacks a field or a constant names it and saves nothing; a broken
file is a clear error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketapp.bitrix.client import client_for
from marketapp.db import db_session
from marketapp.devportal import DevportalServer
from marketapp.lifecycle.install import find_portal
from marketapp.models import Portal, PortalConstant, Scenario, ScenarioVersion
from marketapp.scenarios import transfer, versions
from marketapp.scenarios.definition import SCHEMA_VERSION
from tests.e2e.harness import AppServer, Installed, install
from tests.scenarios.support import definition

pytestmark = pytest.mark.e2e

CUSTOM = "UF_CRM_LOYALTY_TIER"  # a custom field no seeded portal has


@pytest.fixture
def session(app_server: AppServer) -> Iterator[Session]:
    with app_server.app.app_context():
        yield db_session()


def _portal(session: Session, installed: Installed) -> Portal:
    portal = find_portal(session, installed.member_id)
    assert portal is not None
    return portal


def _add_user_field(devportal: DevportalServer, installed: Installed, name: str) -> None:
    """An admin creates a custom contact field on that portal (emulator state)."""
    emu_portal = next(p for p in devportal.emulator.portals if p.member_id == installed.member_id)
    emu_portal.crm.user_fields["contact"][name] = {"type": "string", "label": name}


def _count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_export_then_import_keeps_the_digest(session: Session, installed: Installed) -> None:
    portal = _portal(session, installed)
    saved = versions.save(session, portal, definition(text="Hi {{ record.NAME }}"))
    session.commit()
    document = transfer.export_document(session, portal, "welcome")
    assert document["format"] == "smart-scenarios"
    assert document["schema"] == SCHEMA_VERSION
    assert document["scenario"] == saved.definition
    text = transfer.dumps(document)

    result = transfer.import_document(session, portal, text, client_for(portal))
    assert not result.created  # the same definition: the same version
    assert result.version.id == saved.id
    assert result.version.digest == saved.digest


def test_import_onto_portal_2(
    session: Session, devportal: DevportalServer, app_server: AppServer, installed: Installed
) -> None:
    second = install(devportal, app_server, portal_number=2)
    one, two = _portal(session, installed), _portal(session, second)
    _add_user_field(devportal, installed, CUSTOM)
    _add_user_field(devportal, second, CUSTOM)
    session.add(PortalConstant(portal_id=one.id, code="company_phone", value="+1 555"))
    session.add(PortalConstant(portal_id=two.id, code="company_phone", value="+7 495"))
    saved = versions.save(session, one, _needing(CUSTOM, "company_phone"), author_id=1)
    session.commit()
    document = transfer.export_document(session, one, "welcome")
    assert document["requires"] == {
        "constants": ["company_phone"],
        "fields": {"CONTACT": ["NAME", CUSTOM]},
        "client_fields": [],
    }

    result = transfer.import_document(
        session, two, transfer.dumps(document), client_for(two), author_id=5
    )
    assert result.created
    assert (result.version.portal_id, result.version.number) == (two.id, 1)
    assert result.version.digest == saved.digest
    assert result.version.definition == saved.definition
    assert result.version.author_id == 5


def test_a_missing_custom_field_is_named_and_nothing_is_saved(
    session: Session, devportal: DevportalServer, app_server: AppServer, installed: Installed
) -> None:
    second = install(devportal, app_server, portal_number=2)
    one, two = _portal(session, installed), _portal(session, second)
    _add_user_field(devportal, installed, CUSTOM)  # only portal 1 has it
    versions.save(session, one, _needing(CUSTOM))
    session.commit()
    text = transfer.dumps(transfer.export_document(session, one, "welcome"))
    before = _count(session, ScenarioVersion)

    with pytest.raises(transfer.TransferError) as caught:
        transfer.import_document(session, two, text, client_for(two))
    assert caught.value.missing.fields == {"CONTACT": [CUSTOM]}
    assert caught.value.missing.constants == []
    assert any(CUSTOM in p.message for p in caught.value.problems)
    assert _count(session, ScenarioVersion) == before
    assert versions.list_scenarios(session, two) == []
    log = installed.emu("GET", f"/requests?member_id={second.member_id}")
    assert "crm.contact.fields" in json.dumps(log)  # asked the target portal itself


def test_a_missing_constant_is_named_and_nothing_is_saved(
    session: Session, installed: Installed
) -> None:
    portal = _portal(session, installed)
    document = _document(_needing(None, "company_phone", "manager_name"))
    session.add(PortalConstant(portal_id=portal.id, code="manager_name", value="Ann"))
    session.commit()
    with pytest.raises(transfer.TransferError) as caught:
        transfer.import_document(session, portal, json.dumps(document), client_for(portal))
    assert caught.value.missing.constants == ["company_phone"]
    assert "company_phone" in str(caught.value)
    assert _count(session, Scenario) == 0


def _needing(field: str | None, *constants: str) -> dict[str, Any]:
    parts = ["Hello {{ record.NAME }}"]
    if field:
        parts.append("{{ record." + field + " }}")
    parts += ["{{ const." + code + " }}" for code in constants]
    return definition(text=" ".join(parts))


def _document(defn: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = {
        "format": "smart-scenarios",
        "schema": SCHEMA_VERSION,
        "app_version": "0.1.0",
        "scenario": defn,
        "requires": {"constants": [], "fields": {}},
    }
    doc.update(changes)
    return doc


# --- broken files: clear reasons, no portal needed -----------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "needle"),
    [
        (b'{"format": "smart-scenarios", ', "", "not valid JSON"),
        (b"\xff\xfe not text", "", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "", "not valid JSON"),  # past the parser's recursion
        (b"{}" + b" " * (1024 * 1024), "", "larger than 1 MB"),
        (b"[1, 2]", "", "JSON object"),
        (b'"a string"', "", "JSON object"),
        (json.dumps(_document(definition(), format="other")), "format", "not a scenario file"),
        (json.dumps(_document(definition(), schema=99)), "schema", "99"),
        (json.dumps(_document(definition(), schema="1")), "schema", "not supported"),
        (json.dumps(_document(definition(), scenario=[1])), "scenario", "JSON object"),
    ],
)
def test_a_broken_file_is_a_clear_error(
    app: Flask, data: str | bytes, path: str, needle: str
) -> None:
    with app.app_context(), pytest.raises(transfer.TransferError) as caught:
        transfer.read_document(data)
    (problem,) = caught.value.problems
    assert problem.path == path
    assert needle in problem.message


def test_a_byte_order_mark_is_fine(app: Flask) -> None:
    text = "\ufeff" + json.dumps(_document(definition()), ensure_ascii=False)
    with app.app_context():
        assert transfer.read_document(text.encode("utf-8")).key == "welcome"


def test_an_invalid_scenario_points_into_the_document(app: Flask) -> None:
    broken = definition()
    del broken["key"]
    with app.app_context(), pytest.raises(transfer.TransferError) as caught:
        transfer.read_document(json.dumps(_document(broken)))
    assert all(p.path.startswith("scenario") for p in caught.value.problems)


@pytest.mark.parametrize("language", ["en", "ru"])
def test_every_library_scenario_round_trips_onto_portal_2(
    session: Session,
    devportal: DevportalServer,
    app_server: AppServer,
    installed: Installed,
    language: str,
) -> None:
    from marketapp.scenarios.library import load_library

    second = install(devportal, app_server, portal_number=2)
    one, two = _portal(session, installed), _portal(session, second)
    library = load_library(language)
    saved = [versions.save(session, one, defn) for defn in library]
    session.commit()
    for version in saved:
        key = version.definition["key"]
        document = json.loads(transfer.dumps(transfer.export_document(session, one, key)))
        have = set(session.scalars(select(PortalConstant.code).filter_by(portal_id=two.id)))
        for code in set(document["requires"]["constants"]) - have:
            session.add(PortalConstant(portal_id=two.id, code=code, value="x"))
        session.commit()
        result = transfer.import_document(session, two, document, client_for(two))
        assert result.version.digest == version.digest, key
        assert result.version.definition == version.definition
    assert len(versions.list_scenarios(session, two)) == len(library) >= 8
