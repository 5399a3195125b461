"""Issue 9, lifecycle: what an ordinary user of portal 1 (user 2) can do with the form their browser
receives (it carries ``APPLICATION_TOKEN``), and the genuine install/update/uninstall paths.

Attack 1: forged ``ONAPPUPDATE`` moving the portal's REST endpoint. Attack 3: forged
``ONAPPUNINSTALL`` (``CLEAN=0``/``1``). Attack 10: the failed-install page echoing tokens.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import func, select

from marketapp.db import db_session
from marketapp.devportal import DevportalServer
from marketapp.lifecycle.manifest import ROBOTS
from marketapp.models import Portal, PortalStatus, Registration
from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.e2e.harness import AppServer, Installed, Worker, register_app

pytestmark = pytest.mark.e2e

TOKEN_FIELDS = ("AUTH_ID", "REFRESH_ID", "APPLICATION_TOKEN")


class Attacker:
    """A loopback HTTP server posing as a portal: records every request, says "admin"."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append((self.path, body))
                answer = json.dumps({"result": {"ID": "2", "ADMIN": True, "NAME": "Eve"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}/rest/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    server = Attacker()
    yield server
    server.close()


def user2_form(installed: Installed) -> dict[str, Any]:
    """The form user 2's browser posts when they open the app (their tokens, APPLICATION_TOKEN)."""
    return installed.open(user_id=2)


def event_fields(
    form: dict[str, Any], event: str, data: dict[str, str], **auth: str
) -> dict[str, str]:
    fields = form["fields"]
    domain = form["query"]["DOMAIN"]
    body = {
        "event": event,
        "ts": "1700000000",
        "auth[domain]": domain,
        "auth[member_id]": fields["member_id"],
        "auth[application_token]": fields["APPLICATION_TOKEN"],
        "auth[server_endpoint]": fields["SERVER_ENDPOINT"],
        "auth[client_endpoint]": f"http://{domain}/rest/",
    }
    body.update({f"data[{k}]": v for k, v in data.items()})
    body.update({f"auth[{k}]": v for k, v in auth.items()})
    return body


def post_event(installed: Installed, body: dict[str, str]) -> requests.Response:
    return requests.post(f"{installed.app.url}/events", data=body, timeout=10)


def stored(installed: Installed) -> Portal:
    with installed.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        db_session().expunge(portal)
        return portal


def page(installed: Installed, user_id: int) -> requests.Response:
    """The user opens the app's main page (Bitrix24 posts their form to the handler URL)."""
    return installed.post_form(installed.open(user_id=user_id))


def session_of(resp: requests.Response) -> str:
    marker = 'name="session-token" content="'
    assert marker in resp.text, resp.text[:500]
    start = resp.text.index(marker) + len(marker)
    return resp.text[start : resp.text.index('"', start)]


def settings_status(installed: Installed, token: str, path: str = "/api/settings") -> int:
    resp = requests.get(
        f"{installed.app.url}{path}", headers={"X-Session-Token": token}, timeout=10
    )
    return resp.status_code


def security_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(getattr(r, "reason", r.getMessage()))
        for r in caplog.records
        if r.name == "marketapp.security"
    ]


# --- attack 1 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("own_token", [False, True], ids=["junk-token", "user2-real-token"])
def test_forged_update_cannot_move_the_endpoint(
    installed: Installed,
    attacker: Attacker,
    caplog: pytest.LogCaptureFixture,
    own_token: bool,
) -> None:
    caplog.set_level(logging.INFO)
    before = stored(installed)
    form = user2_form(installed)
    # With its own (genuine, non-admin) token the forger passes app.info but is not an admin.
    access = form["fields"]["AUTH_ID"] if own_token else "j" * 32
    refresh = form["fields"]["REFRESH_ID"] if own_token else "k" * 32
    body = event_fields(
        form,
        "ONAPPUPDATE",
        {"VERSION": "2", "PREVIOUS_VERSION": "1", "LANGUAGE_ID": "en"},
        access_token=access,
        refresh_token=refresh,
        expires_in="3600",
        client_endpoint=attacker.endpoint,
        user_id="2",
    )
    resp = post_event(installed, body)
    assert resp.status_code == 200
    installed.settle()

    after = stored(installed)
    assert after.client_endpoint == before.client_endpoint
    assert after.domain == before.domain
    assert after.token_user_id == 1 and after.status is PortalStatus.ACTIVE

    admin = page(installed, 1)  # the admin's AUTH_ID goes to the confirmed portal only
    assert admin.status_code == 200, admin.text
    user2 = page(installed, 2)
    assert user2.status_code == 200, user2.text
    assert settings_status(installed, session_of(user2)) == 403  # never an admin of the app
    assert settings_status(installed, session_of(admin)) == 200
    assert attacker.requests == []
    assert any("ONAPPUPDATE" in reason for reason in security_reasons(caplog))


def test_genuine_update_is_confirmed_and_rotates_the_application_token(
    installed: Installed,
) -> None:
    before = stored(installed)
    since = len(installed.emu("GET", "/requests"))
    result = installed.portal(
        "/update", "POST", client_id=installed.client_id, version=2, new_application_token=True
    )
    installed.settle()
    after = stored(installed)
    assert after.application_token == result["application_token"] != before.application_token
    assert after.client_endpoint == before.client_endpoint and after.installed
    methods = [r.get("method") for r in installed.emu("GET", "/requests")[since:]]
    assert "app.info" in methods  # confirmed with the OAuth server
    assert page(installed, 1).status_code == 200


def test_update_delivered_after_its_token_expired_is_confirmed_with_a_refresh(
    installed: Installed,
) -> None:
    pause_worker(installed)
    installed.portal("/update", "POST", client_id=installed.client_id, version=2)
    installed.emu("GET", "/deliveries?wait=1")  # queued by the app, not yet run
    installed.portal("/faults", "POST", expire_tokens=True)  # an hour in Bitrix24's queue
    resume_worker(installed)
    installed.settle()
    # The update removed them; the confirmed event registered them again.
    assert {r["code"] for r in installed.registrations()["robots"]} == {r.code for r in ROBOTS}
    assert installed.app.worker.errors == []
    assert page(installed, 1).status_code == 200


def pause_worker(installed: Installed) -> None:
    installed.app.worker.stop.set()
    installed.app.worker.thread.join(timeout=5)


def resume_worker(installed: Installed) -> None:
    installed.app.worker = Worker(installed.app.worker.huey)
    installed.app.worker.thread.start()


# --- attack 3 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("clean", ["0", "1"])
@pytest.mark.parametrize("expired", [False, True], ids=["live", "expired-access-token"])
def test_forged_uninstall_is_ignored(
    installed: Installed, caplog: pytest.LogCaptureFixture, clean: str, expired: bool
) -> None:
    caplog.set_level(logging.INFO)
    admin_session = session_of(page(installed, 1))
    if expired:  # the stored access token is past its expiry: the check must refresh
        _expire_stored_token(installed)
    form = user2_form(installed)
    resp = post_event(
        installed, event_fields(form, "ONAPPUNINSTALL", {"LANGUAGE_ID": "en", "CLEAN": clean})
    )
    assert resp.status_code == 200
    installed.settle()

    portal = stored(installed)
    assert portal.status is PortalStatus.ACTIVE and portal.installed
    assert portal.access_token and portal.refresh_token
    with installed.app.app.app_context():
        assert db_session().scalar(select(func.count(Registration.id))) > 0
    assert settings_status(installed, admin_session) == 200
    reopened = page(installed, 1)  # the admin gets the main page, not the installer again
    assert reopened.status_code == 200
    assert "installFinish" not in reopened.text and 'name="session-token"' in reopened.text
    assert any("ONAPPUNINSTALL" in reason for reason in security_reasons(caplog))


def test_uninstall_that_cannot_be_confirmed_keeps_the_portal(installed: Installed) -> None:
    """A parked portal (its refresh token died): nothing proves the uninstall; nothing goes."""
    with installed.app.app.app_context():
        db_session().scalars(select(Portal)).one().status = PortalStatus.NEEDS_REAUTH
        db_session().commit()
    body = event_fields(
        user2_form(installed), "ONAPPUNINSTALL", {"LANGUAGE_ID": "en", "CLEAN": "1"}
    )
    assert post_event(installed, body).status_code == 200
    installed.settle()
    portal = stored(installed)
    assert portal.status is PortalStatus.NEEDS_REAUTH and portal.refresh_token
    assert installed.app.worker.errors == []


def _expire_stored_token(installed: Installed) -> None:
    with installed.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        portal.expires_at = datetime.now(UTC) - timedelta(minutes=5)
        db_session().commit()


@pytest.mark.parametrize("expired", [False, True], ids=["live", "expired-access-token"])
def test_genuine_uninstall_keeps_data_refuses_old_sessions_and_reinstalls(
    installed: Installed, expired: bool
) -> None:
    old_session = session_of(page(installed, 1))
    if expired:  # a refresh after the uninstall fails with invalid_grant: revoked
        _expire_stored_token(installed)
    installed.portal("/uninstall", "POST", client_id=installed.client_id, clean="0")
    installed.settle()
    portal = stored(installed)
    assert portal.status is PortalStatus.UNINSTALLED and not portal.installed
    assert portal.access_token is None and portal.refresh_token is None
    assert settings_status(installed, old_session) == 401
    assert settings_status(installed, old_session, "/api/session") == 401

    # Reinstall: the installer page alone makes the app usable (ONAPPINSTALL may come late).
    form = installed.portal("/install", "POST", client_id=installed.client_id)["form"]
    installer = installed.post_form(form)
    assert installer.status_code == 200 and "BX24.installFinish()" in installer.text
    main = requests.post(
        f"{installed.app.url}/?{urlencode(form['query'])}", data=form["fields"], timeout=30
    )
    assert main.status_code == 200 and "installFinish" not in main.text
    assert settings_status(installed, session_of(main)) == 200
    assert settings_status(installed, old_session) == 401  # minted before the uninstall
    installed.portal("/install-finish", "POST", client_id=installed.client_id)
    installed.settle()
    portal = stored(installed)
    assert portal.status is PortalStatus.ACTIVE and portal.installed and portal.refresh_token


def test_genuine_clean_uninstall_purges_and_refuses_old_sessions(installed: Installed) -> None:
    old_session = session_of(page(installed, 1))
    installed.portal("/uninstall", "POST", client_id=installed.client_id, clean="1")
    installed.settle()
    with installed.app.app.app_context():
        assert db_session().scalar(select(func.count(Portal.id))) == 0
    assert settings_status(installed, old_session) == 401
    form = installed.portal("/install", "POST", client_id=installed.client_id)["form"]
    assert installed.post_form(form).status_code == 200
    assert stored(installed).installed


def test_uninstall_event_is_answered_before_any_rest_call(installed: Installed) -> None:
    pause_worker(installed)  # nothing runs in the background while we look
    since = len(installed.emu("GET", "/requests"))
    form = user2_form(installed)
    resp = post_event(
        installed, event_fields(form, "ONAPPUNINSTALL", {"LANGUAGE_ID": "en", "CLEAN": "1"})
    )
    assert resp.status_code == 200 and resp.json() == {"result": "queued"}
    assert installed.emu("GET", "/requests")[since:] == []


# --- attack 10 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("forge", [{}, {"AUTH_ID": "not-a-token-the-portal-knows"}])
def test_failed_install_page_carries_no_token(installed: Installed, forge: dict[str, str]) -> None:
    form = user2_form(installed)
    fields = {**form["fields"], **forge}
    resp = requests.post(
        f"{installed.app.url}/install?{urlencode(form['query'])}", data=fields, timeout=30
    )
    assert resp.status_code in (401, 403)
    for name in TOKEN_FIELDS:
        assert fields[name] not in resp.text
        assert f'name="{name}"' not in resp.text
    assert "reloadWindow" in resp.text  # "Try again" reloads the app through Bitrix24


@pytest.mark.browser
@needs_chromium
def test_try_again_reloads_the_installer_through_bx24(
    devportal: DevportalServer, app_server: AppServer
) -> None:
    """The admin's first install fails (the portal answers 500); "Try again" installs it."""
    from playwright.sync_api import sync_playwright

    client_id = register_app(devportal, app_server)
    admin = Installed(devportal, app_server, devportal.emulator.portals[0].member_id, client_id)
    admin.portal("/install", "POST", client_id=client_id)
    admin.portal("/faults", "POST", rates={"error_500": 1.0})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(f"{admin.portal()['shell_url']}marketplace/app/{client_id}/?user=1")
        frame = page.frame_locator("#slider-frame")
        frame.locator("#install-retry").wait_for(timeout=30_000)
        failed = frame.locator("html").inner_html()
        assert "AUTH_ID" not in failed and "APPLICATION_TOKEN" not in failed
        admin.portal("/faults", "POST", rates={})
        frame.locator("#install-retry").click()
        # installFinish makes the shell reload once more: the admin lands on the main page.
        frame.locator("form#settings").wait_for(timeout=30_000)
        browser.close()
    commands = [e["command"] for e in admin.emu("GET", "/ui-events")]
    assert commands.index("reloadWindow") < commands.index("installFinish")
    admin.settle()
    assert stored(admin).installed
