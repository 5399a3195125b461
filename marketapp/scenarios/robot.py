"""The fifth robot, "Run scenario": native Bitrix24 automation starts one of our scenarios.

A native smart scenario launched on N selected list rows sends N robot calls in a burst. They
are grouped into **one launch**: calls of the same portal, scenario, robot properties and
launching user are collected until the group has been quiet for the robot group delay
(``Config.robot_group_delay``; a steady trickle is launched anyway after ``MAX_GROUP_WAIT``),
then launched with :func:`marketapp.scenarios.launches.launch` under an idempotency key derived
from the group (its first call), so a worker that dies after the launch commits finds the same
launch again instead of making a second one.

The launching user is ``auth[user_id]`` of the call: the robot's "Run as" user in the
template, else the ``AUTH_USER_ID`` the robot is registered with. Bitrix24 does not tell an app
who clicked "Run" on the list, so the run-as user is the only user the call can vouch for; the
launch is attributed to that user and reads the records with that user's rights (the token of
the call's ``auth``).

Each call is answered with ``bizproc.event.send``: at once (``wait = no``, status ``started``)
or when its record's run ends (``wait = yes``): the engine calls :func:`enrollments_ended` in
the transaction that makes an enrollment terminal, which gives the call its outcome and puts it
back in the robot queue, where :mod:`marketapp.robots` answers it like any other call (retries,
parking and the sweeper included). :func:`sweep_waiting_calls` is the safety net for
enrollments that ended some other way (stop, a crash between the two writes).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from flask_babel import force_locale
from flask_babel import gettext as _
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from marketapp.actions.base import ActionContext, ui
from marketapp.db import db_session
from marketapp.jobs import periodic
from marketapp.models import (
    Enrollment,
    EnrollmentState,
    Portal,
    RobotCall,
    RobotCallState,
    Scenario,
    ScenarioVersion,
)
from marketapp.models.launch import FINAL_STATES
from marketapp.scenarios.definition import DefinitionError, ScenarioDefinition, launch_values
from marketapp.scenarios.versions import list_scenarios, version_by_id

log = logging.getLogger(__name__)
CODE = "run_scenario"
MAX_GROUP_WAIT = timedelta(seconds=30)
MAX_VALUES = 20_000


class RunScenarioParams(BaseModel):
    scenario: str = Field(
        min_length=1,
        max_length=64,
        json_schema_extra=ui(
            "Scenario",
            "Сценарий",
            hint={
                "en": "The key of an active scenario of this portal.",
                "ru": "Ключ активного сценария этого портала.",
            },
        ),
    )
    values: str = Field(
        default="",
        max_length=MAX_VALUES,
        json_schema_extra=ui(
            "Parameter values",
            "Значения параметров",
            kind="text",
            hint={
                "en": "One key = value a line, or a JSON object.",
                "ru": "По строке ключ = значение или объект JSON.",
            },
        ),
    )
    wait: Literal["yes", "no"] = Field(
        default="yes",
        json_schema_extra=ui(
            "Wait for the record's run to finish",
            "Ждать завершения сценария по записи",
            options={"yes": "Yes", "no": "No"},
        ),
    )


def parse_values(text: str) -> dict[str, Any]:
    """``key = value`` lines (blank lines and ``#`` comments skipped) or a JSON object.

    Raises ``ValueError`` naming the bad line; the values are checked against the scenario's
    parameters by :func:`launch_values` afterwards.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ValueError(_("The values are not valid JSON: %(error)s", error=exc.msg)) from exc
        if not isinstance(parsed, dict):
            raise ValueError(_("The values must be a JSON object."))
        return parsed
    values: dict[str, Any] = {}
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(_("Line %(n)s: expected key = value.", n=number))
        values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class Choice:
    """An active scenario as the robot settings page offers it."""

    key: str
    title: str
    parameters: tuple[str, ...]  # "key (type, required)" lines, for the hint


def active_scenarios(session: Session, portal: Portal) -> list[tuple[Scenario, ScenarioVersion]]:
    """The portal's active scenarios that have a current version, by key."""
    found = []
    for scenario in list_scenarios(session, portal):
        if scenario.active and scenario.current_version_id is not None:
            found.append((scenario, version_by_id(session, portal, scenario.current_version_id)))
    return found


def scenario_choices(session: Session, portal: Portal, language: str) -> list[Choice]:
    choices = []
    for scenario, version in active_scenarios(session, portal):
        defn = ScenarioDefinition.model_validate(version.definition)
        params = tuple(
            f"{p.key} ({p.type}{', ' + _('required') if p.required else ''})"
            for p in defn.parameters
        )
        title = f"{defn.name.get(language)} ({scenario.key})"
        choices.append(Choice(scenario.key, title, params))
    return choices


def checked_values(defn: ScenarioDefinition, text: str, language: str) -> dict[str, Any]:
    """The robot's values parsed and checked; ``ValueError`` with a readable reason."""
    try:
        return launch_values(defn, parse_values(text), language=language)
    except DefinitionError as exc:
        raise ValueError(str(exc)) from exc


def group_key(call: RobotCall) -> str:
    """Calls with this key join one launch: same scenario and properties (the robot's settings,
    after Bitrix24 filled its expressions), entity type and launching user."""
    canon = json.dumps(
        [call.properties, call.entity_type, call.user_id or 0], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


def unstarted() -> ColumnElement[bool]:
    """Run-scenario calls not launched yet (they are claimed whole, never 50 at a time)."""
    return (RobotCall.code == CODE) & (RobotCall.status == "") & RobotCall.launch_id.is_(None)


def burst_is_quiet(session: Session, portal_id: int, window: timedelta) -> bool:
    """Whether the portal's unstarted run-scenario calls may launch: none arrived for
    ``window``, or the oldest has waited ``MAX_GROUP_WAIT`` (a steady trickle)."""
    newest, oldest = session.execute(
        select(func.max(RobotCall.created_at), func.min(RobotCall.created_at)).where(
            RobotCall.portal_id == portal_id,
            unstarted(),
            RobotCall.state.in_((RobotCallState.QUEUED, RobotCallState.RUNNING)),
        )
    ).one()
    if newest is None:
        return False
    now = datetime.now(UTC)
    return _aware(newest) <= now - window or _aware(oldest) <= now - MAX_GROUP_WAIT


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def start_calls(ctx: ActionContext, calls: list[RobotCall]) -> list[RobotCall]:
    """Launch confirmed run-scenario calls, one launch per group; the calls to answer now.

    The others wait (``WAITING``) for their record's run to end.
    """
    groups: dict[str, list[RobotCall]] = defaultdict(list)
    for call in calls:
        groups[group_key(call)].append(call)
    answer: list[RobotCall] = []
    for key, group in groups.items():
        answer.extend(_start_group(ctx, key, sorted(group, key=lambda c: c.id)))
        ctx.session.commit()
    return answer


def _start_group(ctx: ActionContext, key: str, calls: list[RobotCall]) -> list[RobotCall]:
    from marketapp.scenarios.launches import LaunchError

    if not calls:
        return []
    first = calls[0]
    params = validated_params(first.properties)
    if isinstance(params, str):
        message = _("Robot settings are invalid: %(problems)s", problems=params)
        return _fail(calls, "invalid_settings", message)
    found = _version(ctx, params.scenario)
    if isinstance(found, str):
        return _fail(calls, *_refusal(found, params.scenario))
    defn = ScenarioDefinition.model_validate(found.definition)
    message = _("This scenario works on %(types)s.", types=", ".join(defn.entity_types))
    if first.entity_type not in defn.entity_types:
        return _fail(calls, "unsupported_document", message)
    unusable = [c for c in calls if c.entity_id <= 0]  # not a CRM record id
    if unusable:
        return _fail(unusable, "unsupported_document", message) + _start_group(
            ctx, key, [c for c in calls if c.entity_id > 0]
        )
    try:
        values = checked_values(defn, params.values, ctx.portal.language)
    except ValueError as exc:
        return _fail(calls, "invalid_values", str(exc))
    name = defn.name.get(ctx.portal.language)
    answer: list[RobotCall] = []
    while calls:
        try:
            launched = _launch(ctx, found, values, key, calls)
        except LaunchError as exc:
            return answer + _fail(calls, "launch_refused", str(exc))
        enrolled = _enrolled(ctx.session, launched.id)
        joined = [c for c in calls if c.entity_id in enrolled]
        if not joined:  # the key names a launch of other records: never expected
            return answer + _fail(calls, "internal_error", _("The launch could not be made."))
        # A retry after a crash finds the launch made from the same first call; calls that
        # arrived since are not in it and start a launch of their own.
        calls = [c for c in calls if c.entity_id not in enrolled]
        answer.extend(_joined(launched.id, name, params.wait, joined))
        ctx.session.commit()  # before the next REST call: SQLite's limiter needs the write lock
    return answer


def validated_params(properties: dict[str, Any]) -> RunScenarioParams | str:
    """The robot's parameters, or the problems that refuse them."""
    try:
        return RunScenarioParams.model_validate(properties)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def _version(ctx: ActionContext, key: str) -> ScenarioVersion | str:
    """The current version of an active scenario, or why there is none."""
    scenario = ctx.session.scalar(
        select(Scenario).where(Scenario.portal_id == ctx.portal.id, Scenario.key == key)
    )
    if scenario is None or scenario.current_version_id is None:
        return "scenario_not_found"
    if not scenario.active:
        return "scenario_inactive"
    return version_by_id(ctx.session, ctx.portal, scenario.current_version_id)


def _refusal(reason: str, key: str) -> tuple[str, str]:
    if reason == "scenario_inactive":
        return reason, _("The scenario %(key)s is turned off.", key=key)
    return reason, _("There is no scenario %(key)s on this portal.", key=key)


def _launch(
    ctx: ActionContext,
    version: ScenarioVersion,
    values: dict[str, Any],
    key: str,
    calls: list[RobotCall],
) -> Any:
    from marketapp.bitrix.client import client_for_user
    from marketapp.scenarios.launches import launch
    from marketapp.scenarios.preview import Selection, launching_user

    first = calls[0]
    token = next((c.user_token for c in calls if c.user_token), None)
    user = launching_user(client_for_user(ctx.portal, token)) if token else {}
    ids = tuple(dict.fromkeys(c.entity_id for c in calls))
    return launch(
        ctx.session,
        ctx.portal,
        version,
        Selection(first.entity_type, ids=ids),
        _json_safe(values),
        first.user_id,
        token,
        f"robot:{first.id}:{key[:16]}",
        user=user,
        source="robot",
    )


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """Typed launch values (``Decimal``, ``date`` …) as the JSON the launch stores."""
    return dict(json.loads(json.dumps(values, default=str)))


def _enrolled(session: Session, launch_id: int) -> set[int]:
    query = select(Enrollment.entity_id).where(Enrollment.launch_id == launch_id)
    return set(session.scalars(query))


def _joined(launch_id: int, name: str, wait: str, calls: list[RobotCall]) -> list[RobotCall]:
    """Link the calls to their launch; those that do not wait get their answer now."""
    for call in calls:
        call.launch_id = launch_id
        call.user_token = None
        if wait == "yes":
            call.state = RobotCallState.WAITING
            call.lease_until = None
            continue
        message = _("Scenario %(name)s started (launch %(id)s).", name=name, id=launch_id)
        _settle(call, "started", "", message)
    return [] if wait == "yes" else calls


def _fail(calls: list[RobotCall], reason: str, message: str) -> list[RobotCall]:
    log.info("run-scenario calls refused", extra={"reason": reason, "calls": len(calls)})
    for call in calls:
        call.user_token = None
        _settle(call, "failed", reason, message)
    return calls


def _settle(call: RobotCall, status: str, reason: str, message: str) -> None:
    call.status = status
    call.return_values = {"status": status, "launch_id": call.launch_id or "", "reason": reason}
    call.log_message = message


# -- the record's run ended: answer the waiting calls --------------------------------------------


def enrollments_ended(session: Session, launch_ids: Iterable[int]) -> int:
    """Give every waiting call whose enrollment (of these launches) is final its outcome and
    queue its answer; the caller commits. The engine calls this as it settles enrollments."""
    from marketapp.jobs import enqueue
    from marketapp.robots import process_robot_calls

    ids = sorted(set(launch_ids))
    if not ids:
        return 0
    rows = session.execute(
        select(RobotCall, Enrollment)
        .join(
            Enrollment,
            (Enrollment.launch_id == RobotCall.launch_id)
            & (Enrollment.entity_type == RobotCall.entity_type)
            & (Enrollment.entity_id == RobotCall.entity_id),
        )
        .where(
            RobotCall.launch_id.in_(ids),
            RobotCall.state == RobotCallState.WAITING,
            Enrollment.state.in_(FINAL_STATES),
        )
    ).all()
    portals = set()
    for call, enrollment in rows:
        state = EnrollmentState(enrollment.state).value
        message = enrollment.message or _(
            "The scenario ended for this record: %(state)s.", state=state
        )
        _settle(call, state, enrollment.reason, message)
        call.state = RobotCallState.QUEUED
        portals.add(call.portal_id)
    for portal_id in sorted(portals):
        enqueue(process_robot_calls, portal_id, session=session)
    return len(rows)


@periodic(every_minutes=1)
def sweep_waiting_calls() -> None:
    """Waiting calls whose record's run ended without the engine's hook (a stop, a skip while
    the target was read, a crash between two writes) get their answer."""
    session = db_session()
    rows = session.execute(
        select(RobotCall.portal_id, RobotCall.launch_id)
        .where(RobotCall.state == RobotCallState.WAITING, RobotCall.launch_id.is_not(None))
        .distinct()
    ).all()
    by_portal: dict[int, list[int]] = defaultdict(list)
    for portal_id, launch_id in rows:
        if launch_id is not None:
            by_portal[portal_id].append(launch_id)
    for portal_id, launch_ids in sorted(by_portal.items()):
        portal = session.get(Portal, portal_id)
        with force_locale(portal.language if portal else "en"):  # the answers' log messages
            enrollments_ended(session, launch_ids)
    session.commit()
