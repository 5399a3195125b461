"""Scenario versions: immutable, numbered, digested, scoped to their portal, comparable."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketapp.models import Scenario, ScenarioVersion
from marketapp.scenarios import versions
from marketapp.scenarios.definition import DefinitionError, definition_digest, validate_definition
from tests.scenarios.support import add_portal, definition


def _rows(db: Session) -> int:
    return int(db.scalar(select(func.count()).select_from(ScenarioVersion)) or 0)


def test_first_save_creates_the_scenario_and_version_1(db: Session) -> None:
    portal = add_portal(db, "p1")
    saved = versions.save(db, portal, definition(), author_id=7)
    db.commit()
    assert (saved.number, saved.author_id, saved.portal_id) == (1, 7, portal.id)
    assert saved.digest == definition_digest(validate_definition(definition()))
    assert len(saved.digest) == 64
    scenario = versions.get_scenario(db, portal, "welcome")
    assert scenario.current_version_id == saved.id
    assert scenario.active


def test_a_change_is_a_new_version_and_the_old_one_stays(db: Session) -> None:
    portal = add_portal(db, "p1")
    first = versions.save(db, portal, definition(text="one"), author_id=1)
    second = versions.save(db, portal, definition(text="two"), author_id=2)
    db.commit()
    assert [v.number for v in versions.list_versions(db, portal, "welcome")] == [1, 2]
    assert first.digest != second.digest
    assert versions.get_version(db, portal, "welcome").id == second.id  # current
    pinned = versions.get_version(db, portal, "welcome", 1)
    assert pinned.definition["steps"][0]["body"] == "one"
    assert pinned.author_id == 1


def test_saving_the_same_definition_again_adds_nothing(db: Session) -> None:
    portal = add_portal(db, "p1")
    first = versions.save(db, portal, definition(), author_id=1)
    again = versions.save(db, portal, definition(), author_id=2)
    db.commit()
    assert again.id == first.id
    assert again.author_id == 1
    assert _rows(db) == 1


def test_a_version_cannot_be_updated(db: Session) -> None:
    portal = add_portal(db, "p1")
    saved = versions.save(db, portal, definition(text="one"))
    db.commit()
    saved.definition = definition(text="sneaky")
    with pytest.raises(ValueError, match="immutable"):
        db.commit()
    db.rollback()
    assert versions.get_version(db, portal, "welcome").definition["steps"][0]["body"] == "one"


def test_an_invalid_definition_saves_nothing(db: Session) -> None:
    portal = add_portal(db, "p1")
    broken = definition()
    del broken["key"]
    with pytest.raises(DefinitionError) as caught:
        versions.save(db, portal, broken)
    db.rollback()
    assert caught.value.problems
    assert db.scalar(select(func.count()).select_from(Scenario)) == 0


def test_another_portal_sees_nothing(db: Session) -> None:
    one, two = add_portal(db, "p1"), add_portal(db, "p2")
    saved = versions.save(db, one, definition())
    db.commit()
    with pytest.raises(versions.NotFound):
        versions.get_scenario(db, two, "welcome")
    with pytest.raises(versions.NotFound):
        versions.list_versions(db, two, "welcome")
    with pytest.raises(versions.NotFound):
        versions.get_version(db, two, "welcome", 1)
    with pytest.raises(versions.NotFound):
        versions.version_by_id(db, two, saved.id)
    assert versions.list_scenarios(db, two) == []
    assert versions.version_by_id(db, one, saved.id).id == saved.id


def test_the_same_key_on_two_portals_is_two_scenarios(db: Session) -> None:
    one, two = add_portal(db, "p1"), add_portal(db, "p2")
    versions.save(db, one, definition(text="one"))
    versions.save(db, one, definition(text="one, again"))
    on_two = versions.save(db, two, definition(text="two"))
    db.commit()
    assert on_two.number == 1
    assert [s.key for s in versions.list_scenarios(db, two)] == ["welcome"]
    assert versions.get_version(db, two, "welcome").definition["steps"][0]["body"] == "two"


def test_missing_versions_are_not_found(db: Session) -> None:
    portal = add_portal(db, "p1")
    versions.save(db, portal, definition())
    db.commit()
    with pytest.raises(versions.NotFound):
        versions.get_version(db, portal, "welcome", 2)
    with pytest.raises(versions.NotFound):
        versions.get_scenario(db, portal, "nope")


def test_diff_names_each_changed_path() -> None:
    a = definition(text="Hello")
    b = definition(text="Hi there")
    b["name"]["ru"] = "Привет"
    b["steps"].append({"type": "send_sms", "text": "Bye"})
    changes = versions.diff(a, b)
    assert [(c.path, c.kind) for c in changes] == [
        ("name.ru", "changed"),
        ("steps[0].body", "changed"),
        ("steps[1]", "added"),
    ]
    assert changes[1].describe() == {
        "path": "steps[0].body",
        "kind": "changed",
        "before": "Hello",
        "after": "Hi there",
    }
    assert str(changes[1]) == '~ steps[0].body: "Hello" -> "Hi there"'


def test_diff_of_an_inserted_step_is_one_addition() -> None:
    a = definition()
    a["steps"].append({"type": "send_sms", "text": "Two"})
    b = definition()
    b["steps"] = [{"type": "wait", "days": 1}, *a["steps"]]
    assert [(c.path, c.kind) for c in versions.diff(a, b)] == [("steps[0]", "added")]
    assert [(c.path, c.kind) for c in versions.diff(b, a)] == [("steps[0]", "removed")]


def test_diff_between_stored_versions(db: Session) -> None:
    portal = add_portal(db, "p1")
    one = versions.save(db, portal, definition(text="one"))
    two = versions.save(db, portal, definition(text="two"))
    db.commit()
    assert [str(c) for c in versions.diff(one, two)] == ['~ steps[0].body: "one" -> "two"']
    assert versions.diff(two, two) == []
