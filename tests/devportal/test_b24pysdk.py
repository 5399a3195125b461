"""The official SDK as an independent client: payload parsers and the REST client over TLS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from b24pysdk import BitrixApp, BitrixToken, Client
from b24pysdk.credentials import OAuthEventData, OAuthPlacementData, OAuthWorkflowData

from marketapp.devportal import DevportalServer, FakeClock
from tests.devportal.conftest import Harness, Receiver


def test_sdk_parses_robot_call(harness: Harness) -> None:
    p = harness.install()
    p.ok(
        "bizproc.robot.add",
        {
            "CODE": "r",
            "HANDLER": harness.receiver.url + "/robot",
            "NAME": "R",
            "AUTH_USER_ID": 1,
            "PROPERTIES": {"text": {"Name": "Text"}},
        },
    )
    harness.post(
        f"/portals/{p.member_id}/robots/run",
        {
            "client_id": p.client_id,
            "code": "r",
            "document_id": "LEAD_7",
            "properties": {"text": "hi"},
            "timeout_duration": 30,
        },
    )
    harness.deliveries()
    data = OAuthWorkflowData.from_dict(dict(harness.receiver.last("/robot")["pairs"]))
    assert data.code == "r" and data.document_id == ["crm", "CCrmDocumentLead", "LEAD_7"]
    assert data.use_subscription is True and data.timeout_duration == 30
    assert data.properties == {"text": "hi"}
    assert data.auth.member_id == p.member_id


def test_sdk_parses_events_with_and_without_tokens(harness: Harness) -> None:
    p = harness.install(finish=False)
    for event in ("ONAPPINSTALL", "ONAPPUNINSTALL"):
        p.ok("event.bind", {"event": event, "handler": harness.receiver.url + "/ev"})
    harness.post(f"/portals/{p.member_id}/install-finish", {"client_id": p.client_id})
    harness.post(f"/portals/{p.member_id}/uninstall", {"client_id": p.client_id})
    harness.deliveries()
    install, uninstall = (OAuthEventData.from_dict(dict(h["pairs"])) for h in harness.receiver.hits)
    assert install.event == "ONAPPINSTALL" and not install.is_system
    assert uninstall.event == "ONAPPUNINSTALL" and uninstall.is_system
    assert uninstall.data == {"LANGUAGE_ID": "en", "CLEAN": "0"}


def test_sdk_parses_placement_post(harness: Harness) -> None:
    p = harness.install()
    p.ok(
        "placement.bind",
        {"PLACEMENT": "CRM_DEAL_DETAIL_TOOLBAR", "HANDLER": harness.receiver.url + "/pl"},
    )
    form = harness.post(
        f"/portals/{p.member_id}/open",
        {"client_id": p.client_id, "placement": "CRM_DEAL_DETAIL_TOOLBAR", "options": {"ID": "5"}},
    )
    data = OAuthPlacementData.from_dict({**form["query"], **form["fields"]})
    assert data.placement == "CRM_DEAL_DETAIL_TOOLBAR" and data.placement_options == {"ID": "5"}
    assert (
        data.member_id == p.member_id and data.oauth_token.access_token == form["fields"]["AUTH_ID"]
    )


@pytest.fixture(scope="module")
def tls_server() -> Iterator[DevportalServer]:
    with DevportalServer({"limits_enabled": False}, clock=FakeClock(), tls=True) as srv:
        yield srv


def test_sdk_client_over_tls(
    tls_server: DevportalServer, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_server.ca_file is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server.ca_file))
    harness = Harness(tls_server, receiver, FakeClock())
    p = harness.install()
    harness.post(f"/portals/{p.member_id}/seed", {"n": 6})
    domain = tls_server.emulator.portal_domain(tls_server.emulator.portal(p.member_id))
    token = BitrixToken(
        domain=domain,
        auth_token=p.access_token,
        refresh_token=p.refresh_token,
        bitrix_app=BitrixApp(client_id=p.client_id, client_secret=p.client_secret),
    )
    client = Client(token)
    assert client.profile().result["ADMIN"] is True
    contact = client.crm.contact.get(bitrix_id=1).result
    assert contact["ID"] == "1"
    listing = client.crm.contact.list(select=["ID", "NAME"])
    assert len(listing.result) == 6
    batch = client.call_batch({"me": client.profile(), "c": client.crm.contact.get(bitrix_id=2)})
    assert batch.result.result["c"]["ID"] == "2" and batch.result.result["me"]["ID"] == "1"
    assert batch.result.result_error == []
