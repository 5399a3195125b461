"""Scenario test mode over HTTP on the emulator: a dry run of a library-like scenario (e-mail,
wait two days, condition, SMS, edit, condition on the edit, task) reads and writes nothing else
(the emulator's request log, the ledger, the SMS outbox); its log lists each step in order with
the branch taken; a redirected run sends one SMS to the test number and (over SMTP) one e-mail
to the test address, nothing to the record's own; bad inputs are clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from click.testing import CliRunner
from sqlalchemy import func, select

from marketapp import consent
from marketapp.cli import main
from marketapp.db import db_session
from marketapp.models import Portal, Send, SmsMessage, TestRun, Touch
from marketapp.scenarios import cli as scenarios_cli
from marketapp.scenarios import testmode, versions
from marketapp.scenarios.definition import DefinitionError
from marketapp.scenarios.testmode import TestModeError, run_test
from tests.conftest import free_port
from tests.e2e.harness import Installed
from tests.support import contact_with, set_channels

pytestmark = pytest.mark.e2e

TEST_EMAIL = "admin.test@shop.example"
TEST_PHONE = "8 (916) 000-11-22"  # the portal's default country (RU) makes it +7…
TEST_PHONE_E164 = "+79160001122"
EMAIL = {
    "id": "hello",
    "type": "send_email",
    "subject": "Hello {{ contact.NAME }}",
    "body": '<p>Dear {{ contact.NAME }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
}
SMS = {"type": "send_sms", "text": "Hi {{ contact.NAME }}! Stop: {{ unsubscribe_url }}"}
STEPS: list[dict[str, Any]] = [
    EMAIL,
    {"type": "wait", "days": 2},
    {
        "type": "condition",
        "rules": [{"left": {"field": "NAME"}, "op": "not_empty"}],
        "yes": [SMS],
        "no": [{"type": "stop"}],
    },
    {"type": "edit_fields", "fields": "COMMENTS = tested {{ contact.NAME }}"},
    {
        "type": "condition",
        "rules": [{"left": {"field": "COMMENTS"}, "op": "contains", "right": {"value": "tested"}}],
        "yes": [{"type": "timeline_comment", "text": "Edited {{ contact.NAME }}"}],
        "no": [{"type": "stop"}],
    },
    {"type": "create_task", "title": "Call {{ contact.NAME }}", "deadline": {"days": 1}},
]
WRITES = (".add", ".update", ".delete", ".set", "bizproc.event.send", ".send")


def definition(*steps: dict[str, Any], key: str = "welcome-test") -> dict[str, Any]:
    return {
        "schema": 1,
        "key": key,
        "name": {"en": "Welcome test", "ru": "Проверка приветствия"},
        "description": {"en": "A test.", "ru": "Тест."},
        "entity_types": ["CONTACT"],
        "steps": list(steps or STEPS),
    }


@pytest.fixture
def seeded(installed: Installed) -> Iterator[Installed]:
    installed.portal("/seed", "POST", contacts=30, companies=0, deals=0, leads=0)
    with installed.app.app.app_context():
        yield installed
        db_session().close()


def portal() -> Portal:
    return db_session().scalars(select(Portal)).one()


def save(defn: dict[str, Any] | None = None) -> Any:
    session = db_session()
    version = versions.save(session, portal(), defn or definition(), author_id=1)
    session.commit()
    return version


def request_log(inst: Installed) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = inst.emu("GET", f"/requests?member_id={inst.member_id}")
    return found


def methods(entries: list[dict[str, Any]]) -> list[str]:
    """Every REST method called: each HTTP request's, and each command of a batch."""
    called = []
    for entry in entries:
        called.append(str(entry["method"]).lower())
        called.extend(entry.get("commands") or [])
    return called


def count(model: Any) -> int:
    return int(db_session().scalar(select(func.count()).select_from(model)) or 0)


def steps_of(run: TestRun) -> list[tuple[str, str]]:
    """(step, kind) of the log, goal lines and the end left out."""
    return [(e["step"], e["kind"]) for e in run.log if e["kind"] not in ("goal", "window")]


def test_dry_run_reads_only_and_logs_every_step_with_its_branch(seeded: Installed) -> None:
    contact = contact_with(seeded)
    version = save()
    before = len(request_log(seeded))

    run = run_test(db_session(), portal(), version, "CONTACT", int(contact["ID"]), user_id=1)

    called = methods(request_log(seeded)[before:])
    assert called, "the record is read"
    assert all(m == "batch" or m.endswith((".list", ".get", ".current")) for m in called), called
    assert not [m for m in called if m.endswith(WRITES)], called
    assert count(Send) == 0 and count(SmsMessage) == 0 and count(Touch) == 0
    assert steps_of(run) == [
        ("steps[0]", "would"),
        ("steps[1]", "waited"),
        ("steps[2]", "branch"),
        ("steps[2].yes[0]", "would"),
        ("steps[3]", "would"),
        ("steps[4]", "branch"),  # sees the edit made in memory
        ("steps[4].yes[0]", "would"),
        ("steps[5]", "would"),
        ("", "end"),
    ]
    log = {e["step"]: e for e in run.log}
    name = contact["NAME"]
    assert log["steps[0]"]["detail"]["to"] == contact["EMAIL"][0]["VALUE"]
    assert log["steps[0]"]["detail"]["subject"] == f"Hello {name}"
    assert log["steps[0]"]["message"].startswith("Would send an e-mail to ")
    assert log["steps[2]"]["detail"] == {"branch": "yes"}
    sms = log["steps[2].yes[0]"]["detail"]
    assert sms["text"].startswith(f"Hi {name}!") and sms["segments"] >= 1
    assert log["steps[3]"]["detail"]["after"] == {"COMMENTS": f"tested {name}"}
    assert log["steps[4]"]["detail"] == {"branch": "yes"}
    assert log["steps[5]"]["detail"]["title"] == f"Call {name}"
    started = datetime.fromisoformat(log["steps[0]"]["at"])
    waited = datetime.fromisoformat(log["steps[2]"]["at"]) - started
    assert timedelta(days=2) <= waited < timedelta(days=2, minutes=1)  # fast-forwarded
    assert run.outcome == "done" and run.mode == "dry"
    stored = db_session().get(TestRun, run.id)
    assert stored is not None and stored.log == run.log
    assert stored.entity_type == "CONTACT" and stored.entity_id == int(contact["ID"])
    assert stored.scenario_id == version.scenario_id and stored.version_id == version.id


def test_no_branch_stop_and_goal(seeded: Installed) -> None:
    contact = contact_with(seeded)
    named = {"left": {"field": "NAME"}, "op": "eq", "right": {"value": "nobody-has-this-name"}}
    stop_first = definition(
        {"type": "condition", "rules": [named], "yes": [SMS], "no": [{"type": "stop"}]},
        EMAIL,
    )
    run = run_test(db_session(), portal(), save(stop_first), "CONTACT", int(contact["ID"]))
    assert steps_of(run) == [("steps[0]", "branch"), ("steps[0].no[0]", "stop"), ("", "end")]
    assert run.log[0]["detail"] == {"branch": "no"}

    # The goal (the record has a name) is met before the first step: it leaves at once.
    goal = {"rules": [{"left": {"field": "NAME"}, "op": "not_empty"}]}
    with_goal = {**definition(EMAIL, key="goal-test"), "policies": {"goal": goal}}
    run = run_test(db_session(), portal(), save(with_goal), "CONTACT", int(contact["ID"]))
    assert [(e["step"], e["kind"]) for e in run.log] == [("steps[0]", "goal"), ("", "end")]
    assert run.outcome == "goal"


def test_variables_params_and_the_send_window(
    seeded: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(testmode, "now", lambda: datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    contact = contact_with(seeded)
    count_is_3 = {"left": {"var": "count"}, "op": "eq", "right": {"value": 3}}
    defn = {
        **definition(
            {"type": "set_variable", "name": "count", "expression": "var.count + params.step"},
            {"type": "condition", "rules": [count_is_3], "yes": [EMAIL]},
            {"type": "set_variable", "name": "count", "expression": "var.count / 0"},
            {**EMAIL, "id": "never"},
            key="vars-test",
        ),
        "parameters": [{"key": "step", "type": "integer", "label": {"en": "Step", "ru": "Шаг"}}],
        "variables": [{"name": "count", "type": "integer", "default": 1}],
        "policies": {"window": {"start": "09:00", "end": "10:00"}},
    }
    version = save(defn)
    with pytest.raises(DefinitionError):
        run_test(db_session(), portal(), version, "CONTACT", int(contact["ID"]), params={"x": 1})

    run = run_test(
        db_session(), portal(), version, "CONTACT", int(contact["ID"]), params={"step": 2}
    )

    assert [(e["step"], e["kind"]) for e in run.log] == [
        ("steps[0]", "variable"),
        ("steps[1]", "branch"),
        ("steps[1].yes[0]", "window"),
        ("steps[1].yes[0]", "would"),
        ("steps[2]", "skipped"),  # division by zero ends the record, as the engine does
        ("", "end"),
    ]
    assert run.log[0]["detail"] == {"name": "count", "value": 3}
    opening = "2026-12-03T09:00:00+00:00"  # the portal's zone (UTC): tomorrow's opening
    assert run.log[2]["detail"] == {"until": opening} and run.log[3]["at"] == opening
    assert run.log[4]["detail"] == {"reason": "expression_error"}
    assert run.outcome == "skipped"  # the record ended skipped, as in a launch


@pytest.fixture
def smtp_server(seeded: Installed) -> Iterator[list[Any]]:
    """A real SMTP server on loopback, configured as the portal's e-mail channel."""
    received: list[Any] = []

    class Collect(Message):
        def handle_message(self, message: Any) -> None:
            received.append(message)

    # The server is on loopback: the operator's development setting allows that.
    seeded.app.app.extensions["marketapp.settings"].allow_private_smtp = True
    controller = Controller(Collect(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        set_channels(
            db_session(),
            portal(),
            email_channel="smtp",
            smtp_host="127.0.0.1",
            smtp_port=controller.port,
            smtp_starttls=False,
            smtp_from="Shop <shop@shop.example>",
        )
        yield received
    finally:
        controller.stop()


def test_redirect_sends_to_the_test_address_and_number_only(
    seeded: Installed, smtp_server: list[Any]
) -> None:
    contact = contact_with(seeded)
    version = save()
    before = len(request_log(seeded))

    run = run_test(
        db_session(),
        portal(),
        version,
        "CONTACT",
        int(contact["ID"]),
        mode="redirect",
        test_email=TEST_EMAIL,
        test_phone=TEST_PHONE,
    )

    assert run.outcome == "done", run.log
    (message,) = smtp_server
    assert message["To"] == TEST_EMAIL
    assert message["Subject"] == f"Hello {contact['NAME']}"
    assert message["List-Unsubscribe"] is None  # the client's link is not in a test
    html = next(p for p in message.walk() if p.get_content_type() == "text/html")
    body = html.get_payload(decode=True).decode()
    real_link = consent.unsubscribe_url(portal(), "CONTACT", int(contact["ID"]), "email")
    assert "/u/test" in body and real_link not in body
    (sms,) = db_session().scalars(select(SmsMessage)).all()
    assert sms.phone == TEST_PHONE_E164 and sms.key.startswith("test:")
    assert "/u/test" in sms.text
    keys = db_session().scalars(select(Send.key)).all()
    assert len(keys) == 2 and all(k.startswith(f"test:{run.id}:") for k in keys)
    assert count(Touch) == 0  # test sends count for no cap
    called = methods(request_log(seeded)[before:])
    assert not [m for m in called if m.endswith(WRITES)], called  # edits, comments, tasks: logged
    kinds = dict(steps_of(run))
    assert kinds["steps[0]"] == "sent" and kinds["steps[2].yes[0]"] == "sent"
    assert kinds["steps[3]"] == "would" and kinds["steps[5]"] == "would"
    assert TEST_PHONE_E164 in next(e for e in run.log if e["step"] == "steps[2].yes[0]")["message"]


def test_redirect_of_portal_email_is_refused_without_smtp(seeded: Installed) -> None:
    contact = contact_with(seeded)
    version = save()
    with pytest.raises(TestModeError, match="SMTP"):
        run_test(
            db_session(),
            portal(),
            version,
            "CONTACT",
            int(contact["ID"]),
            mode="redirect",
            test_email=TEST_EMAIL,
        )
    # Without a test address the e-mail is shown, and the SMS still goes to the test number.
    run = run_test(
        db_session(),
        portal(),
        version,
        "CONTACT",
        int(contact["ID"]),
        mode="redirect",
        test_phone=TEST_PHONE,
    )
    first = run.log[0]
    assert first["kind"] == "would" and "no test address" in first["message"]
    assert [s.phone for s in db_session().scalars(select(SmsMessage))] == [TEST_PHONE_E164]
    assert not any(a.get("TYPE_ID") == 4 for a in seeded.portal("/activities"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entity_id": 999_999}, "There is no CONTACT 999999"),
        ({"entity_type": "DEAL"}, "works on CONTACT, not DEAL"),
        ({"mode": "live"}, "Unknown test mode"),
        ({"mode": "redirect"}, "needs a test e-mail address or a test number"),
        ({"mode": "redirect", "test_phone": "12"}, "not a valid phone number"),
        ({"mode": "redirect", "test_email": "a@b"}, "is invalid"),
        ({"mode": "redirect", "test_email": "a@b.example, c@d.example"}, "is invalid"),
    ],
)
def test_bad_inputs_are_clear_errors_and_store_nothing(
    seeded: Installed, kwargs: dict[str, Any], message: str
) -> None:
    contact = contact_with(seeded)
    version = save()
    args = {"entity_type": "CONTACT", "entity_id": int(contact["ID"]), **kwargs}
    entity_type, entity_id = args.pop("entity_type"), args.pop("entity_id")
    with pytest.raises(TestModeError, match=message):
        run_test(db_session(), portal(), version, entity_type, entity_id, **args)
    assert count(TestRun) == 0 and count(Send) == 0 and count(SmsMessage) == 0


def test_only_the_last_runs_of_a_scenario_are_kept(
    seeded: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(testmode, "KEEP", 2)
    contact = contact_with(seeded)
    version = save(definition(EMAIL))
    ids = [
        run_test(db_session(), portal(), version, "CONTACT", int(contact["ID"])).id
        for _n in range(3)
    ]
    kept = testmode.list_test_runs(db_session(), portal(), version.scenario_id)
    assert [r.id for r in kept] == ids[:0:-1]
    assert testmode.get_test_run(db_session(), portal(), ids[0]) is None


def test_cli_prints_the_log(seeded: Installed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenarios_cli, "_app", lambda: seeded.app.app)
    contact = contact_with(seeded)
    save()
    member = seeded.member_id
    args = ["scenarios", "test", "--portal", member, "--key", "welcome-test", "--entity", "CONTACT"]
    result = CliRunner().invoke(main, [*args, "--id", str(contact["ID"]), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["outcome"] == "done" and doc["mode"] == "dry"
    assert [e["step"] for e in doc["log"]][:2] == ["steps[0]", "steps[1]"]
    text = CliRunner().invoke(main, [*args, "--id", str(contact["ID"])])
    assert text.exit_code == 0 and "Would send an e-mail to" in text.output
    bad = CliRunner().invoke(main, [*args, "--id", "999999"])
    assert bad.exit_code == 1 and "There is no CONTACT 999999" in bad.output
    assert "Traceback" not in bad.output
