"""`marketapp schedules …` against the app and the emulator: add (the filter's fields and the
user checked over REST), list, show, next, pause, resume, remove, their --json output, and bad
inputs that exit 1 naming the field (never a traceback)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from marketapp.cli import main
from marketapp.db import db_session
from marketapp.models import Portal
from marketapp.scenarios import cli as scenarios_cli
from marketapp.scenarios import engine, versions
from tests.e2e.harness import AppServer, Installed
from tests.scenarios.support import definition

pytestmark = pytest.mark.e2e

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def run(app_server: AppServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(scenarios_cli, "_app", lambda: app_server.app)
    monkeypatch.setattr(engine, "now", lambda: NOW)

    def invoke(*args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(main, ["schedules", *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result

    return invoke


@pytest.fixture
def portal(installed: Installed) -> list[str]:
    with installed.app.app.app_context():
        session = db_session()
        row = session.scalars(select(Portal)).one()
        versions.save(session, row, definition(), author_id=1)
        session.commit()
        session.close()
    return ["--portal", installed.member_id]


def test_round_trip(run: Any, portal: list[str]) -> None:
    assert run("list", *portal).output.strip() == "no schedules"
    assert json.loads(run("list", *portal, "--json").output) == []

    added = run(
        "add", "welcome", *portal, "--every", "monthly", "--day", "31", "--at", "08:00",
        "--zone", "Europe/Berlin", "--filter", '{"TYPE_ID": "CLIENT"}', "--sample", "50",
        "--json",
    )  # fmt: skip
    doc = json.loads(added.output)
    assert doc["scenario"] == "welcome" and doc["frequency"] == "monthly"
    assert doc["segment"] == {"TYPE_ID": "CLIENT"} and doc["sample_percent"] == 50
    assert doc["user_id"] == 1 and doc["active"] is True
    assert doc["next_runs"][:3] == [
        "2026-03-31T08:00+02:00",
        "2026-04-30T08:00+02:00",  # no 31st in April: its last day
        "2026-05-31T08:00+02:00",
    ]
    assert len(doc["next_runs"]) == 12
    schedule = str(doc["id"])

    text = run("show", schedule, *portal).output
    assert "monthly on day 31 at 08:00 Europe/Berlin" in text and "50% sample" in text
    assert json.loads(run("next", schedule, *portal, "--count", "2", "--json").output) == [
        "2026-03-31T08:00+02:00",
        "2026-04-30T08:00+02:00",
    ]
    rows = json.loads(run("list", *portal, "--json").output)
    assert [r["id"] for r in rows] == [doc["id"]] and rows[0]["next_runs"] == doc["next_runs"][:1]

    paused = json.loads(run("pause", schedule, *portal, "--json").output)
    assert paused["active"] is False and paused["next_runs"] == []
    assert "paused" in run("list", *portal).output
    resumed = json.loads(run("resume", schedule, *portal, "--json").output)
    assert resumed["active"] is True and resumed["next_runs"] == doc["next_runs"]

    weekly = run(
        "add", "welcome", *portal, "--every", "weekly", "--days", "fri,mon", "--at", "19:30",
        "--until", "2026-03-31",
    )  # fmt: skip
    assert "weekly on mon,fri at 19:30 UTC until 2026-03-31" in weekly.output
    runs = [line.split()[1] for line in weekly.output.splitlines() if line.startswith("  ")]
    assert runs == [  # none after the end date
        "2026-03-20T19:30+00:00",
        "2026-03-23T19:30+00:00",
        "2026-03-27T19:30+00:00",
        "2026-03-30T19:30+00:00",
    ]

    assert run("remove", schedule, *portal).output.strip() == f"schedule {schedule} removed"
    missing = run("show", schedule, *portal, "--json", code=1)
    assert json.loads(missing.output)["error"] is True
    assert f"no schedule {schedule}" in run("show", schedule, *portal, code=1).output


@pytest.mark.parametrize(
    ("args", "field", "says"),
    [
        (["--every", "daily", "--at", "25:00"], "time", "HH:MM"),
        (["--every", "daily", "--at", "9am"], "time", "HH:MM"),
        (["--every", "daily", "--at", "09:00", "--zone", "Mars/Olympus"], "zone", "Mars/Olympus"),
        (["--every", "daily", "--at", "09:00", "--sample", "0"], "sample", "1 to 100"),
        (["--every", "daily", "--at", "09:00", "--sample", "101"], "sample", "1 to 100"),
        (["--every", "daily", "--at", "09:00", "--until", "2026-03-19"], "end_date", "past"),
        (["--every", "daily", "--at", "09:00", "--until", "someday"], "end_date", "YYYY-MM-DD"),
        (["--every", "hourly", "--at", "09:00"], "frequency", "daily, weekly or monthly"),
        (["--every", "weekly", "--at", "09:00"], "weekdays", "mon"),
        (["--every", "monthly", "--at", "09:00", "--day", "32"], "month_day", "1 to 31"),
        (["--every", "daily", "--at", "09:00", "--filter", "[1]"], "filter", "JSON object"),
        (["--every", "daily", "--at", "09:00", "--filter", '{"NOPE": 1}'], "filter", "NOPE"),
        (["--every", "daily", "--at", "09:00", "--entity", "DEAL"], "entity_type", "DEAL"),
        (["--every", "daily", "--at", "09:00", "--param", "x"], "params", "KEY=VALUE"),
        (["--every", "daily", "--at", "09:00", "--user", "999"], "user", "999"),
    ],
)
def test_bad_inputs_name_their_field(
    run: Any, portal: list[str], args: list[str], field: str, says: str
) -> None:
    result = run("add", "welcome", *portal, *args, "--json", code=1)
    doc = json.loads(result.output)
    assert doc["error"] is True
    (problem,) = doc["problems"]
    assert problem["path"] == field and says in problem["message"], problem
    assert says in run("add", "welcome", *portal, *args, code=1).output
    assert json.loads(run("list", *portal, "--json").output) == []  # nothing was saved


def test_an_unknown_scenario_or_portal(run: Any, portal: list[str]) -> None:
    result = run("add", "nope", *portal, "--every", "daily", "--at", "09:00", code=1)
    assert "no scenario 'nope'" in result.output
    assert "no portal" in run("list", "--portal", "nobody", code=1).output
