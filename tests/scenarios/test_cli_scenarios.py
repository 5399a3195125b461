"""`marketapp scenarios …` against the app and the emulator: every command, its --json output,
and errors that exit 1 with their reasons (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from marketapp.cli import main
from marketapp.devportal import DevportalServer
from marketapp.scenarios import cli as scenarios_cli
from tests.e2e.harness import AppServer, Installed, install
from tests.scenarios.support import definition

pytestmark = pytest.mark.e2e


@pytest.fixture
def run(app_server: AppServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(scenarios_cli, "_app", lambda: app_server.app)

    def invoke(*args: str, code: int = 0, stdin: str | None = None) -> Result:
        result = CliRunner().invoke(main, ["scenarios", *args], input=stdin)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result

    return invoke


def _file(tmp_path: Path, value: Any, name: str = "scenario.json") -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return str(path)


def _document(defn: dict[str, Any]) -> dict[str, Any]:
    return {"format": "smart-scenarios", "schema": 1, "app_version": "0", "scenario": defn}


def test_import_list_show_export(run: Any, installed: Installed, tmp_path: Path) -> None:
    portal = ["--portal", installed.member_id]
    assert run("list", *portal).output.strip() == "no scenarios"
    source = _file(tmp_path, _document(definition(text="one")))
    assert run("import", source, *portal).output.strip() == "imported welcome as version 1"
    again = json.loads(run("import", source, *portal, "--json").output)
    assert again["created"] is False
    assert again["version"] == 1
    run("import", _file(tmp_path, _document(definition(text="two")), "v2.json"), *portal)

    (row,) = json.loads(run("list", *portal, "--json").output)
    assert row == {"key": "welcome", "active": True, "version": 2, "versions": 2, "name": "Welcome"}
    shown = json.loads(run("show", "welcome", *portal, "--json", "--version", "1").output)
    assert shown["version"] == 1
    assert shown["definition"]["steps"][0]["body"] == "one"
    assert [(v["number"], v["current"]) for v in shown["versions"]] == [(1, False), (2, True)]
    assert "v2" in run("show", "welcome", *portal).output

    assert run("diff", "welcome", "1", "2", *portal).output.strip() == (
        '~ steps[0].body: "one" -> "two"'
    )
    exported = json.loads(run("export", "welcome", *portal).output)
    assert exported["format"] == "smart-scenarios"
    assert exported["scenario"]["steps"][0]["body"] == "two"
    assert exported["requires"]["constants"] == []


def test_export_from_portal_1_imports_on_portal_2(
    run: Any,
    devportal: DevportalServer,
    app_server: AppServer,
    installed: Installed,
    tmp_path: Path,
) -> None:
    second = install(devportal, app_server, portal_number=2)
    run("import", _file(tmp_path, _document(definition())), "--portal", installed.member_id)
    out = tmp_path / "export.json"
    run("export", "welcome", "--portal", installed.member_id, "-o", str(out))
    imported = json.loads(run("import", str(out), "--portal", second.member_id, "--json").output)
    original = json.loads(run("show", "welcome", "--portal", installed.member_id, "--json").output)
    assert imported["created"] is True
    assert imported["digest"] == original["versions"][0]["digest"]


def test_validate_without_a_portal(run: Any, tmp_path: Path) -> None:
    ok = run("validate", _file(tmp_path, definition()))
    assert ok.output.startswith("valid: welcome")
    doc = json.loads(run("validate", _file(tmp_path, _document(definition())), "--json").output)
    assert doc["valid"] is True
    assert doc["requires"]["fields"] == {"CONTACT": ["NAME"]}
    assert len(doc["digest"]) == 64
    assert run("validate", "-", stdin=json.dumps(definition())).output.startswith("valid:")


def test_validate_reports_problems_by_path(run: Any, tmp_path: Path) -> None:
    broken = definition(text="Hi {{ nobody }}")
    broken["entity_types"] = []
    result = run("validate", _file(tmp_path, _document(broken)), code=1)
    assert "Error: scenario.entity_types:" in result.output
    as_json = json.loads(run("validate", _file(tmp_path, broken), "--json", code=1).stdout)
    assert as_json["error"] is True
    assert {p["path"] for p in as_json["problems"]} >= {"entity_types"}
    russian = run("validate", _file(tmp_path, broken), "--language", "ru", code=1).output
    assert russian != result.output


def test_validate_on_a_portal_names_the_missing_field(
    run: Any, installed: Installed, tmp_path: Path
) -> None:
    source = _file(tmp_path, definition(text="{{ record.UF_CRM_LOYALTY_TIER }} {{ const.phone }}"))
    result = run("validate", source, "--portal", installed.member_id, "--json", code=1)
    doc = json.loads(result.stdout)
    assert doc["missing"]["fields"] == {"CONTACT": ["UF_CRM_LOYALTY_TIER"]}
    assert doc["missing"]["constants"] == ["phone"]
    text = run("validate", source, "--portal", installed.member_id, code=1).output
    assert "UF_CRM_LOYALTY_TIER" in text
    assert "phone" in text
    russian = run("validate", source, "--portal", installed.member_id, "--language", "ru", code=1)
    assert "На портале нет константы phone." in russian.output


def test_an_import_that_misses_a_field_saves_nothing(
    run: Any, installed: Installed, tmp_path: Path
) -> None:
    source = _file(tmp_path, _document(definition(text="{{ record.UF_CRM_LOYALTY_TIER }}")))
    result = run("import", source, "--portal", installed.member_id, code=1)
    assert "UF_CRM_LOYALTY_TIER" in result.output
    assert run("list", "--portal", installed.member_id, "--json").output.strip() == "[]"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        (
            json.dumps({"format": "smart-scenarios", "schema": 2, "scenario": {}}),
            "Schema version 2",
        ),
    ],
)
def test_a_broken_file_is_a_clear_error(
    run: Any, installed: Installed, tmp_path: Path, content: str, needle: str
) -> None:
    result = run("import", _file(tmp_path, content), "--portal", installed.member_id, code=1)
    assert needle in result.output


def test_unknown_names_are_clear_errors(run: Any, installed: Installed, tmp_path: Path) -> None:
    assert "no portal with member_id nope" in run("list", "--portal", "nope", code=1).output
    missing = run("show", "ghost", "--portal", installed.member_id, code=1).output
    assert "no scenario 'ghost'" in missing
    doc = json.loads(
        run("export", "ghost", "--portal", installed.member_id, "--json", code=1).stdout
    )
    assert doc["error"] is True
    assert run("validate", str(tmp_path / "absent.json"), code=2).output  # click: no such file


def test_library_installs_once(run: Any, installed: Installed) -> None:
    shipped = json.loads(run("library", "--json").output)
    assert len(shipped) >= 8
    portal = ["--portal", installed.member_id, "--json"]
    first = json.loads(run("install-library", *portal).output)
    assert {row["outcome"] for row in first} == {"installed"}
    lacking = {row["key"]: row["missing"]["constants"] for row in first if "missing" in row}
    assert lacking["welcome-series"] == ["company_name"]  # uses {{ const.company_name }}
    run("set-constant", "company_name", "Acme", "--portal", installed.member_id)
    second = json.loads(run("install-library", *portal, "--update").output)
    assert {row["outcome"] for row in second} == {"kept"}
    assert all("missing" not in row for row in second)
    assert len(json.loads(run("list", *portal).output)) == len(shipped)


def test_constants(run: Any, installed: Installed) -> None:
    portal = ["--portal", installed.member_id]
    assert run("constants", *portal).output.strip() == "no constants"
    run("set-constant", "company_name", "Acme", *portal, "--label", "Company")
    run("set-constant", "company_name", "Acme Ltd", *portal)
    assert json.loads(run("constants", *portal, "--json").output) == [
        {"code": "company_name", "type": "string", "value": "Acme Ltd", "label": ""}
    ]
    assert "lowercase" in run("set-constant", "Bad-Code", "x", *portal, code=1).output
    assert "control" in run("set-constant", "nul", "a\x00b", *portal, code=1).output
    assert run("unset-constant", "company_name", *portal).output.strip() == "company_name deleted"
    assert run("unset-constant", "company_name", *portal).output.strip() == (
        "no constant company_name"
    )
