"""Typed constants through `marketapp scenarios set-constant / constants` on the app: a round
trip per type, bad values exit 1 with their reason, the type stays until changed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from marketapp.cli import main
from marketapp.scenarios import cli as scenarios_cli
from tests.e2e.harness import AppServer, Installed

pytestmark = pytest.mark.e2e


@pytest.fixture
def run(app_server: AppServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(scenarios_cli, "_app", lambda: app_server.app)

    def invoke(*args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(main, ["scenarios", *args])
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result

    return invoke


def test_typed_constants_round_trip(run: Any, installed: Installed) -> None:
    portal = ["--portal", installed.member_id]
    set_json = [*portal, "--json"]
    rate = run("set-constant", "rate", "0.20", "--type", "decimal", *set_json)
    assert json.loads(rate.output) == {"code": "rate", "type": "decimal", "value": "0.20"}
    run("set-constant", "seats", " 12 ", "--type", "integer", *portal)
    run("set-constant", "vip_on", "Yes", "--type", "boolean", *portal, "--label", "VIP")
    run("set-constant", "launch", "2026-03-08", "--type", "date", *portal)
    assert run("set-constant", "company", "Acme", *portal).output.strip() == (
        "company set (string: 'Acme')"
    )
    assert json.loads(run("constants", *portal, "--json").output) == [
        {"code": "company", "type": "string", "value": "Acme", "label": ""},
        {"code": "launch", "type": "date", "value": "2026-03-08", "label": ""},
        {"code": "rate", "type": "decimal", "value": "0.20", "label": ""},
        {"code": "seats", "type": "integer", "value": "12", "label": ""},
        {"code": "vip_on", "type": "boolean", "value": "true", "label": "VIP"},
    ]
    assert "rate (decimal) = '0.20'" in run("constants", *portal).output
    # Without --type a constant keeps its type: a new value must be one of it.
    run("set-constant", "rate", "0.25", *portal)
    failed = json.loads(run("set-constant", "rate", "a quarter", *set_json, code=1).output)
    assert failed == {
        "error": True,
        "problems": [
            {
                "path": "",
                "message": "A decimal constant takes a number such as 1500 or 12.5 "
                "(a dot before the decimals), not a quarter.",
            }
        ],
    }
    shown = {row["code"]: row for row in json.loads(run("constants", *portal, "--json").output)}
    assert shown["rate"]["value"] == "0.25"
    run("set-constant", "rate", "a quarter", "--type", "string", *portal)


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        ("integer", "4.5", "whole number"),
        ("decimal", "1e400", "a dot before the decimals"),
        ("decimal", "9" * 20, "out of range"),
        ("boolean", "perhaps", "true or false"),
        ("date", "08.03.2026", "YYYY-MM-DD"),
    ],
)
def test_bad_values_exit_1_with_the_reason(
    run: Any, installed: Installed, kind: str, value: str, reason: str
) -> None:
    portal = ["--portal", installed.member_id]
    result = run("set-constant", "c", value, "--type", kind, *portal, code=1)
    assert reason in result.output
    assert run("constants", *portal).output.strip() == "no constants"
    assert (
        "Invalid value" in run("set-constant", "c", "1", "--type", "money", *portal, code=2).output
    )
