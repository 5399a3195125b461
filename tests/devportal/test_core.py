"""REST envelope, auth errors, OAuth server and the install/update/uninstall lifecycle."""

from __future__ import annotations

import requests

from tests.devportal.conftest import Harness


def test_rest_envelope_with_time_block_and_json_suffix(harness: Harness) -> None:
    p = harness.install()
    for name in ("profile", "profile.json"):
        body = p.call(name).json()
        assert body["result"]["ADMIN"] is True
        assert set(body["time"]) >= {
            "start",
            "finish",
            "duration",
            "processing",
            "date_start",
            "date_finish",
        }


def test_auth_in_query_get_and_form(harness: Harness) -> None:
    p = harness.install()
    resp = requests.get(p.rest + "user.current", params={"auth": p.access_token}, timeout=5)
    assert resp.json()["result"]["ID"] == "1"
    resp = requests.post(p.rest + "user.current", data={"auth": p.access_token}, timeout=5)
    assert resp.json()["result"]["EMAIL"]


def test_unknown_token_expired_token_unknown_method(harness: Harness) -> None:
    p = harness.install()
    resp = p.call("profile", token="nope")
    assert resp.status_code == 401 and resp.json()["error"] == "NO_AUTH_FOUND"
    resp = p.call("no.such.method")
    assert resp.status_code == 404 and resp.json()["error"] == "ERROR_METHOD_NOT_FOUND"
    harness.clock.advance(3601)
    resp = p.call("profile")
    assert resp.status_code == 401 and resp.json()["error"] == "expired_token"


def test_refresh_rotates_and_spent_token_is_invalid_grant(harness: Harness) -> None:
    p = harness.install()
    token_url = harness.server.url + "/oauth/token/"
    params = {
        "grant_type": "refresh_token",
        "client_id": p.client_id,
        "client_secret": p.client_secret,
        "refresh_token": p.refresh_token,
    }
    body = requests.get(token_url, params=params, timeout=5).json()
    assert body["refresh_token"] != p.refresh_token
    assert body["domain"] == harness.server.emulator.server_host
    assert body["member_id"] == p.member_id and body["user_id"] == 1 and body["expires_in"] == 3600
    assert p.ok("profile", token=body["access_token"])["ID"] == "1"
    again = requests.get(token_url, params=params, timeout=5)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    wrong = requests.get(token_url, params={**params, "client_secret": "x"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    harness.post(f"/portals/{p.member_id}/faults", {"payment_required": {p.client_id: True}})
    paid = requests.get(
        token_url, params={**params, "refresh_token": body["refresh_token"]}, timeout=5
    )
    assert paid.json()["error"] == "PAYMENT_REQUIRED"


def test_oauth_app_info_and_portal_app_info(harness: Harness) -> None:
    p = harness.install(finish=False)
    info = requests.get(
        harness.server.url + "/rest/app.info", params={"auth": p.access_token}, timeout=5
    )
    result = info.json()["result"]
    assert result["client_id"] == p.client_id
    assert result["install"]["member_id"] == p.member_id
    assert result["install"]["installed"] is False
    assert p.ok("app.info")["INSTALLED"] is False
    harness.post(f"/portals/{p.member_id}/install-finish", {"client_id": p.client_id})
    assert p.ok("app.info")["INSTALLED"] is True


def test_installer_form_has_documented_fields(harness: Harness) -> None:
    app = harness.register()
    member = harness.get("/portals/1")["member_id"]
    form = harness.post(f"/portals/{member}/install", {"client_id": app["client_id"]})["form"]
    assert set(form["query"]) == {"DOMAIN", "PROTOCOL", "LANG", "APP_SID"}
    assert set(form["fields"]) == {
        "AUTH_ID",
        "AUTH_EXPIRES",
        "REFRESH_ID",
        "SERVER_ENDPOINT",
        "APPLICATION_TOKEN",
        "APPLICATION_SCOPE",
        "member_id",
        "status",
        "PLACEMENT",
    }
    assert form["fields"]["PLACEMENT"] == "DEFAULT"
    assert form["action"].startswith(harness.receiver.url + "/install?DOMAIN=")


def test_install_finish_delivers_onappinstall_with_full_auth(harness: Harness) -> None:
    p = harness.install(finish=False)
    assert (
        p.ok("event.bind", {"event": "ONAPPINSTALL", "handler": harness.receiver.url + "/events"})
        is True
    )
    assert harness.deliveries() == []  # nothing before installFinish
    harness.post(f"/portals/{p.member_id}/install-finish", {"client_id": p.client_id})
    harness.deliveries()
    hit = harness.receiver.last("/events")
    assert hit["content_type"] == "application/x-www-form-urlencoded"
    form = hit["form"]
    assert form["event"] == "ONAPPINSTALL" and form["data"]["INSTALLED"] == "Y"
    assert set(form["auth"]) == {
        "access_token",
        "expires",
        "expires_in",
        "scope",
        "domain",
        "server_endpoint",
        "status",
        "client_endpoint",
        "member_id",
        "user_id",
        "refresh_token",
        "application_token",
    }
    assert form["auth"]["application_token"] == p.application_token


def test_update_removes_handlers_and_robots(harness: Harness) -> None:
    p = harness.install()
    url = harness.receiver.url
    p.ok("event.bind", {"event": "ONAPPUPDATE", "handler": url + "/events"})
    p.ok("bizproc.robot.add", {"CODE": "r1", "HANDLER": url + "/robot", "NAME": "R"})
    res = harness.post(
        f"/portals/{p.member_id}/update",
        {"client_id": p.client_id, "version": 2, "new_application_token": True},
    )
    harness.deliveries()
    form = harness.receiver.last("/events")["form"]
    assert form["data"] == {"VERSION": "2", "PREVIOUS_VERSION": "1", "LANGUAGE_ID": "en"}
    assert form["auth"]["application_token"] == res["application_token"] != p.application_token
    assert p.ok("event.get") == [] and p.ok("bizproc.robot.list") == []


def test_uninstall_sends_no_tokens_and_revokes(harness: Harness) -> None:
    p = harness.install()
    p.ok("event.bind", {"event": "ONAPPUNINSTALL", "handler": harness.receiver.url + "/events"})
    p.ok(
        "placement.bind",
        {"PLACEMENT": "CRM_CONTACT_LIST_TOOLBAR", "HANDLER": harness.receiver.url + "/p"},
    )
    harness.post(f"/portals/{p.member_id}/uninstall", {"client_id": p.client_id, "clean": 1})
    harness.deliveries()
    form = harness.receiver.last("/events")["form"]
    assert form["data"]["CLEAN"] == "1"
    assert set(form["auth"]) == {
        "domain",
        "server_endpoint",
        "status",
        "client_endpoint",
        "member_id",
        "application_token",
    }
    assert p.call("profile").status_code == 401
    regs = harness.get(f"/portals/{p.member_id}/registrations")
    assert regs["placements"] == [] and regs["events"] == []


def test_open_placement_form_options(harness: Harness) -> None:
    p = harness.install()
    url = harness.receiver.url + "/menu"
    p.ok("placement.bind", {"PLACEMENT": "CRM_CONTACT_LIST_MENU", "HANDLER": url, "TITLE": "Run"})
    form = harness.post(
        f"/portals/{p.member_id}/open",
        {
            "client_id": p.client_id,
            "user_id": 2,
            "placement": "CRM_CONTACT_LIST_MENU",
            "options": {"ID": "42"},
        },
    )
    assert form["fields"]["PLACEMENT_OPTIONS"] == '{"ID": "42"}'
    html = requests.post(
        harness.server.url + f"/_emulator/portals/{p.member_id}/open?format=html",
        json={"client_id": p.client_id, "placement": "CRM_CONTACT_LIST_MENU"},
        timeout=5,
    )
    assert "submit()" in html.text and "PLACEMENT_OPTIONS" not in html.text  # omitted when empty


def test_placements_hidden_before_install_finish(harness: Harness) -> None:
    p = harness.install(finish=False)
    p.ok(
        "placement.bind",
        {"PLACEMENT": "CRM_CONTACT_LIST_TOOLBAR", "HANDLER": harness.receiver.url + "/p"},
    )
    resp = requests.post(
        harness.server.url + f"/_emulator/portals/{p.member_id}/open",
        json={"client_id": p.client_id, "placement": "CRM_CONTACT_LIST_TOOLBAR"},
        timeout=5,
    )
    assert resp.status_code == 404


def test_non_admin_gets_access_denied_and_webhook_is_not_app_context(harness: Harness) -> None:
    p = harness.install()
    user_token = p.token_for(2)
    resp = p.call("event.bind", {"event": "ONAPPINSTALL", "handler": "http://x/"}, token=user_token)
    assert resp.status_code == 403 and resp.json()["error"] == "ACCESS_DENIED"
    hook = harness.post(
        f"/portals/{p.member_id}/webhooks", {"user_id": 1, "scopes": ["crm", "placement"]}
    )
    resp = requests.post(hook["url"] + "placement.bind", json={"PLACEMENT": "X"}, timeout=5)
    assert resp.status_code == 403 and resp.json()["error"] == "WRONG_AUTH_TYPE"
    resp = requests.post(hook["url"] + "app.info", timeout=5)
    assert resp.json()["error_description"] == "Application context required"
    assert requests.post(hook["url"] + "crm.contact.list", timeout=5).status_code == 200


def test_insufficient_scope(harness: Harness) -> None:
    p = harness.install(scopes=["crm"])
    resp = p.call("bizproc.robot.list")
    assert resp.status_code == 403 and resp.json()["error"] == "insufficient_scope"
