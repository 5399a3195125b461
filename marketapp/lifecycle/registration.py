"""Make a portal's robots, placements and event handlers match the manifest, idempotently.

Bitrix24 shows placements (``placement.get``) and event handlers (``event.get``) as they are, but
``bizproc.robot.list`` gives only codes, so for robots we keep a digest of what we registered and
update a robot when its definition changed. Sync reads the three lists in one batch, computes the
difference and sends only that, in batches. A failure leaves the rest applied and is reported;
running sync again completes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from marketapp.bitrix.errors import BitrixError
from marketapp.lifecycle.manifest import Manifest
from marketapp.models import Portal, Registration

log = logging.getLogger(__name__)

Command = tuple[str, dict[str, Any]]


class BatchResult(Protocol):
    results: dict[Any, Any]
    errors: dict[Any, BitrixError]


class RestClient(Protocol):
    def batch(self, commands: dict[str, Command], halt: bool = False) -> BatchResult: ...


class SyncError(Exception):
    """Some registration calls failed; ``failures`` maps each to Bitrix24's description."""

    def __init__(self, failures: dict[str, str]):
        self.failures = failures
        super().__init__("registration incomplete: " + ", ".join(sorted(failures)))


@dataclass
class SyncReport:
    """What one sync sent: command keys like ``robot.add:send_email``."""

    applied: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def sync(session: Session, portal: Portal, client: RestClient, manifest: Manifest) -> SyncReport:
    """Bring ``portal`` to ``manifest``; raise :class:`SyncError` listing what could not be done."""
    current = client.batch(
        {
            "robots": ("bizproc.robot.list", {}),
            "placements": ("placement.get", {}),
            "events": ("event.get", {}),
        }
    )
    if current.errors:
        raise SyncError({k: str(v) for k, v in current.errors.items()})
    stored = {
        r.key: r.digest
        for r in session.scalars(
            select(Registration).where(
                Registration.portal_id == portal.id, Registration.kind == "robot"
            )
        )
    }
    commands = {
        **_robot_commands(manifest, set(current.results.get("robots") or []), stored),
        **_placement_commands(manifest, _as_list(current.results.get("placements"))),
        **_event_commands(manifest, _as_list(current.results.get("events"))),
    }
    report = SyncReport()
    if not commands:
        return report
    outcome = client.batch(commands)
    failures = _retry_conflicts(client, manifest, outcome)
    applied = [k for k in commands if k not in failures]
    _record_robots(session, portal, manifest, applied)
    report.applied = applied
    log.info("registration synced", extra={"portal_id": portal.id, "applied": applied})
    if failures:
        raise SyncError(failures)
    return report


def _robot_commands(
    manifest: Manifest, on_portal: set[str], stored: dict[str, str]
) -> dict[str, Command]:
    commands: dict[str, Command] = {}
    for code, fields in manifest.robots.items():
        if code not in on_portal:
            commands[f"robot.add:{code}"] = ("bizproc.robot.add", {"CODE": code, **fields})
        elif stored.get(code) != digest(fields):
            commands[f"robot.update:{code}"] = (
                "bizproc.robot.update",
                {"CODE": code, "FIELDS": fields},
            )
    for code in sorted(on_portal - set(manifest.robots)):
        commands[f"robot.delete:{code}"] = ("bizproc.robot.delete", {"CODE": code})
    return commands


def _placement_commands(manifest: Manifest, on_portal: list[dict[str, Any]]) -> dict[str, Command]:
    commands: dict[str, Command] = {}
    bound = {(p.get("placement", ""), p.get("handler", "")): p for p in on_portal}
    for code, spec in manifest.placements.items():
        existing = bound.get((code, spec["HANDLER"]))
        if existing is not None and _same_titles(existing, spec):
            continue
        if existing is not None:
            commands[f"placement.unbind:{code}"] = (
                "placement.unbind",
                {"PLACEMENT": code, "HANDLER": spec["HANDLER"]},
            )
        commands[f"placement.bind:{code}"] = ("placement.bind", {"PLACEMENT": code, **spec})
    wanted = {(code, spec["HANDLER"]) for code, spec in manifest.placements.items()}
    for code, handler in sorted(set(bound) - wanted):
        commands[f"placement.unbind:{code}:{handler}"] = (
            "placement.unbind",
            {"PLACEMENT": code, "HANDLER": handler},
        )
    return commands


def _same_titles(existing: dict[str, Any], spec: dict[str, Any]) -> bool:
    have = existing.get("langAll") or {}
    if not isinstance(have, dict):
        return False
    want = spec.get("LANG_ALL", {})
    return all(
        (have.get(lang) or {}).get("TITLE") == values["TITLE"] for lang, values in want.items()
    ) and existing.get("title") == spec.get("TITLE")


def _event_commands(manifest: Manifest, on_portal: list[dict[str, Any]]) -> dict[str, Command]:
    commands: dict[str, Command] = {}
    bound = {(str(e.get("event", "")).upper(), e.get("handler", "")) for e in on_portal}
    wanted = {(name, handler) for name, handler in manifest.events.items()}
    for name, handler in sorted(wanted - bound):
        commands[f"event.bind:{name}"] = ("event.bind", {"event": name, "handler": handler})
    for name, handler in sorted(bound - wanted):
        commands[f"event.unbind:{name}:{handler}"] = (
            "event.unbind",
            {"event": name, "handler": handler},
        )
    return commands


def _retry_conflicts(
    client: RestClient, manifest: Manifest, outcome: BatchResult
) -> dict[str, str]:
    """Repair add/update races (robot added or removed meanwhile); return what still failed."""
    retry: dict[str, Command] = {}
    for key, error in outcome.errors.items():
        kind, _, code = key.partition(":")
        if kind == "robot.add" and error.code == "ERROR_ACTIVITY_ALREADY_INSTALLED":
            retry[key] = ("bizproc.robot.update", {"CODE": code, "FIELDS": manifest.robots[code]})
        elif kind == "robot.update" and error.code == "ERROR_ACTIVITY_NOT_FOUND":
            retry[key] = ("bizproc.robot.add", {"CODE": code, **manifest.robots[code]})
    failures = {k: str(v) for k, v in outcome.errors.items() if k not in retry}
    if retry:
        second = client.batch(retry)
        failures.update({k: str(v) for k, v in second.errors.items()})
    return failures


def _record_robots(
    session: Session, portal: Portal, manifest: Manifest, applied: list[str]
) -> None:
    for key in applied:
        kind, _, code = key.partition(":")
        if kind not in {"robot.add", "robot.update", "robot.delete"}:
            continue
        session.execute(
            delete(Registration).where(
                Registration.portal_id == portal.id,
                Registration.kind == "robot",
                Registration.key == code,
            )
        )
        if kind != "robot.delete":
            session.add(
                Registration(
                    portal_id=portal.id,
                    kind="robot",
                    key=code,
                    digest=digest(manifest.robots[code]),
                )
            )
    session.commit()


def _as_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, dict)]
    return [v for v in value or [] if isinstance(v, dict)]
