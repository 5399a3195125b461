"""Caps and the portal's default send window end to end: a robot's sends (a real robot call
from the emulator) and two scenarios' sends on the same contact share the caps; the settings
API keeps the window and the caps and refuses bad ones with a 400 naming the field."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from marketapp.caps import caps_for, room
from marketapp.channel_settings import channel_settings
from marketapp.db import db_session
from marketapp.models import ChannelSettings, Enrollment, EnrollmentState, Portal, Touch
from marketapp.scenarios import launches, versions
from marketapp.scenarios.preview import Selection
from tests.e2e.harness import Installed, wait_for
from tests.support import EMAIL, contact_with, run_robot, session_for, workflow

pytestmark = pytest.mark.e2e

CAPS = [
    {"channel": "sms", "count": 1, "period": "day"},
    {"channel": "email", "count": 3, "period": "week"},
]
EMAIL_STEP = {"type": "send_email", "subject": "Hello {{ contact.NAME }}", "body": "Dear friend"}
SMS_STEP = {"type": "send_sms", "text": "Hi {{ contact.NAME }}"}


def save(installed: Installed, headers: dict[str, str], **data: object) -> requests.Response:
    return requests.post(
        f"{installed.app.url}/api/settings", json=data, headers=headers, timeout=10
    )


def definition(key: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": 1,
        "key": key,
        "name": {"en": key, "ru": key},
        "description": {"en": "A test.", "ru": "Тест."},
        "entity_types": ["CONTACT"],
        "steps": list(steps),
    }


def start_scenario(inst: Installed, defn: dict[str, Any], contact_id: int) -> None:
    token = inst.portal("/tokens", "POST", client_id=inst.client_id, user_id=1)["access_token"]
    with inst.app.app.app_context():
        session = db_session()
        portal = session.scalars(select(Portal)).one()
        version = versions.save(session, portal, defn, author_id=1)
        session.commit()
        launches.launch(
            session,
            portal,
            version,
            Selection("CONTACT", (contact_id,)),
            {},
            1,
            str(token),
            secrets.token_hex(8),
            user={"ID": 1, "NAME": "Admin"},
        )
        session.close()


def settle(inst: Installed) -> None:
    """No job queued and no enrollment in a worker's hands."""

    def busy() -> int:
        with inst.app.app.app_context():
            query = select(func.count()).where(Enrollment.state == EnrollmentState.RUNNING)
            return int(db_session().scalar(query) or 0)

    inst.settle()
    wait_for(lambda: not busy())
    inst.settle()


def touches(inst: Installed) -> list[tuple[str, str, int, datetime]]:
    with inst.app.app.app_context():
        rows = db_session().execute(select(Touch.key, Touch.channel, Touch.entity_id, Touch.at))
        return [(k, c, int(i), a.replace(tzinfo=UTC)) for k, c, i, a in rows]


def test_a_robot_and_two_scenarios_share_the_caps(installed: Installed) -> None:
    installed.portal("/seed", "POST", n=30)
    headers = session_for(installed)
    assert save(installed, headers, caps=CAPS).status_code == 200
    contact = contact_with(installed)
    cid = int(contact["ID"])
    doc = f"CONTACT_{cid}"
    robot_runs = [
        run_robot(installed, "send_email", doc, **EMAIL),
        run_robot(installed, "send_sms", doc, text="Hi from a robot"),
    ]
    settle(installed)
    for wid in robot_runs:  # robots count towards caps but are never held by them
        assert workflow(installed, wid)["return_values"]["status"] == "sent"
    start_scenario(installed, definition("first", EMAIL_STEP), cid)
    settle(installed)
    start_scenario(installed, definition("second", EMAIL_STEP, SMS_STEP), cid)
    settle(installed)

    # The robot's SMS filled the day: the second scenario's SMS step waits for room.
    got = touches(installed)
    assert Counter((c, i) for _k, c, i, _a in got) == {("email", cid): 3, ("sms", cid): 1}
    assert sum(1 for k, *_ in got if k.startswith("robot:")) == 2  # the rest are the scenarios'
    installed.settle()  # nothing counted twice once everything is answered
    assert len(touches(installed)) == 4

    emails = sorted(a for _k, c, _i, a in got if c == "email")
    sms = sorted(a for _k, c, _i, a in got if c == "sms")
    other = int(next(c["ID"] for c in installed.portal("/crm/contact") if int(c["ID"]) != cid))
    now = max(a for *_, a in got) + timedelta(seconds=1)
    with installed.app.app.app_context():
        session = db_session()
        portal = session.scalars(select(Portal)).one()
        caps = caps_for(channel_settings(session, portal))
        refs = [("CONTACT", cid), ("CONTACT", other)]
        by_email = room(session, portal.id, "email", refs, now, caps)
        by_sms = room(session, portal.id, "sms", refs, now, caps)
    # The week is full until the first e-mail is 7 days old; the day until the last SMS is 24 h.
    assert by_email == {("CONTACT", cid): emails[0] + timedelta(days=7), ("CONTACT", other): None}
    assert by_sms == {("CONTACT", cid): sms[-1] + timedelta(days=1), ("CONTACT", other): None}
    with installed.app.app.app_context():
        session = db_session()
        portal = session.scalars(select(Portal)).one()
        later = room(session, portal.id, "email", refs, emails[0] + timedelta(days=7), caps)
    assert later[("CONTACT", cid)] is None


WINDOW = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "20:00"}


def test_window_and_caps_round_trip(installed: Installed) -> None:
    headers = session_for(installed)
    resp = save(installed, headers, send_window=WINDOW, caps=CAPS)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["send_window"] == {**WINDOW, "zone": "portal", "zone_field": None}
    assert body["caps"] == CAPS
    # A partial update keeps them; the window is replaced as a whole when given.
    other = save(installed, headers, sms_max_length=100).json()
    assert (other["send_window"], other["caps"]) == (body["send_window"], CAPS)
    night = {"start": "22:00", "end": "02:00", "zone": "recipient", "zone_field": "uf_crm_tz"}
    assert save(installed, headers, send_window=night).status_code == 400  # lower-case field
    night["zone_field"] = "UF_CRM_TZ"
    changed = save(installed, headers, send_window=night, caps=[]).json()
    assert changed["send_window"]["days"] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert changed["send_window"]["zone_field"] == "UF_CRM_TZ" and changed["caps"] == []
    cleared = save(installed, headers, send_window=None).json()
    assert cleared["send_window"] is None
    got = requests.get(f"{installed.app.url}/api/settings", headers=headers, timeout=10).json()
    assert got["send_window"] is None and got["caps"] == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"caps": [{"channel": "sms", "count": 0, "period": "day"}]}, "caps.0.count"),
        ({"caps": [{"channel": "sms", "count": 1001, "period": "day"}]}, "caps.0.count"),
        ({"caps": [{"channel": "fax", "count": 1, "period": "day"}]}, "caps.0.channel"),
        ({"caps": [{"channel": "sms", "count": 1, "period": "year"}]}, "caps.0.period"),
        ({"caps": [{"channel": "sms", "count": 1}]}, "caps.0.period"),
        ({"caps": [{"channel": "sms", "count": 1, "period": "day"}] * 2}, "two caps per day"),
        ({"caps": {"channel": "sms"}}, "caps"),
        ({"send_window": {"start": "9:00"}}, "send_window: Value error, start: Use the HH:MM"),
        ({"send_window": {"end": "24:00"}}, "end: Use the HH:MM format"),
        ({"send_window": {"days": []}}, "send_window.days"),
        ({"send_window": {"days": ["mon", "mon"]}}, "days[1]"),
        ({"send_window": {"days": ["monday"]}}, "send_window.days.0"),
        ({"send_window": {"zone": "mars"}}, "send_window.zone"),
        ({"send_window": {"surprise": 1}}, "send_window.surprise"),
        ({"send_window": "always"}, "send_window"),
    ],
)
def test_bad_window_or_caps_are_a_400_and_change_nothing(
    installed: Installed, data: dict[str, object], message: str
) -> None:
    headers = session_for(installed)
    assert save(installed, headers, send_window=WINDOW, caps=CAPS).status_code == 200
    resp = save(installed, headers, **data)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "invalid_settings"
    assert message in resp.json()["error_description"], resp.json()
    with installed.app.app.app_context():
        row = db_session().scalars(select(ChannelSettings)).one()
        assert row.caps == CAPS and row.send_window is not None
        assert row.send_window["start"] == "09:00"
