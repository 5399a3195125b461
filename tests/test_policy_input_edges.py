"""Inputs that look right but are not: a final newline (``$`` in a regex matches before one),
zone names that are directories or too long for the file system, a filter nested thousands
deep. Each is refused with its field, never stored and never a traceback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from marketapp.scenarios import schedules as sch
from marketapp.scenarios.constants import ConstantError, set_constant
from marketapp.scenarios.definition import DefinitionError, validate_definition
from marketapp.scenarios.policies import SendWindow
from marketapp.scenarios.preview import _zone
from marketapp.scenarios.schedule_cli import _segment
from marketapp.scenarios.windows import window_problems
from tests.scenarios.support import definition
from tests.support import add_portal

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
BAD_ZONES = ["Europe", "a" * 5000, "Europe/Berlin\n"]


@pytest.mark.parametrize(
    ("window", "path"),
    [
        ({"start": "09:00\n"}, "start"),
        ({"end": "21:00\n"}, "end"),
        ({"zone": "recipient", "zone_field": "UF_CRM_TZ\n"}, "zone_field"),
    ],
)
def test_a_final_newline_is_not_a_window_time_or_field(window: dict[str, str], path: str) -> None:
    assert [p for p, _text in window_problems(SendWindow.model_validate(window))] == [path]


def test_a_final_newline_is_not_a_scenario_key_or_wait_time() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_definition(definition(key="welcome\n"))
    assert [p.path for p in caught.value.problems] == ["key"]
    timed = definition()
    timed["steps"].insert(0, {"type": "wait", "days": 1, "time": "09:00\n"})
    with pytest.raises(DefinitionError) as caught:
        validate_definition(timed)
    assert {p.path for p in caught.value.problems} == {"steps[0].time"}


def test_a_schedule_time_with_a_final_newline_is_refused() -> None:
    with pytest.raises(sch.ScheduleError) as caught:
        sch.check_rule(sch.Rule("daily", "09:30\n"), "UTC", NOW)
    assert caught.value.field == "time"


@pytest.mark.parametrize("zone", BAD_ZONES)
def test_a_zone_that_is_no_zone_file_is_refused_by_name(zone: str) -> None:
    with pytest.raises(sch.ScheduleError) as caught:
        sch.check_rule(sch.Rule("daily", "09:30", zone=zone), "UTC", NOW)
    assert caught.value.field == "zone"
    assert sch._zone_or_utc(zone) is UTC  # a stored one reads as UTC, as preview's does
    assert _zone(zone) is UTC


def test_a_filter_nested_thousands_deep_is_a_filter_error() -> None:
    with pytest.raises(sch.ScheduleError) as caught:
        _segment('{"a": ' * 5000 + "1" + "}" * 5000)
    assert caught.value.field == "filter"


def test_a_constant_code_with_a_final_newline_is_refused(db: Session) -> None:
    portal = add_portal(db, "c" * 32)
    with pytest.raises(ConstantError):
        set_constant(db, portal, "vat\n", "0.20", kind="decimal")
