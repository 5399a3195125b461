"""Preview of a scenario with variables, on the emulator over HTTP: a set_variable step is
evaluated on each record, conditions and templates see the result, an error skips the record
with ``expression_error``; only reads are made."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from marketapp.bench_preview import PreviewPortal, make_app, open_portal
from marketapp.devportal import DevportalServer, FakeClock
from marketapp.scenarios.definition import validate_definition
from marketapp.scenarios.preview import Selection, preview_scenario

pytestmark = pytest.mark.e2e
START = 1_740_830_400.0  # 2025-03-01 12:00 UTC


@pytest.fixture(scope="module")
def server() -> Iterator[DevportalServer]:
    with DevportalServer(
        {"limits_enabled": False, "portals": ["standard"]}, clock=FakeClock(START)
    ) as srv:
        yield srv


@pytest.fixture
def portal(tmp_path: Path, database_url: str, server: DevportalServer) -> Iterator[PreviewPortal]:
    server.emulator.reset()
    app = make_app(tmp_path, database_url, server)
    yield open_portal(server, app)
    from marketapp.db import get_db

    with app.app_context():
        get_db().engine.dispose()


DEFINITION = {
    "schema": 1,
    "key": "bonus",
    "name": {"en": "Bonus", "ru": "Бонус"},
    "description": {"en": "Computes a bonus.", "ru": "Считает бонус."},
    "entity_types": ["DEAL"],
    "variables": [
        {"name": "bonus", "type": "decimal", "default": 0},
        {"name": "big", "type": "boolean", "default": False},
    ],
    "steps": [
        {
            "type": "set_variable",
            "name": "bonus",
            "expression": "round(100000 * const.rate / (record.OPPORTUNITY - 100), 2)",
        },
        {"type": "set_variable", "name": "big", "expression": "var.bonus >= 100"},
        {
            "type": "condition",
            "rules": [{"left": {"var": "big"}, "op": "eq", "right": {"value": True}}],
            "yes": [{"type": "timeline_comment", "text": "Big bonus: {{ var.bonus }}"}],
            "no": [{"type": "timeline_comment", "text": "Bonus {{ var.bonus * 2 }} / 2"}],
        },
    ],
}


def _deal(portal: PreviewPortal, title: str, amount: str) -> int:
    rest = portal.server.portal_url(1) + "/rest/"
    body: dict[str, Any] = {
        "fields": {"TITLE": title, "OPPORTUNITY": amount},
        "auth": portal.token(1),
    }
    return int(requests.post(rest + "crm.deal.add", json=body, timeout=10).json()["result"])


def test_preview_evaluates_variables_per_record(portal: PreviewPortal) -> None:
    ids = (
        _deal(portal, "Big", "200"),
        _deal(portal, "Small", "50100"),
        _deal(portal, "Broken", "100"),
    )
    defn = validate_definition(DEFINITION, constants={"rate"})
    before = len(portal.requests())
    with portal.app.app_context():
        preview = portal.preview(defn, constants={"rate": Decimal("0.2")})
        report = preview_scenario(preview, Selection("DEAL", ids=ids))
    reads = (".get", ".list", ".fields", ".current")
    assert all(
        r["method"].endswith(reads) for r in portal.requests()[before:] if r["method"] != "batch"
    )
    big, small, broken = report.records

    assert [(s["path"], s["status"]) for s in big["steps"][:2]] == [
        ("steps[0]", "ready"),
        ("steps[1]", "ready"),
    ]
    assert (big["steps"][0]["value"], big["steps"][1]["value"]) == ("200", True)
    assert big["steps"][2]["branch"] == "yes"
    assert "Big bonus: 200" in str(big["steps"][3])

    assert small["steps"][0]["value"] == "0.4"
    assert small["steps"][2]["branch"] == "no"
    assert "Bonus 0.8 / 2" in str(small["steps"][3])

    (failed,) = broken["steps"]  # the record goes no further
    assert failed["status"] == "skipped"
    assert failed["reason"] == "expression_error"
    assert failed["message"] == "Division by zero. (character 27)"
    totals = report.totals["steps"]
    assert totals["steps[0]"]["ready"] == 2
    assert totals["steps[0]"]["skipped"] == {"expression_error": 1}
