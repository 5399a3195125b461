"""Preview shows when each message would go out under the send window (the scenario's own,
else the portal's default) in the portal's time zone; later steps start from then."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from marketapp.bench_preview import PreviewPortal, make_app, open_portal
from marketapp.db import get_db
from marketapp.devportal import DevportalServer
from marketapp.scenarios.definition import validate_definition
from marketapp.scenarios.preview import Selection, preview_scenario, report_text

pytestmark = pytest.mark.e2e
EMAIL = {"type": "send_email", "subject": "Hi {{ record.NAME }}", "body": "<p>Hello</p>"}
SMS = {"type": "send_sms", "text": "Hi {{ record.NAME }}"}
COMMENT = {"type": "timeline_comment", "text": "Noted"}
OFFICE = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}
FRIDAY_EVENING = datetime(2025, 3, 7, 20, 0, tzinfo=UTC)  # 21:00 in Berlin, the portal's zone


@pytest.fixture(scope="module")
def server() -> Iterator[DevportalServer]:
    with DevportalServer({"limits_enabled": False, "portals": ["standard"]}) as srv:
        yield srv


@pytest.fixture
def portal(tmp_path: Path, database_url: str, server: DevportalServer) -> Iterator[PreviewPortal]:
    server.emulator.reset()
    app = make_app(tmp_path, database_url, server)
    opened = open_portal(server, app)
    opened.seed(contacts=20, companies=0, deals=0, leads=0)
    yield opened
    with app.app_context():
        get_db().engine.dispose()


def definition(*steps: dict[str, Any], window: dict[str, Any] | None = None) -> Any:
    return validate_definition(
        {
            "schema": 1,
            "key": "windowed",
            "name": {"en": "Test", "ru": "Тест"},
            "description": {"en": "A test.", "ru": "Тест."},
            "entity_types": ["CONTACT"],
            "steps": list(steps),
            "policies": {"window": window},
        }
    )


def steps_of(portal: PreviewPortal, defn: Any, **channels: Any) -> list[list[dict[str, Any]]]:
    with portal.app.app_context():
        preview = portal.preview(defn, channels=channels, launched_at=FRIDAY_EVENING)
        report = preview_scenario(preview, Selection("CONTACT", filter={}))
    records = [r["steps"] for r in report.records if r.get("status") == "previewed"]
    shown = report_text(report, "preview")
    assert ("send_at:" in shown) == any("send_at" in s for steps in records for s in steps)
    return records


def test_a_message_outside_the_window_goes_at_the_next_opening(portal: PreviewPortal) -> None:
    records = steps_of(portal, definition(COMMENT, EMAIL, SMS, window=OFFICE))
    ready = [steps for steps in records if steps[1].get("status") == "ready"]
    assert ready
    for comment, email, sms in records:
        assert "send_at" not in comment  # a comment is no message: windows do not hold it
        if email.get("status") != "ready":
            continue
        assert email["at"] == "2025-03-07T21:00+01:00"
        assert email["send_at"] == "2025-03-10T09:00+01:00"  # Monday morning
        assert sms["at"] == "2025-03-10T09:00+01:00"  # the next step starts from then
        if sms.get("status") == "ready":
            assert sms["send_at"] == sms["at"]  # open: it goes at once


def test_the_portal_default_window_applies_when_the_scenario_has_none(
    portal: PreviewPortal,
) -> None:
    night = {"start": "22:00", "end": "02:00"}
    records = steps_of(portal, definition(EMAIL), send_window=night)
    sent = [steps[0] for steps in records if steps[0].get("status") == "ready"]
    assert sent and all(s["send_at"] == "2025-03-07T22:00+01:00" for s in sent)
    own = steps_of(portal, definition(EMAIL, window=OFFICE), send_window=night)
    assert {s[0]["send_at"] for s in own if s[0].get("status") == "ready"} == {
        "2025-03-10T09:00+01:00"
    }


def test_no_window_no_send_time(portal: PreviewPortal) -> None:
    records = steps_of(portal, definition(EMAIL, SMS), send_window=None)
    assert records and not any("send_at" in step for steps in records for step in steps)
