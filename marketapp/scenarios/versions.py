"""Saving scenario definitions as immutable, numbered versions; listing and comparing them.

Every lookup filters by portal: another portal's scenario or version is simply not found.
The functions flush and leave the commit to the caller, so an import or a library install
commits once (or not at all).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketapp.models import Portal, Scenario, ScenarioVersion
from marketapp.scenarios.definition import (
    ScenarioDefinition,
    definition_digest,
    validate_definition,
)


class NotFound(LookupError):
    """No such scenario or version on this portal (whether or not another portal has one)."""


def save(
    session: Session,
    portal: Portal,
    definition: Any,
    author_id: int | None = None,
    *,
    language: str = "en",
) -> ScenarioVersion:
    """Validate ``definition`` and store it as the scenario's next version, made current.

    Saving what the latest version already holds returns that version (no new row).
    Raises ``DefinitionError`` when the definition is invalid.
    """
    defn = _validated(definition, language)
    digest = definition_digest(defn)
    scenario = _scenario_or_none(session, portal, defn.key)
    if scenario is None:
        scenario = Scenario(portal_id=portal.id, key=defn.key)
        session.add(scenario)
        session.flush()
    latest = latest_version(session, portal, defn.key)
    if latest is not None and latest.digest == digest:
        version = latest
    else:
        version = ScenarioVersion(
            portal_id=portal.id,
            scenario_id=scenario.id,
            number=(latest.number + 1) if latest else 1,
            definition=defn.document(),
            digest=digest,
            author_id=author_id,
        )
        session.add(version)
        session.flush()
    scenario.current_version_id = version.id
    session.flush()
    return version


def list_scenarios(session: Session, portal: Portal) -> list[Scenario]:
    query = select(Scenario).where(Scenario.portal_id == portal.id).order_by(Scenario.key)
    return list(session.scalars(query))


def get_scenario(session: Session, portal: Portal, key: str) -> Scenario:
    scenario = _scenario_or_none(session, portal, key)
    if scenario is None:
        raise NotFound(f"no scenario {key!r}")
    return scenario


def list_versions(session: Session, portal: Portal, key: str) -> list[ScenarioVersion]:
    scenario = get_scenario(session, portal, key)
    query = (
        select(ScenarioVersion)
        .where(ScenarioVersion.portal_id == portal.id, ScenarioVersion.scenario_id == scenario.id)
        .order_by(ScenarioVersion.number)
    )
    return list(session.scalars(query))


def get_version(
    session: Session, portal: Portal, key: str, number: int | None = None
) -> ScenarioVersion:
    """Version ``number`` of scenario ``key``, or its current version. A launch pins this."""
    scenario = get_scenario(session, portal, key)
    if number is None:
        if scenario.current_version_id is None:
            raise NotFound(f"scenario {key!r} has no version")
        return version_by_id(session, portal, scenario.current_version_id)
    version = session.scalar(
        select(ScenarioVersion).where(
            ScenarioVersion.portal_id == portal.id,
            ScenarioVersion.scenario_id == scenario.id,
            ScenarioVersion.number == number,
        )
    )
    if version is None:
        raise NotFound(f"scenario {key!r} has no version {number}")
    return version


def version_by_id(session: Session, portal: Portal, version_id: int) -> ScenarioVersion:
    """The pinned version of a launch, by id, only if it belongs to ``portal``."""
    version = session.scalar(
        select(ScenarioVersion).where(
            ScenarioVersion.portal_id == portal.id, ScenarioVersion.id == version_id
        )
    )
    if version is None:
        raise NotFound(f"no scenario version {version_id}")
    return version


def version_count(session: Session, scenario: Scenario) -> int:
    query = select(func.count()).where(
        ScenarioVersion.portal_id == scenario.portal_id,
        ScenarioVersion.scenario_id == scenario.id,
    )
    return int(session.scalar(query) or 0)


def _validated(definition: Any, language: str) -> ScenarioDefinition:
    if isinstance(definition, ScenarioDefinition):
        definition = definition.document()
    return validate_definition(definition, language=language)


def _scenario_or_none(session: Session, portal: Portal, key: str) -> Scenario | None:
    query = select(Scenario).where(Scenario.portal_id == portal.id, Scenario.key == key)
    return session.scalar(query)


def latest_version(session: Session, portal: Portal, key: str) -> ScenarioVersion | None:
    """The highest-numbered version of ``key`` (not necessarily the current one)."""
    query = (
        select(ScenarioVersion)
        .join(Scenario, Scenario.id == ScenarioVersion.scenario_id)
        .where(
            Scenario.portal_id == portal.id,
            Scenario.key == key,
            ScenarioVersion.portal_id == portal.id,
        )
        .order_by(ScenarioVersion.number.desc())
        .limit(1)
    )
    return session.scalar(query)


# --- comparing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference at a path such as ``steps[2].text``."""

    path: str
    kind: str  # added | removed | changed
    before: Any = None
    after: Any = None

    def describe(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.kind != "added":
            data["before"] = self.before
        if self.kind != "removed":
            data["after"] = self.after
        return data

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.path}: {_short(self.after)}"
        if self.kind == "removed":
            return f"- {self.path}: {_short(self.before)}"
        return f"~ {self.path}: {_short(self.before)} -> {_short(self.after)}"


def diff(
    a: ScenarioVersion | Mapping[str, Any], b: ScenarioVersion | Mapping[str, Any]
) -> list[Change]:
    """What changed from ``a`` to ``b``, path by path (a step inserted shows as one addition)."""
    changes: list[Change] = []
    _walk(_definition(a), _definition(b), "", changes)
    return changes


def _definition(value: ScenarioVersion | Mapping[str, Any]) -> Any:
    return value.definition if isinstance(value, ScenarioVersion) else value


def _walk(a: Any, b: Any, path: str, out: list[Change]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                out.append(Change(sub, "added", after=b[key]))
            elif key not in b:
                out.append(Change(sub, "removed", before=a[key]))
            else:
                _walk(a[key], b[key], sub, out)
    elif _is_list(a) and _is_list(b):
        _walk_list(a, b, path, out)
    elif a != b or type(a) is not type(b):
        out.append(Change(path, "changed", before=a, after=b))


def _walk_list(a: Sequence[Any], b: Sequence[Any], path: str, out: list[Change]) -> None:
    """Align the items first, so inserting one step does not mark every later one changed."""
    matcher = difflib.SequenceMatcher(
        a=[_canon(x) for x in a], b=[_canon(x) for x in b], autojunk=False
    )
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1)  # edited in place; the rest was added or removed
        for k in range(paired):
            _walk(a[i1 + k], b[j1 + k], f"{path}[{j1 + k}]", out)
        out.extend(Change(f"{path}[{i}]", "removed", before=a[i]) for i in range(i1 + paired, i2))
        out.extend(Change(f"{path}[{j}]", "added", after=b[j]) for j in range(j1 + paired, j2))


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _short(value: Any, limit: int = 60) -> str:
    text = _canon(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
