"""The scenario engine over HTTP on the emulator (jobs on the harness worker): e-mail, wait,
SMS exactly once per eligible contact with skips by reason; waits wake on the engine's clock;
a filter target is read with the user's rights; condition and split paths; tasks and
notifications; stop mid-launch; a portal that becomes unavailable parks and resumes; counters
agree with the enrollments."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from marketapp.actions.base import multifield
from marketapp.bench_launch import deliveries
from marketapp.db import db_session
from marketapp.models import Enrollment, EnrollmentState, Launch, LaunchEvent, LaunchState, Portal
from marketapp.scenarios import engine, launches, versions
from marketapp.scenarios import steps as st
from marketapp.scenarios.preview import Selection
from tests.e2e.harness import Installed, wait_for
from tests.support import INVALID_PHONES

pytestmark = pytest.mark.e2e

EMAIL = {"type": "send_email", "subject": "Hello {{ contact.NAME }}", "body": "Dear friend"}
SMS = {"type": "send_sms", "text": "Hi {{ contact.NAME }}, see you!"}
WAIT = {"type": "wait", "minutes": 1}
COMMENT = {"type": "timeline_comment", "text": "Checked {{ contact.NAME }}"}


class Clock:
    """The engine's "now", moved by the test."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(engine, "now", fake)
    monkeypatch.setattr(engine, "WAKE_AHEAD", 0.0)  # no real-time wake-ups: the test moves time
    return fake


@pytest.fixture
def seeded(installed: Installed) -> Iterator[Installed]:
    installed.portal("/seed", "POST", contacts=50, companies=0, deals=0, leads=0)
    yield installed


def definition(*steps: dict[str, Any], key: str = "engine", timeline: bool = True) -> Any:
    return {
        "schema": 1,
        "key": key,
        "name": {"en": "Payment reminder", "ru": "Напоминание"},
        "description": {"en": "A test.", "ru": "Тест."},
        "entity_types": ["CONTACT"],
        "steps": list(steps),
        "timeline": timeline,
    }


def contacts(inst: Installed) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = inst.portal("/crm/contact")
    return found


def token(inst: Installed, user_id: int = 1) -> str:
    body = inst.portal("/tokens", "POST", client_id=inst.client_id, user_id=user_id)
    return str(body["access_token"])


def start(inst: Installed, defn: dict[str, Any], selection: Selection, key: str = "") -> int:
    with inst.app.app.app_context():
        session = db_session()
        portal = session.scalars(select(Portal)).one()
        version = versions.save(session, portal, defn, author_id=1)
        session.commit()
        row = launches.launch(
            session,
            portal,
            version,
            selection,
            {},
            1,
            token(inst),
            key or secrets.token_hex(8),
            user={"ID": 1, "NAME": "Admin"},
        )
        return int(row.id)


def in_app(inst: Installed, fn: Any) -> Any:
    with inst.app.app.app_context():
        try:
            return fn(db_session())
        finally:
            db_session().close()


def states(inst: Installed, launch_id: int) -> Counter[str]:
    def read(session: Any) -> Counter[str]:
        rows = session.execute(
            select(Enrollment.state, Enrollment.reason).where(Enrollment.launch_id == launch_id)
        ).all()
        ended = (EnrollmentState.SKIPPED, EnrollmentState.FAILED, EnrollmentState.STOPPED)
        return Counter(f"{s.value}:{r}" if s in ended else s.value for s, r in rows)

    result: Counter[str] = in_app(inst, read)
    return result


def status(inst: Installed, launch_id: int) -> dict[str, Any]:
    def read(session: Any) -> dict[str, Any]:
        portal = session.scalars(select(Portal)).one()
        return launches.status(session, portal, launch_id)

    result: dict[str, Any] = in_app(inst, read)
    return result


def settle(inst: Installed) -> None:
    """The harness settles when no job is queued; a job still running is waited for too."""
    inst.settle()

    def busy(session: Any) -> int:
        query = select(func.count()).where(Enrollment.state == EnrollmentState.RUNNING)
        return int(session.scalar(query) or 0)

    wait_for(lambda: not in_app(inst, busy))
    inst.settle()


def sweep(inst: Installed) -> None:
    in_app(inst, lambda _s: engine.sweep_enrollments())
    settle(inst)


def all_ids(inst: Installed) -> list[int]:
    return [int(c["ID"]) for c in contacts(inst)]


def _sms_phone(contact: dict[str, Any]) -> bool:
    """Whether the SMS step (phone type ``auto``: a mobile first) finds a number that works."""
    phone = multifield(contact, "PHONE", "auto", prefer="MOBILE")
    return bool(phone) and phone not in INVALID_PHONES


def assert_counters_agree(inst: Installed, launch_id: int) -> None:
    """The launch counters (moved incrementally) equal a count of the enrollments."""
    got = status(inst, launch_id)["counters"]
    counted = states(inst, launch_id)
    assert got["entered"] == sum(counted.values())
    assert got["done"] == counted.get("done", 0)
    assert got["waiting"] == counted.get("waiting", 0)
    assert got["stopped"] == sum(n for k, n in counted.items() if k.startswith("stopped"))
    for kind in ("skipped", "failed"):
        expected = {k.split(":", 1)[1]: n for k, n in counted.items() if k.startswith(f"{kind}:")}
        assert {r: n for r, n in got[kind].items() if n} == expected, (kind, got, counted)


def test_email_wait_sms_exactly_once_with_skips_by_reason(seeded: Installed, clock: Clock) -> None:
    people = contacts(seeded)
    launch_id = start(
        seeded, definition(EMAIL, WAIT, SMS), Selection("CONTACT", tuple(all_ids(seeded)))
    )
    settle(seeded)
    got = deliveries(seeded.devportal, seeded.app.app, seeded.member_id)
    with_email = {int(c["ID"]) for c in people if c.get("EMAIL")}
    assert set(got.emails) == with_email and got.duplicates() == 0
    assert not got.sms  # everybody is waiting
    assert states(seeded, launch_id)["waiting"] == len(people), states(seeded, launch_id)
    assert_counters_agree(seeded, launch_id)

    sweep(seeded)  # not due yet: nothing moves
    assert not deliveries(seeded.devportal, seeded.app.app, seeded.member_id).sms

    clock.offset = timedelta(seconds=61)
    sweep(seeded)
    got = deliveries(seeded.devportal, seeded.app.app, seeded.member_id)
    with_mobile = {int(c["ID"]) for c in people if _sms_phone(c)}
    assert set(got.sms) == with_mobile and got.duplicates() == 0
    assert set(got.emails) == with_email
    final = states(seeded, launch_id)
    nothing = {int(c["ID"]) for c in people} - with_email - with_mobile
    assert final["done"] == len(with_email | with_mobile)
    assert sum(n for k, n in final.items() if k.startswith("skipped:")) == len(nothing)
    assert all(k.split(":")[1] for k in final if k.startswith("skipped"))  # with a reason
    report = status(seeded, launch_id)
    assert report["state"] == "done" and report["progress"] == 1.0
    assert report["steps"]["steps[0]"]["done"] == len(with_email)
    assert report["steps"]["steps[2]"]["done"] == len(with_mobile)
    assert report["eta"]["active"] == 0
    assert_counters_agree(seeded, launch_id)

    # The timeline says what the scenario did, in plain words, once per acting step.
    first = min(with_email & with_mobile)
    # One line per step, naming the scenario; the SMS action writes no second one of its own.
    lines = seeded.portal(f"/timeline?entity=contact&id={first}")["comments"]
    assert len(lines) == 2 and all("Payment reminder" in str(c["COMMENT"]) for c in lines), lines
    phone = multifield(next(c for c in people if int(c["ID"]) == first), "PHONE", "auto", "MOBILE")
    assert any(f"SMS to {phone} (1 segments)" in str(c["COMMENT"]) for c in lines), (lines, phone)

    # The per-record log: what happened, when, with the REST result id of the e-mail.
    def log_of(session: Any) -> list[tuple[str, str, str]]:
        rows = session.execute(
            select(LaunchEvent.step, LaunchEvent.kind, LaunchEvent.result_id)
            .join(Enrollment, Enrollment.id == LaunchEvent.enrollment_id)
            .where(Enrollment.launch_id == launch_id, Enrollment.entity_id == first)
            .order_by(LaunchEvent.id)
        ).all()
        return [tuple(r) for r in rows]

    log = in_app(seeded, log_of)
    assert [(s, k) for s, k, _r in log] == [
        ("steps[0]", "sent"),
        ("steps[1]", "waiting"),
        ("steps[1]", "woke"),
        ("steps[2]", "sent"),
    ]
    assert log[0][2]  # the activity id

    # Running again changes nothing: every side effect is in the ledger.
    in_app(
        seeded,
        lambda s: (
            s.execute(
                Enrollment.__table__.update()
                .where(Enrollment.launch_id == launch_id)
                .values(state=EnrollmentState.PENDING, step="steps[0]", reason="")
            )
            and s.commit()
        ),
    )
    in_app(
        seeded,
        lambda s: (
            s.execute(
                Launch.__table__.update()
                .where(Launch.id == launch_id)
                .values(state=LaunchState.RUNNING)
            )
            and s.commit()
        ),
    )
    sweep(seeded)
    clock.offset = timedelta(seconds=200)
    sweep(seeded)
    again = deliveries(seeded.devportal, seeded.app.app, seeded.member_id)
    assert again.duplicates() == 0 and set(again.sms) == with_mobile


def test_the_same_key_is_the_same_launch(seeded: Installed, clock: Clock) -> None:
    ids = Selection("CONTACT", tuple(all_ids(seeded)[:5]))
    first = start(seeded, definition(COMMENT), ids, key="double-click")
    again = start(seeded, definition(COMMENT), ids, key="double-click")
    settle(seeded)
    assert first == again
    assert in_app(seeded, lambda s: s.scalar(select(func.count()).select_from(Launch))) == 1


def test_a_filter_target_is_read_with_the_users_rights(seeded: Installed, clock: Clock) -> None:
    launch_id = start(
        seeded, definition(COMMENT, timeline=False), Selection("CONTACT", filter={">ID": 0})
    )
    settle(seeded)
    people = contacts(seeded)
    assert sum(states(seeded, launch_id).values()) == len(people)
    report = status(seeded, launch_id)
    assert report["total"] == len(people) and report["state"] == "done"
    assert report["steps"]["steps[0]"]["done"] == len(people)

    def token_left(session: Any) -> Any:
        return session.get(Launch, launch_id).user_token

    assert in_app(seeded, token_left) is None  # the user's token is wiped once read


def test_explicit_ids_the_user_cannot_read_are_skipped(seeded: Installed, clock: Clock) -> None:
    ids = all_ids(seeded)[:3]
    launch_id = start(seeded, definition(COMMENT), Selection("CONTACT", (*ids, 999_999)))
    settle(seeded)
    final = states(seeded, launch_id)
    assert final["done"] == 3
    assert final["skipped:not_found"] == 1
    assert_counters_agree(seeded, launch_id)


def test_condition_and_split_paths(seeded: Installed, clock: Clock) -> None:
    people = contacts(seeded)
    condition = {
        "type": "condition",
        "rules": [{"left": {"field": "EMAIL"}, "op": "not_empty"}],
        "yes": [{"type": "timeline_comment", "text": "has e-mail"}],
        "no": [{"type": "stop"}],
    }
    split = {
        "type": "split",
        "id": "ab",
        "branches": [
            {"name": "A", "percent": 50, "steps": [{"type": "timeline_comment", "text": "A"}]},
            {"name": "B", "percent": 50, "steps": []},
        ],
    }
    defn = definition(condition, split, key="paths", timeline=False)
    launch_id = start(seeded, defn, Selection("CONTACT", tuple(int(c["ID"]) for c in people)))
    settle(seeded)

    def branches(session: Any) -> dict[int, dict[str, Any]]:
        rows = session.execute(
            select(Enrollment.entity_id, Enrollment.branches).where(
                Enrollment.launch_id == launch_id
            )
        ).all()
        return {int(i): dict(b) for i, b in rows}

    chosen = in_app(seeded, branches)
    assert not seeded.app.worker.errors, seeded.app.worker.errors
    for c in people:
        cid = int(c["ID"])
        assert chosen[cid]["steps[0]"] == ("yes" if c.get("EMAIL") else "no"), (
            chosen,
            states(seeded, launch_id),
        )
        if c.get("EMAIL"):
            bucket = st.split_bucket("paths", "ab", "CONTACT", cid)
            assert chosen[cid].get("steps[1]") == ("A" if bucket < 50 else "B"), (
                chosen[cid],
                states(seeded, launch_id),
            )
        else:
            assert "steps[1]" not in chosen[cid]
        texts = [
            x.get("COMMENT")
            for x in seeded.portal(f"/timeline?entity=contact&id={cid}")["comments"]
        ]
        assert texts.count("has e-mail") == (1 if c.get("EMAIL") else 0)
        assert texts.count("A") == (1 if chosen[cid].get("steps[1]") == "A" else 0)
    assert status(seeded, launch_id)["state"] == "done"
    assert_counters_agree(seeded, launch_id)


def test_tasks_and_notifications_once(seeded: Installed, clock: Clock) -> None:
    ids = all_ids(seeded)[:4]
    task = {
        "type": "create_task",
        "title": "Call {{ contact.NAME }}",
        "responsible": {"kind": "launcher"},
    }
    notify = {
        "type": "notify",
        "to": {"kind": "launcher"},
        "message": "Called {{ contact.NAME }}",
        "run": "with_previous",
    }
    launch_id = start(
        seeded, definition(task, notify, timeline=False), Selection("CONTACT", tuple(ids))
    )
    settle(seeded)
    tasks = seeded.portal("/tasks")
    bound = [
        list(t["ufCrmTask"].values() if isinstance(t["ufCrmTask"], dict) else t["ufCrmTask"])
        for t in tasks
    ]
    assert sorted(b[0] for b in bound) == sorted(f"C_{i}" for i in ids)
    assert all(t["xmlId"].startswith(f"launch:{launch_id}:") for t in tasks)
    assert len(seeded.portal("/notifications")) == len(ids)
    assert states(seeded, launch_id)["done"] == len(ids)


def test_stop_mid_launch_cancels_what_has_not_started(seeded: Installed, clock: Clock) -> None:
    people = contacts(seeded)
    launch_id = start(
        seeded, definition(EMAIL, WAIT, SMS), Selection("CONTACT", tuple(all_ids(seeded)))
    )
    settle(seeded)

    def stop(session: Any) -> dict[str, Any]:
        portal = session.scalars(select(Portal)).one()
        return launches.stop(session, portal, launch_id)

    result = in_app(seeded, stop)
    assert result == {"id": launch_id, "state": "stopped", "stopped": len(people), "in_flight": 0}
    clock.offset = timedelta(minutes=5)
    sweep(seeded)
    got = deliveries(seeded.devportal, seeded.app.app, seeded.member_id)
    assert not got.sms  # the rest untouched
    assert states(seeded, launch_id) == Counter({"stopped:stopped": len(people)})
    assert_counters_agree(seeded, launch_id)


def test_unavailable_portal_parks_then_resumes(seeded: Installed, clock: Clock) -> None:
    ids = all_ids(seeded)[:10]
    defn = definition(COMMENT, WAIT, COMMENT, timeline=False)
    launch_id = start(seeded, defn, Selection("CONTACT", tuple(ids)))
    settle(seeded)
    assert states(seeded, launch_id) == Counter({"waiting": len(ids)})

    def launch_state(session: Any) -> str:
        return str(session.get(Launch, launch_id).state.value)

    # The app's tokens die while the launch waits (refresh refused: invalid_grant).
    emu = seeded.devportal.emulator
    emu.revoke_tokens(emu.portal(seeded.member_id), seeded.client_id)
    clock.offset = timedelta(minutes=2)
    sweep(seeded)
    assert in_app(seeded, launch_state) == "parked"
    assert states(seeded, launch_id) == Counter({"pending": len(ids)})  # still due
    sweep(seeded)
    assert in_app(seeded, launch_state) == "parked"  # nobody has healed the portal yet
    page = seeded.post_form(seeded.open())  # the admin opens the app: the portal heals
    assert page.status_code == 200
    settle(seeded)
    sweep(seeded)
    assert in_app(seeded, launch_state) == "done", in_app(
        seeded, lambda s: s.scalars(select(Portal)).one().status
    )
    assert states(seeded, launch_id) == Counter({"done": len(ids)})
    assert_counters_agree(seeded, launch_id)


def test_faults_repeat_nothing(
    seeded: Installed, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503s, 500s and dropped connections on every kind of request: each e-mail and comment
    at most once, and every record ends (done, or failed with its reason)."""
    monkeypatch.setattr(engine, "backoff", lambda _tries: 0.0)
    people = contacts(seeded)[:30]
    seeded.portal("/faults", "POST", rates={"error_503": 0.1, "error_500": 0.05, "drop": 0.05})
    launch_id = start(
        seeded,
        definition(EMAIL, COMMENT),
        Selection("CONTACT", tuple(int(c["ID"]) for c in people)),
    )
    for _round in range(10):
        settle(seeded)
        if not any(k in states(seeded, launch_id) for k in ("pending", "running")):
            break
        sweep(seeded)
    seeded.portal("/faults", "POST", rates={})
    final = states(seeded, launch_id)
    print("faults: final states", dict(final))
    assert sum(final.values()) == len(people)
    assert set(final) <= {"done", "failed:transient", "skipped:no_email"}, final
    got = deliveries(seeded.devportal, seeded.app.app, seeded.member_id)
    assert got.duplicates() == 0
    comments = Counter(
        int(c["ENTITY_ID"])
        for c in seeded.portal("/timeline")["comments"]
        if str(c.get("COMMENT", "")).startswith("Checked")
    )
    assert all(n == 1 for n in comments.values()), comments
    assert_counters_agree(seeded, launch_id)


def test_a_wait_at_the_end_ends_records_by_the_same_rule(seeded: Installed, clock: Clock) -> None:
    """Done when something was done for the record, else skipped with its first reason."""
    people = contacts(seeded)
    launch_id = start(seeded, definition(EMAIL, WAIT), Selection("CONTACT", tuple(all_ids(seeded))))
    settle(seeded)
    clock.offset = timedelta(minutes=2)
    sweep(seeded)
    with_email = sum(1 for c in people if c.get("EMAIL"))
    assert states(seeded, launch_id) == Counter(
        {"done": with_email, "skipped:no_email": len(people) - with_email}
    )
    assert status(seeded, launch_id)["state"] == "done"
    assert_counters_agree(seeded, launch_id)
