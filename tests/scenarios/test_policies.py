"""Policies enforced by the engine, over HTTP on the emulator under a controlled clock: re-entry
(each rule × each way in: a launch, the run-scenario robot, a schedule), deactivation that keeps
enrollments asleep or drops them, an exit goal met mid-scenario, a send window, and frequency
caps shared between a robot and scenarios."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from marketapp.bench_launch import deliveries
from marketapp.bitrix.client import client_for
from marketapp.channel_settings import channel_settings
from marketapp.models import Enrollment, LaunchEvent, LaunchState, Portal, Scenario
from marketapp.scenarios import activation
from marketapp.scenarios import schedules as sch
from marketapp.scenarios.preview import Selection
from tests.e2e.harness import Installed
from tests.scenarios.test_engine import (
    COMMENT,
    SMS,
    Clock,
    _sms_phone,
    all_ids,
    definition,
    in_app,
    settle,
    start,
    states,
    status,
    sweep,
)
from tests.support import run_robot, workflow

pytestmark = pytest.mark.e2e

DAY_WAIT = {"type": "wait", "minutes": 24 * 60}
MINUTE_WAIT = {"type": "wait", "minutes": 1}
SMS_ONLY = {**SMS, "text": "Reminder for {{ contact.NAME }}"}


def with_policies(*steps: dict[str, Any], key: str = "policy", **policies: Any) -> Any:
    defn = definition(*steps, key=key)
    defn["policies"] = policies
    return defn


def portal_of(session: Any) -> Portal:
    portal: Portal = session.scalars(select(Portal)).one()
    return portal


# -- re-entry -----------------------------------------------------------------------------------


def by_launch(inst: Installed, defn: Any, ids: list[int]) -> int:
    return start(inst, defn, Selection("CONTACT", tuple(ids)))


def by_robot(inst: Installed, defn: Any, ids: list[int]) -> int:
    """The run-scenario robot on each record (a native burst): the launch it makes."""
    wids = [
        run_robot(inst, "run_scenario", f"CONTACT_{i}", scenario=defn["key"], values="", wait="no")
        for i in ids
    ]
    settle(inst)
    assert all(workflow(inst, w)["state"] == "completed" for w in wids)

    def newest(session: Any) -> int:
        from marketapp.models import Launch

        return int(session.scalars(select(Launch.id).order_by(Launch.id.desc())).first())

    launch_id: int = in_app(inst, newest)
    return launch_id


def by_schedule(inst: Installed, defn: Any, ids: list[int]) -> int:
    """A daily schedule on the segment ``ID <= max(ids)`` (the first contacts), run once."""
    t0 = datetime.now(UTC)

    def run(session: Any) -> int:
        rule = sch.Rule("daily", "00:00", zone="UTC")
        segment = {"<=ID": max(ids)}
        row = sch.create_schedule(
            session, portal_of(session), defn["key"], rule, now=t0, segment=segment
        )
        session.commit()
        assert row.next_run_at is not None
        (made,) = sch.run_due(session, row.next_run_at + timedelta(seconds=1))
        return int(made)

    launch_id: int = in_app(inst, run)
    settle(inst)
    return launch_id


WAYS: dict[str, Callable[[Installed, Any, list[int]], int]] = {
    "launch": by_launch,
    "robot": by_robot,
    "schedule": by_schedule,
}
# The second entry while the first still waits: (its states, the first launch's states).
WHILE_IN = {
    "never": ("skipped:reentry_never", "waiting"),
    "while_active": ("skipped:reentry_active", "waiting"),
    "restart": ("waiting", "stopped:restarted"),
    "always": ("waiting", "waiting"),
}


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("rule", list(WHILE_IN))
def test_reentry_rule_applies_however_the_record_enters(
    seeded: Installed, clock: Clock, rule: str, way: str
) -> None:
    defn = with_policies(DAY_WAIT, COMMENT, key=f"re-{rule}".replace("_", "-"), reentry=rule)
    ids = sorted(all_ids(seeded))[:3]
    first = by_launch(seeded, defn, ids)
    settle(seeded)
    assert states(seeded, first) == {"waiting": 3}

    second = WAYS[way](seeded, defn, ids)
    settle(seeded)
    now_in, before = WHILE_IN[rule]
    assert states(seeded, second) == {now_in: 3}, (rule, way)
    assert states(seeded, first) == {before: 3}, (rule, way)
    if now_in.startswith("skipped"):
        report = status(seeded, second)
        assert report["counters"]["skipped"] == {now_in.split(":")[1]: 3}


@pytest.mark.parametrize(
    ("rule", "after_leaving"), [("never", "skipped:reentry_never"), ("while_active", "waiting")]
)
def test_after_leaving_never_still_refuses_while_active_lets_in(
    seeded: Installed, clock: Clock, rule: str, after_leaving: str
) -> None:
    from marketapp.scenarios.launches import stop

    defn = with_policies(DAY_WAIT, COMMENT, key=f"left-{rule}".replace("_", "-"), reentry=rule)
    ids = sorted(all_ids(seeded))[:2]
    first = by_launch(seeded, defn, ids)
    settle(seeded)
    in_app(seeded, lambda s: stop(s, portal_of(s), first))
    again = by_launch(seeded, defn, ids)
    settle(seeded)
    assert states(seeded, again) == {after_leaving: 2}


# -- deactivation -------------------------------------------------------------------------------


def scenario_row(session: Any, key: str) -> Scenario:
    found: Scenario = session.scalars(select(Scenario).where(Scenario.key == key)).one()
    return found


def comments_on(inst: Installed, ids: list[int]) -> int:
    return sum(
        1
        for i in ids
        for c in inst.portal(f"/timeline?entity=contact&id={i}")["comments"]
        if "Checked" in str(c.get("COMMENT"))
    )


def test_sleeping_enrollments_resume_at_reactivation(seeded: Installed, clock: Clock) -> None:
    defn = with_policies(MINUTE_WAIT, COMMENT, key="sleepy")
    ids = sorted(all_ids(seeded))[:5]
    launch_id = by_launch(seeded, defn, ids)
    settle(seeded)
    assert states(seeded, launch_id) == {"waiting": 5}

    slept = in_app(
        seeded, lambda s: activation.deactivate(s, portal_of(s), scenario_row(s, "sleepy"), "keep")
    )
    assert slept["sleeping"] == 5
    report = status(seeded, launch_id)
    assert report["state"] == LaunchState.SLEEPING.value and report["counters"]["sleeping"] == 5

    clock.offset = timedelta(minutes=2)  # the wait ends while asleep: nothing runs
    sweep(seeded)
    assert states(seeded, launch_id) == {"waiting": 5} and comments_on(seeded, ids) == 0

    woke = in_app(seeded, lambda s: activation.activate(s, portal_of(s), scenario_row(s, "sleepy")))
    assert woke["woken"] == 5
    settle(seeded)
    assert states(seeded, launch_id) == {"done": 5}
    assert comments_on(seeded, ids) == 5
    report = status(seeded, launch_id)
    assert report["state"] == "done" and report["counters"]["sleeping"] == 0


def test_dropping_enrollments_stops_them(seeded: Installed, clock: Clock) -> None:
    defn = with_policies(MINUTE_WAIT, COMMENT, key="dropped")
    ids = sorted(all_ids(seeded))[:4]
    launch_id = by_launch(seeded, defn, ids)
    settle(seeded)
    dropped = in_app(
        seeded, lambda s: activation.deactivate(s, portal_of(s), scenario_row(s, "dropped"), "drop")
    )
    assert dropped["dropped"] == 4
    assert states(seeded, launch_id) == {"stopped:dropped": 4}
    with pytest.raises(Exception, match="inactive"):
        by_launch(seeded, defn, ids)


# -- the exit goal ------------------------------------------------------------------------------


def test_goal_met_mid_scenario_ends_the_record_as_goal(seeded: Installed, clock: Clock) -> None:
    goal = {"rules": [{"left": {"field": "COMMENTS"}, "op": "eq", "right": {"value": "paid"}}]}
    defn = with_policies(MINUTE_WAIT, COMMENT, key="goal", goal=goal)
    ids = sorted(all_ids(seeded))[:4]
    launch_id = by_launch(seeded, defn, ids)
    settle(seeded)
    assert states(seeded, launch_id) == {"waiting": 4}

    def pay(session: Any) -> None:
        client_for(portal_of(session)).call(
            "crm.contact.update", {"id": ids[0], "fields": {"COMMENTS": "paid"}}
        )

    in_app(seeded, pay)
    clock.offset = timedelta(minutes=2)
    sweep(seeded)
    assert states(seeded, launch_id) == {"goal": 1, "done": 3}
    assert comments_on(seeded, ids[:1]) == 0 and comments_on(seeded, ids[1:]) == 3
    report = status(seeded, launch_id)
    assert report["counters"]["goal"] == 1
    assert report["steps"]["steps[1]"]["goal"] == 1  # checked before the comment step
    assert report["conversion"] == 0.25


# -- send windows and caps ----------------------------------------------------------------------


def at(clock: Clock, moment: datetime) -> None:
    clock.offset = moment - datetime.now(UTC)


def sms_count(inst: Installed) -> int:
    return sum(deliveries(inst.devportal, inst.app.app, inst.member_id).sms.values())


def test_a_step_outside_the_window_waits_for_the_next_opening(
    seeded: Installed, clock: Clock
) -> None:
    window = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}
    defn = with_policies(SMS_ONLY, key="windowed", window=window)
    friday_evening = datetime(2026, 12, 4, 19, 30, tzinfo=UTC)  # a Friday; the portal is on UTC
    at(clock, friday_evening)
    ids = sorted(int(c["ID"]) for c in seeded.portal("/crm/contact") if _sms_phone(c))[:3]
    launch_id = by_launch(seeded, defn, ids)
    settle(seeded)
    assert sms_count(seeded) == 0

    def due(session: Any) -> set[datetime]:
        rows = session.scalars(select(Enrollment).where(Enrollment.launch_id == launch_id))
        return {r.next_at.replace(tzinfo=UTC) for r in rows}

    monday = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert in_app(seeded, due) == {monday}
    kinds = in_app(
        seeded,
        lambda s: {
            e.kind for e in s.scalars(select(LaunchEvent).where(LaunchEvent.launch_id == launch_id))
        },
    )
    assert "deferred" in kinds

    at(clock, monday - timedelta(minutes=1))
    sweep(seeded)
    assert sms_count(seeded) == 0
    at(clock, monday + timedelta(minutes=1))
    sweep(seeded)
    delivered = deliveries(seeded.devportal, seeded.app.app, seeded.member_id).sms
    assert states(seeded, launch_id) == {"done": 3} and set(delivered) == set(ids)


def test_caps_are_shared_between_a_robot_and_two_scenarios(seeded: Installed, clock: Clock) -> None:
    people = [c for c in seeded.portal("/crm/contact") if _sms_phone(c)]
    a, b = int(people[0]["ID"]), int(people[1]["ID"])

    def cap(session: Any) -> None:
        settings = channel_settings(session, portal_of(session))
        settings.caps = [{"channel": "sms", "count": 1, "period": "day"}]
        session.commit()

    in_app(seeded, cap)
    wid = run_robot(seeded, "send_sms", f"CONTACT_{a}", text="From the robot")
    settle(seeded)
    assert workflow(seeded, wid)["state"] == "completed"
    assert deliveries(seeded.devportal, seeded.app.app, seeded.member_id).sms[a] == 1

    skipping = by_launch(seeded, with_policies(SMS_ONLY, key="cap-skip", capped="skip"), [a, b])
    settle(seeded)
    got = deliveries(seeded.devportal, seeded.app.app, seeded.member_id).sms
    assert (got[a], got[b]) == (1, 1)  # a was capped by the robot's SMS, b was not
    assert status(seeded, skipping)["steps"]["steps[0]"]["skipped"] == {"capped": 1}

    deferring = by_launch(seeded, with_policies(SMS_ONLY, key="cap-defer", capped="defer"), [b])
    settle(seeded)
    assert deliveries(seeded.devportal, seeded.app.app, seeded.member_id).sms[b] == 1
    assert states(seeded, deferring) == {"pending": 1}  # waits for room: a day after b's SMS

    transactional = with_policies(SMS_ONLY, key="receipt", transactional=True)
    by_launch(seeded, transactional, [a])
    settle(seeded)
    assert deliveries(seeded.devportal, seeded.app.app, seeded.member_id).sms[a] == 2

    clock.offset = timedelta(days=1, minutes=5)
    sweep(seeded)
    assert deliveries(seeded.devportal, seeded.app.app, seeded.member_id).sms[b] == 2
    assert states(seeded, deferring) == {"done": 1}


@pytest.fixture
def seeded(installed: Installed) -> Installed:
    installed.portal("/seed", "POST", contacts=20, companies=0, deals=0, leads=0)
    return installed


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    from marketapp.scenarios import engine

    fake = Clock()
    monkeypatch.setattr(engine, "now", fake)
    monkeypatch.setattr(engine, "WAKE_AHEAD", 0.0)
    return fake


# -- variables ----------------------------------------------------------------------------------


def test_set_variable_feeds_conditions_and_templates_and_errors_skip(
    seeded: Installed, clock: Clock
) -> None:
    total = {"type": "set_variable", "name": "total", "expression": "round(10 * 3 / 4, 1) + 0"}
    check = {
        "type": "condition",
        "rules": [{"left": {"var": "total"}, "op": "gt", "right": {"value": 5}}],
        "yes": [
            {"type": "timeline_comment", "text": "Total {{ var.total }} for {{ contact.NAME }}"}
        ],
        "no": [],
    }
    defn = with_policies(total, check, key="variables")
    defn["variables"] = [{"name": "total", "type": "decimal", "default": 0}]
    ids = sorted(all_ids(seeded))[:2]
    launch_id = by_launch(seeded, defn, ids)
    settle(seeded)
    assert states(seeded, launch_id) == {"done": 2}
    texts = [
        str(c["COMMENT"])
        for i in ids
        for c in seeded.portal(f"/timeline?entity=contact&id={i}")["comments"]
        if "Total" in str(c.get("COMMENT"))
    ]
    assert len(texts) == 2 and all("Total 7.5 for" in t for t in texts), texts

    broken = with_policies(
        {"type": "set_variable", "name": "total", "expression": "record.ID / 0"}, check, key="div"
    )
    broken["variables"] = [{"name": "total", "type": "decimal", "default": 0}]
    failed = by_launch(seeded, broken, ids)
    settle(seeded)
    assert states(seeded, failed) == {"skipped:expression_error": 2}


def test_two_sms_steps_run_together_need_room_for_both(seeded: Installed, clock: Clock) -> None:
    person = next(c for c in seeded.portal("/crm/contact") if _sms_phone(c))
    cid = int(person["ID"])

    def cap(session: Any) -> None:
        channel_settings(session, portal_of(session)).caps = [
            {"channel": "sms", "count": 2, "period": "day"}
        ]
        session.commit()

    in_app(seeded, cap)
    run_robot(seeded, "send_sms", f"CONTACT_{cid}", text="From the robot")
    settle(seeded)
    both = [SMS_ONLY, {**SMS_ONLY, "text": "Second", "run": "with_previous"}]
    launch_id = by_launch(seeded, with_policies(*both, key="two-sms", capped="skip"), [cid])
    settle(seeded)
    # One SMS of room left, two to send together: the pair is skipped, not half sent.
    assert deliveries(seeded.devportal, seeded.app.app, seeded.member_id).sms[cid] == 1
    assert status(seeded, launch_id)["steps"]["steps[0]"]["skipped"] == {"capped": 1}


def test_restart_while_deferred_stops_the_earlier_entry(seeded: Installed, clock: Clock) -> None:
    window = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}
    at(clock, datetime(2026, 12, 4, 19, 30, tzinfo=UTC))  # Friday evening: deferred to Monday
    person = next(c for c in seeded.portal("/crm/contact") if _sms_phone(c))
    cid = int(person["ID"])
    defn = with_policies(SMS_ONLY, key="restarted", window=window, reentry="restart")
    first = by_launch(seeded, defn, [cid])
    settle(seeded)
    second = by_launch(seeded, defn, [cid])
    settle(seeded)
    assert states(seeded, first) == {"stopped:restarted": 1}
    at(clock, datetime(2026, 12, 7, 9, 1, tzinfo=UTC))
    sweep(seeded)
    assert states(seeded, second) == {"done": 1}
    assert deliveries(seeded.devportal, seeded.app.app, seeded.member_id).sms[cid] == 1


def test_the_portal_time_zone_from_settings_places_the_window(
    seeded: Installed, clock: Clock
) -> None:
    def zone(session: Any) -> None:
        channel_settings(session, portal_of(session)).timezone = "Asia/Vladivostok"  # UTC+10
        session.commit()

    in_app(seeded, zone)
    window = {"start": "09:00", "end": "18:00"}
    at(clock, datetime(2026, 12, 4, 20, 30, tzinfo=UTC))  # Saturday 06:30 in Vladivostok
    person = next(c for c in seeded.portal("/crm/contact") if _sms_phone(c))
    launch_id = by_launch(
        seeded, with_policies(SMS_ONLY, key="far-east", window=window), [int(person["ID"])]
    )
    settle(seeded)

    def due(session: Any) -> datetime:
        row = session.scalars(select(Enrollment).where(Enrollment.launch_id == launch_id)).one()
        return row.next_at.replace(tzinfo=UTC)

    assert in_app(seeded, due) == datetime(2026, 12, 4, 23, 0, tzinfo=UTC)  # 09:00 local
