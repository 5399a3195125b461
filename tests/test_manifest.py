"""The robots registered on a portal are generated from the actions' parameter models.

``tests/golden/robots.json`` is what ``bizproc.robot.add`` received before the properties were
generated: any difference (even in order) would change the registration digest and re-register
every robot on every portal.
"""

from __future__ import annotations

import json
from pathlib import Path

from marketapp.lifecycle.manifest import ROBOTS, build_manifest, params_of
from marketapp.lifecycle.registration import digest

GOLDEN = Path(__file__).parent / "golden" / "robots.json"


def test_registered_robots_are_exactly_as_before() -> None:
    golden = json.loads(GOLDEN.read_text())
    robots = build_manifest("https://app.example.com").robots
    assert json.dumps(robots, ensure_ascii=False) == json.dumps(golden, ensure_ascii=False)
    assert {c: digest(f) for c, f in robots.items()} == {c: digest(f) for c, f in golden.items()}


def test_every_parameter_has_a_property_and_every_robot_an_action() -> None:
    for robot in ROBOTS:
        assert list(robot.properties) == list(params_of(robot.code).model_fields)
        for prop in robot.properties.values():
            assert set(prop["Name"]) == {"en", "ru"}
