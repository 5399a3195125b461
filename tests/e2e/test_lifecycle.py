"""Install, update, uninstall and placement entry, end to end against the emulator over HTTP."""

from __future__ import annotations

import dataclasses

import pytest
import requests
from sqlalchemy import func, select

from marketapp.db import db_session
from marketapp.devportal import DevportalServer
from marketapp.lifecycle import manifest as manifest_module
from marketapp.lifecycle.manifest import ENTITIES, EVENTS, PLACEMENT_KINDS, ROBOTS
from marketapp.models import Base, Portal, PortalStatus, Registration
from tests.e2e.harness import AppServer, Installed, install
from tests.support import token_from

pytestmark = pytest.mark.e2e

ROBOT_CODES = sorted(r.code for r in ROBOTS)
PLACEMENTS = sorted(f"CRM_{e}_{k}" for e in ENTITIES for k in PLACEMENT_KINDS)


def registered(installed: Installed) -> tuple[list[str], list[str], list[str]]:
    regs = installed.registrations()
    return (
        sorted(r["code"] for r in regs["robots"]),
        sorted(p["placement"] for p in regs["placements"]),
        sorted(e["event"] for e in regs["events"]),
    )


def writes(installed: Installed, since: int) -> list[str]:
    """REST methods the app called after request number ``since`` that change registration."""
    log = installed.emu("GET", f"/requests?member_id={installed.member_id}")[since:]
    names: list[str] = []
    for entry in log:
        for method in entry.get("methods") or [entry.get("method", "")]:
            if method.split(".")[-1] in {"add", "update", "delete", "bind", "unbind"}:
                names.append(method)
    return names


def test_install_registers_exactly_the_manifest(installed: Installed) -> None:
    assert registered(installed) == (ROBOT_CODES, PLACEMENTS, sorted(EVENTS))
    assert "BX24.installFinish()" in installed.installer_page
    with installed.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        assert portal.installed and portal.status is PortalStatus.ACTIVE
        assert portal.member_id == installed.member_id
        assert portal.refresh_token and portal.application_token
    deliveries = installed.emu("GET", "/deliveries")
    assert [d["event"] for d in deliveries if d["kind"] == "event"] == ["ONAPPINSTALL"]


def test_sync_again_changes_nothing(installed: Installed) -> None:
    before = len(installed.emu("GET", f"/requests?member_id={installed.member_id}"))
    resp = requests.post(
        f"{installed.app.url}/api/registration/sync",
        headers={"X-Session-Token": _session_token(installed)},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"applied": []}
    assert writes(installed, before) == []
    assert registered(installed) == (ROBOT_CODES, PLACEMENTS, sorted(EVENTS))


def test_update_applies_exactly_the_difference(
    installed: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = dataclasses.replace(ROBOTS[0], name={"en": "Send e-mail v2", "ru": "Письмо v2"})
    monkeypatch.setattr(manifest_module, "ROBOTS", (changed, *ROBOTS[1:]))
    monkeypatch.setattr(manifest_module, "PLACEMENT_KINDS", ("LIST_TOOLBAR", "LIST_MENU"))
    # The emulator removes the app's robots and event handlers on update, as Bitrix24 does.
    installed.portal("/update", "POST", client_id=installed.client_id, version=2)
    installed.settle()
    robots, placements, events = registered(installed)
    assert robots == ROBOT_CODES and events == sorted(EVENTS)
    assert placements == sorted(
        f"CRM_{e}_{k}" for e in ENTITIES for k in ("LIST_TOOLBAR", "LIST_MENU")
    )
    names = {r["code"]: r["fields"]["NAME"] for r in installed.registrations()["robots"]}
    assert names["send_email"]["en"] == "Send e-mail v2"

    # A second update with nothing removed by the portal sends only what differs.
    before = len(installed.emu("GET", f"/requests?member_id={installed.member_id}"))
    with installed.app.app.app_context():
        from marketapp.lifecycle.install import sync_portal

        report = sync_portal(db_session(), db_session().scalars(select(Portal)).one())
    assert report.applied == []
    assert writes(installed, before) == []


def test_forged_uninstall_deletes_nothing(installed: Installed) -> None:
    resp = requests.post(
        f"{installed.app.url}/events",
        data={
            "event": "ONAPPUNINSTALL",
            "ts": "1466439714",
            "data[LANGUAGE_ID]": "en",
            "data[CLEAN]": "1",
            "auth[domain]": "127.0.0.2",
            "auth[server_endpoint]": "http://127.0.0.1/rest/",
            "auth[client_endpoint]": "http://127.0.0.2/rest/",
            "auth[member_id]": installed.member_id,
            "auth[application_token]": "0" * 32,
        },
        timeout=10,
    )
    assert resp.status_code == 401
    assert "0" * 32 not in resp.text
    with installed.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        assert portal.status is PortalStatus.ACTIVE and portal.refresh_token


def test_clean_uninstall_removes_every_row_of_that_portal_only(
    devportal: DevportalServer, app_server: AppServer
) -> None:
    first = install(devportal, app_server, portal_number=1)
    second_member = devportal.emulator.portals[1].member_id
    form = first.emu("POST", f"/portals/{second_member}/install", client_id=first.client_id)["form"]
    assert requests.post(form["action"], data=form["fields"], timeout=30).status_code == 200
    first.emu("POST", f"/portals/{second_member}/install-finish", client_id=first.client_id)
    first.settle()
    with app_server.app.app_context():
        assert db_session().scalar(select(func.count(Registration.id))) == 2 * len(ROBOTS)

    first.portal("/uninstall", "POST", client_id=first.client_id, clean="1")
    first.settle()
    with app_server.app.app_context():
        session = db_session()
        portals = session.scalars(select(Portal)).all()
        assert [p.member_id for p in portals] == [second_member]
        for table in Base.metadata.sorted_tables:
            if "portal_id" in table.c:
                owners = session.execute(select(table.c.portal_id).distinct()).scalars().all()
                assert set(owners) <= {portals[0].id}, table.name
        assert session.scalar(select(func.count(Registration.id))) == len(ROBOTS)


def test_uninstall_without_clean_keeps_data_and_drops_tokens(installed: Installed) -> None:
    installed.portal("/uninstall", "POST", client_id=installed.client_id, clean="0")
    installed.settle()
    with installed.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        assert portal.status is PortalStatus.UNINSTALLED and not portal.installed
        assert portal.access_token is None and portal.refresh_token is None
        assert db_session().scalar(select(func.count(Registration.id))) == len(ROBOTS)


@pytest.mark.parametrize(
    "forge",
    [
        {"APPLICATION_TOKEN": "f" * 32},
        {"member_id": "0123456789abcdef0123456789abcdef"},
        {"AUTH_ID": "not-a-token-the-portal-knows"},
    ],
)
def test_forged_placement_gets_401_and_no_session(
    installed: Installed, forge: dict[str, str]
) -> None:
    form = installed.open("CRM_CONTACT_LIST_TOOLBAR")
    resp = installed.post_form(form, **forge)
    assert resp.status_code == 401
    assert "session-token" not in resp.text


def test_placement_opens_with_session_framed_by_portal_only(installed: Installed) -> None:
    form = installed.open("CRM_CONTACT_LIST_MENU", ID="3")
    resp = installed.post_form(form)
    assert resp.status_code == 200, resp.text
    assert 'name="session-token"' in resp.text and 'data-record="3"' in resp.text
    domain = installed.portal()["domain"]
    assert resp.headers["Content-Security-Policy"] == f"frame-ancestors http://{domain}"
    assert "X-Frame-Options" not in resp.headers
    who = requests.get(
        f"{installed.app.url}/api/session",
        headers={"X-Session-Token": token_from(resp.text)},
        timeout=10,
    ).json()
    assert who == {
        "member_id": installed.member_id,
        "user_id": 1,
        "is_admin": True,
        "language": "en",
    }


def test_session_of_portal_a_is_refused_for_portal_b(installed: Installed) -> None:
    token = _session_token(installed)
    other = installed.devportal.emulator.portals[1].member_id
    resp = requests.get(
        f"{installed.app.url}/api/session",
        params={"member_id": other},
        headers={"X-Session-Token": token},
        timeout=10,
    )
    assert resp.status_code == 403
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    resp = requests.get(
        f"{installed.app.url}/api/session", headers={"X-Session-Token": forged}, timeout=10
    )
    assert resp.status_code == 401


def test_admin_only_action_refuses_ordinary_user(installed: Installed) -> None:
    resp = installed.post_form(installed.open("CRM_CONTACT_LIST_TOOLBAR", user_id=2))
    assert resp.status_code == 200
    token = token_from(resp.text)
    resp = requests.post(
        f"{installed.app.url}/api/registration/sync", headers={"X-Session-Token": token}, timeout=10
    )
    assert resp.status_code == 403
    # No session token at all: the state-changing request is refused (CSRF).
    assert (
        requests.post(f"{installed.app.url}/api/registration/sync", timeout=10).status_code == 401
    )


def _session_token(installed: Installed) -> str:
    resp = installed.post_form(installed.open("DEFAULT"))
    assert resp.status_code == 200, resp.text
    return token_from(resp.text)


def test_cli_sync_repairs_drift(installed: Installed, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from marketapp.cli import main

    emulator = installed.devportal.emulator
    portal = next(p for p in emulator.portals if p.member_id == installed.member_id)
    with emulator.lock:  # an admin removed one placement and one robot by hand
        portal.placements = [p for p in portal.placements if p.placement != "CRM_LEAD_LIST_MENU"]
        portal.robots = {k: r for k, r in portal.robots.items() if r.code != "send_sms"}
    settings = installed.app.app.extensions["marketapp.settings"]
    env = {
        "MARKETAPP_INSTANCE_PATH": str(settings.instance_path),
        "MARKETAPP_DATABASE_URL": settings.sqlalchemy_url,
        "MARKETAPP_PUBLIC_URL": settings.public_url,
        "MARKETAPP_CLIENT_ID": settings.client_id,
        "MARKETAPP_CLIENT_SECRET": settings.client_secret.get_secret_value(),
        "MARKETAPP_OAUTH_HOSTS": settings.oauth_hosts,
        "MARKETAPP_ALLOW_INSECURE_LOOPBACK": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["portals", "sync", installed.member_id])
    assert result.exit_code == 0, result.output
    assert "robot.add:send_sms" in result.output
    assert "placement.bind:CRM_LEAD_LIST_MENU" in result.output
    assert registered(installed) == (ROBOT_CODES, PLACEMENTS, sorted(EVENTS))
    again = CliRunner().invoke(main, ["portals", "sync", installed.member_id])
    assert again.output.strip() == "changed: nothing"
    unknown = CliRunner().invoke(main, ["portals", "sync", "nope"])
    assert unknown.exit_code == 1 and "no portal with member_id nope" in unknown.output
