"""`marketapp launches …` against the app and the emulator: list, show, stop, undo, their --json
output, and errors that exit 1 with a clear reason (never a traceback)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from marketapp.cli import main
from marketapp.scenarios import cli as scenarios_cli
from tests.e2e.harness import AppServer, Installed
from tests.scenarios.undo_support import COMMENT, EDIT, WAIT, by_id, contacts, finished, start

pytestmark = pytest.mark.e2e


@pytest.fixture
def run(app_server: AppServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(scenarios_cli, "_app", lambda: app_server.app)

    def invoke(*args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(main, ["launches", *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result

    return invoke


def test_list_show_stop_undo(run: Any, installed: Installed) -> None:
    portal = ["--portal", installed.member_id]
    assert run("list", *portal).output.strip() == "no launches"
    assert json.loads(run("list", *portal, "--json").output) == []

    people = contacts(installed, 4)
    ids = [int(c["ID"]) for c in people]
    first = start(installed, [EDIT], ids[:2])
    finished(installed, first)
    second = start(installed, [COMMENT, WAIT, EDIT], ids)
    finished(installed, second)

    rows = json.loads(run("list", *portal, "--json").output)
    assert [r["id"] for r in rows] == [second, first]  # newest first
    newest = rows[0]
    assert newest["scenario"] == "spring" and newest["version"] == 2
    assert newest["created_by"] == 1 and newest["created_at"]
    assert newest["counters"]["entered"] == len(ids)
    text = run("list", *portal).output.splitlines()
    assert text[0].startswith(f"{second}  spring v2  ") and f"entered {len(ids)}" in text[0]

    shown = json.loads(run("show", str(second), *portal, "--json", "--records", "3").output)
    assert shown["id"] == second and shown["total"] == len(ids)
    assert set(shown["steps"]) >= {"steps[0]"}
    assert len(shown["records"]) <= 3
    assert "eta" in shown
    assert f"launch {second}  spring v2" in run("show", str(second), *portal).output

    stopped = json.loads(run("stop", str(second), *portal, "--json").output)
    assert stopped["state"] == "stopped" and stopped["stopped"] == len(ids)
    assert "0 records stopped" in run("stop", str(second), *portal).output  # again: nothing

    report = json.loads(run("undo", str(first), *portal, "--json").output)
    assert report["records_restored"] == 2 and report["conflicts"] == []
    assert report["not_undoable"] == {"email": 0, "sms": 0} and not report["nothing_new"]
    now = by_id(installed)
    assert all(now[int(c["ID"])]["POST"] == c["POST"] for c in people)
    again = run("undo", str(first), *portal).output
    assert "Nothing new to undo" in again and "Fields restored: 0" in again
    assert "Timeline comments deleted: 4." in run("undo", str(second), *portal).output
    log = json.loads(run("show", str(first), *portal, "--json", "--records", "2").output)
    assert [(r["kind"], r["message"]) for r in log["records"]] == [
        ("undone", "Fields restored: LAST_NAME, POST")
    ] * 2


def test_errors_exit_1_with_a_reason(run: Any, installed: Installed) -> None:
    portal = ["--portal", installed.member_id]
    for command in ("show", "stop", "undo"):
        failed = run(command, "999", *portal, code=1)
        assert "no launch 999" in failed.output.lower()
        doc = json.loads(run(command, "999", *portal, "--json", code=1).output)
        assert doc["error"] is True and "999" in doc["problems"][0]["message"]
    unknown = run("list", "--portal", "nobody", code=1)
    assert "no portal with member_id nobody" in unknown.output
    assert json.loads(run("list", "--portal", "nobody", "--json", code=1).output)["error"]
