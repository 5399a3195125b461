"""The "Run scenario" robot over HTTP: native bursts become one launch, each call answered once.

The emulator plays a native smart scenario started on N selected rows: N runs of the robot in a
burst (``/robots/run``), each delivered to the app's handler by its queue. The app groups them
into one launch, and answers every workflow with ``bizproc.event.send`` (``sends`` counts them).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select, update

from marketapp.db import db_session
from marketapp.devportal import DevportalServer
from marketapp.models import Enrollment, Launch, Portal, RobotCall, RobotCallState, Scenario
from marketapp.robots import sweep_robot_calls
from marketapp.scenarios import robot as scenario_robot
from marketapp.scenarios import versions
from marketapp.scenarios.launches import stop
from marketapp.scenarios.robot import parse_values, sweep_waiting_calls
from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.e2e.harness import AppServer, Installed, install, start_app
from tests.support import run_robot, seeded_contacts, session_for, token_from

pytestmark = pytest.mark.e2e

COMMENT = {"type": "timeline_comment", "text": "Hello {{ contact.NAME }} ({{ params.tag }})"}
WAIT_HOUR = {"type": "wait", "minutes": 60}


def definition(key: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": 1,
        "key": key,
        "name": {"en": f"Robot {key}", "ru": f"Робот {key}"},
        "description": {"en": "Started by the robot.", "ru": "Запускается роботом."},
        "entity_types": ["CONTACT"],
        "parameters": [
            {"key": "tag", "type": "string", "label": {"en": "Tag", "ru": "Метка"}},
            {
                "key": "days",
                "type": "integer",
                "label": {"en": "Days", "ru": "Дней"},
                "default": 3,
                "min": 1,
            },
        ],
        "steps": list(steps) or [COMMENT],
    }


@pytest.fixture
def app_server(
    tmp_path: Path, database_url: str, devportal: DevportalServer
) -> Iterator[AppServer]:
    """The app with a group delay long enough for a burst delivered on a busy machine."""
    devportal.emulator.reset()
    server = start_app(tmp_path, database_url, devportal, robot_group_delay=1.5)
    yield server
    server.close()


@pytest.fixture
def robot_portal(devportal: DevportalServer, app_server: AppServer) -> Installed:
    installed = install(devportal, app_server)
    installed.portal("/seed", "POST", n=300)
    return installed


def save(installed: Installed, *steps: dict[str, Any], key: str = "robot-run") -> None:
    with installed.app.app.app_context():
        session = db_session()
        portal = session.scalars(select(Portal)).one()
        versions.save(session, portal, definition(key, *steps), author_id=1)
        session.commit()


def deactivate(installed: Installed, key: str) -> None:
    with installed.app.app.app_context():
        session = db_session()
        scenario = session.scalars(select(Scenario).where(Scenario.key == key)).one()
        scenario.active = False
        session.commit()


def burst(installed: Installed, ids: list[int], **properties: Any) -> list[str]:
    """Run the robot on every record at once, as a native smart scenario on N rows does."""
    with ThreadPoolExecutor(8) as pool:
        runs = pool.map(
            lambda i: run_robot(installed, "run_scenario", f"CONTACT_{i}", **properties), ids
        )
        return list(runs)


def flows(installed: Installed, wids: list[str]) -> list[dict[str, Any]]:
    by_id = {w["id"]: w for w in installed.emu("GET", "/workflows")}
    return [by_id[w] for w in wids]


def launches(installed: Installed) -> list[tuple[int, int, int]]:
    """(launch id, total, enrollments) of every launch."""
    with installed.app.app.app_context():
        session = db_session()
        return [
            (row.id, row.total, _enrolled(session, row.id))
            for row in session.scalars(select(Launch).order_by(Launch.id))
        ]


def _enrolled(session: Any, launch_id: int) -> int:
    query = select(func.count()).where(Enrollment.launch_id == launch_id)
    return int(session.scalar(query) or 0)


def contact_ids(installed: Installed, n: int) -> list[int]:
    return [int(c["ID"]) for c in seeded_contacts(installed)][:n]


def test_a_burst_of_300_calls_is_one_launch_and_each_call_is_answered_once(
    robot_portal: Installed,
) -> None:
    save(robot_portal)
    ids = contact_ids(robot_portal, 300)
    wids = burst(robot_portal, ids, scenario="robot-run", values="tag = vip", wait="no")
    robot_portal.settle()
    assert robot_portal.app.worker.errors == []

    ((launch_id, total, enrolled),) = launches(robot_portal)
    assert (total, enrolled) == (300, 300)
    for flow in flows(robot_portal, wids):
        assert flow["sends"] == 1, flow["log"]
        assert flow["state"] == "completed"
        assert flow["return_values"] == {"status": "started", "launch_id": str(launch_id)} | {
            "reason": ""
        }
    with robot_portal.app.app.app_context():
        calls = list(db_session().scalars(select(RobotCall)))
        assert {c.state for c in calls} == {RobotCallState.DONE}
        assert {c.launch_id for c in calls} == {launch_id}
        assert all(c.user_id == 1 and c.user_token is None for c in calls)
        row = db_session().get(Launch, launch_id)
        assert row is not None and row.user_id == 1
        assert row.params == {"tag": "vip", "days": 3}


def test_different_properties_or_users_make_different_launches(robot_portal: Installed) -> None:
    save(robot_portal)
    ids = contact_ids(robot_portal, 6)
    wids = burst(robot_portal, ids[:2], scenario="robot-run", values="tag = a", wait="no")
    wids += burst(robot_portal, ids[2:4], scenario="robot-run", values='{"tag": "b"}', wait="no")
    for i in ids[4:]:  # the same properties, run as another user
        wf = robot_portal.portal(
            "/robots/run",
            "POST",
            client_id=robot_portal.client_id,
            code="run_scenario",
            document_id=f"CONTACT_{i}",
            properties={"scenario": "robot-run", "values": "tag = a", "wait": "no"},
            run_as=2,
        )
        wids.append(wf["id"])
    robot_portal.settle()
    assert sorted(t for _id, t, _e in launches(robot_portal)) == [2, 2, 2]
    assert all(f["sends"] == 1 for f in flows(robot_portal, wids))


def test_wait_yes_answers_when_the_record_run_ends(robot_portal: Installed) -> None:
    save(robot_portal)
    ids = contact_ids(robot_portal, 20)
    wids = burst(robot_portal, ids, scenario="robot-run", values="tag = vip", wait="yes")
    robot_portal.settle()
    ((launch_id, total, _e),) = launches(robot_portal)
    assert total == 20
    for flow in flows(robot_portal, wids):
        assert flow["sends"] == 1, flow["log"]
        assert flow["return_values"]["status"] == "done", flow["return_values"]
        assert flow["return_values"]["launch_id"] == str(launch_id)
    comments = robot_portal.portal(f"/timeline?entity=contact&id={ids[0]}")["comments"]
    assert any("(vip)" in c["COMMENT"] for c in comments)


def test_wait_yes_is_not_answered_before_the_run_ends(robot_portal: Installed) -> None:
    save(robot_portal, WAIT_HOUR, COMMENT)
    ids = contact_ids(robot_portal, 10)
    wids = burst(robot_portal, ids, scenario="robot-run", values="tag = later", wait="yes")
    robot_portal.settle()
    ((launch_id, total, _e),) = launches(robot_portal)
    assert total == 10
    assert [f["sends"] for f in flows(robot_portal, wids)] == [0] * 10  # still running
    with robot_portal.app.app.app_context():
        session = db_session()
        portal = session.scalars(select(Portal)).one()
        stop(session, portal, launch_id)
        sweep_waiting_calls()  # the safety net answers what ended outside the engine
    robot_portal.settle()
    for flow in flows(robot_portal, wids):
        assert flow["sends"] == 1, flow["log"]
        assert flow["return_values"]["status"] == "stopped"
    with robot_portal.app.app.app_context():
        sweep_waiting_calls()  # nothing left: no second answer
    robot_portal.settle()
    assert [f["sends"] for f in flows(robot_portal, wids)] == [1] * 10


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({"scenario": "nope", "wait": "yes"}, "scenario_not_found"),
        ({"scenario": "sleeping", "wait": "yes"}, "scenario_inactive"),
        ({"scenario": "robot-run", "values": "days = 0", "wait": "yes"}, "invalid_values"),
        ({"scenario": "robot-run", "values": "colour = red", "wait": "no"}, "invalid_values"),
        ({"scenario": "robot-run", "values": "{not json", "wait": "no"}, "invalid_values"),
        ({"scenario": "robot-run", "wait": "maybe"}, "invalid_settings"),
    ],
)
def test_a_call_that_cannot_launch_is_answered_failed(
    robot_portal: Installed, properties: dict[str, Any], reason: str
) -> None:
    save(robot_portal)
    save(robot_portal, key="sleeping")
    deactivate(robot_portal, "sleeping")
    wids = burst(robot_portal, contact_ids(robot_portal, 3), **properties)
    robot_portal.settle()
    assert launches(robot_portal) == []
    for flow in flows(robot_portal, wids):
        assert flow["sends"] == 1
        assert flow["return_values"]["status"] == "failed"
        assert flow["return_values"]["reason"] == reason, flow["log"]


def test_the_settings_page_lists_the_active_scenarios(robot_portal: Installed) -> None:
    save(robot_portal)
    save(robot_portal, key="sleeping")
    save(robot_portal, key="second")
    deactivate(robot_portal, "sleeping")
    form = robot_portal.portal(
        "/open",
        "POST",
        client_id=robot_portal.client_id,
        placement="DEFAULT",
        user_id=1,
        options={"code": "run_scenario", "current_values": {"scenario": "second"}},
    )
    # What the emulator's robot designer posts: the page form, at the robot's settings handler.
    query = form["action"].partition("?")[2]
    url = f"{robot_portal.app.url}/placements/robot-settings?{query}"
    page = requests.post(url, data=form["fields"], timeout=30)
    assert page.status_code == 200, page.text
    token_from(page.text)  # a working page session
    html = page.text
    assert '<option value="robot-run"' in html and "Robot robot-run (robot-run)" in html
    assert '<option value="second" data-params="tag (string), days (integer)" selected' in html
    assert 'value="sleeping"' not in html
    assert session_for(robot_portal)  # the page did not break the portal's sessions


def test_values_are_key_value_lines_or_json() -> None:
    assert parse_values("tag = vip\n\n# note\ndays=4") == {"tag": "vip", "days": "4"}
    assert parse_values(' {"tag": "vip", "days": 4} ') == {"tag": "vip", "days": 4}
    assert parse_values("") == {}
    for bad in ("tag vip", "[1, 2]", "{oops"):
        with pytest.raises(ValueError):
            parse_values(bad)


def test_a_worker_dying_after_the_launch_makes_no_second_launch(
    robot_portal: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launch commits, then the worker dies before the calls are linked to it: once the
    calls' lease runs out they are taken over, and the group's key finds the same launch."""
    save(robot_portal)
    real = scenario_robot._joined
    crashes: list[int] = []

    def dies_once(*args: Any) -> Any:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("worker killed")
        return real(*args)

    monkeypatch.setattr(scenario_robot, "_joined", dies_once)
    wids = burst(robot_portal, contact_ids(robot_portal, 40), scenario="robot-run", wait="no")
    robot_portal.settle()
    assert crashes and [t for _id, t, _e in launches(robot_portal)] == [40]
    assert [f["sends"] for f in flows(robot_portal, wids)] == [0] * 40
    with robot_portal.app.app.app_context():  # the dead worker's lease runs out
        session = db_session()
        session.execute(update(RobotCall).values(lease_until=datetime.now(UTC) - timedelta(1)))
        session.commit()
        sweep_robot_calls()
    robot_portal.settle()
    ((launch_id, total, enrolled),) = launches(robot_portal)
    assert (total, enrolled) == (40, 40)
    for flow in flows(robot_portal, wids):
        assert flow["sends"] == 1
        assert flow["return_values"]["launch_id"] == str(launch_id)


def test_a_record_the_scenario_does_not_run_on_is_answered_failed(robot_portal: Installed) -> None:
    save(robot_portal)  # contacts only
    wid = run_robot(robot_portal, "run_scenario", "DEAL_1", scenario="robot-run", wait="yes")
    robot_portal.settle()
    (flow,) = flows(robot_portal, [wid])
    assert flow["sends"] == 1
    assert flow["return_values"]["reason"] == "unsupported_document"
    assert launches(robot_portal) == []


@pytest.mark.browser
@needs_chromium
def test_the_settings_page_in_chromium_picks_an_active_scenario(robot_portal: Installed) -> None:
    """In the CRM shell the robot's settings offer the active scenarios; the shown one is kept
    for a new robot and a pick is sent with ``setPropertyValue``, its parameters shown."""
    save(robot_portal)
    save(robot_portal, key="second")
    save(robot_portal, key="sleeping")
    deactivate(robot_portal, "sleeping")
    base = robot_portal.portal()["shell_url"].rstrip("/")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/crm/contact/details/1/?user=1")
            page.click("#robot-settings .menu-button")
            page.click("#robot-settings li[data-code=run_scenario]")
            picker = page.frame_locator("#slider-frame").locator("select[name=scenario]")
            picker.wait_for(timeout=10_000)
            options = picker.locator("option").evaluate_all("os => os.map(o => o.value)")
            picker.select_option("second")
            hint = page.frame_locator("#slider-frame").locator("#scenario-params")
            assert "days (integer)" in hint.inner_text()
            page.wait_for_timeout(300)
        finally:
            browser.close()
    assert options == ["robot-run", "second"]
    sent = [
        e["params"]
        for e in robot_portal.emu("GET", "/ui-events")
        if e["command"] == "setPropertyValue"
    ]
    assert sent[0] == {"scenario": "robot-run"} and sent[-1] == {"scenario": "second"}
