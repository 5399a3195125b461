"""Robot calls: accept them fast, run them in batches, always answer Bitrix24.

The handler stores the call (deduplicated by ``event_token``) and queues
:func:`process_robot_calls` for the portal. The job claims up to 50 waiting calls with a lease,
confirms them with Bitrix24 (:mod:`marketapp.robot_origin`), hands them to the shared action
runner (:mod:`marketapp.actions.runner`), and answers every call with ``bizproc.event.send``
(return values and a log message in the portal's language), also when the action failed or
skipped. A call whose worker died is picked up again once its
lease expires; the ledger keeps its side effect from happening twice.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from marketapp.actions.base import ActionContext, RetryLater, failed
from marketapp.actions.portal import portal_context
from marketapp.actions.runner import Request, run_requests
from marketapp.bitrix.errors import BitrixError, PortalUnavailable
from marketapp.bitrix.payloads import RobotCall as RobotCallPayload
from marketapp.bitrix.payloads import document_entity_id
from marketapp.config import get_config
from marketapp.db import db_session
from marketapp.jobs import enqueue, job, periodic
from marketapp.leases import Leases
from marketapp.models import Portal, PortalStatus, RobotCall, RobotCallState
from marketapp.robot_origin import confirmed
from marketapp.scenarios import robot as scenario_robot

log = logging.getLogger(__name__)
GROUP_SIZE = 50
LEASE = timedelta(minutes=5)
# A call taken over this many times from a worker that died or crashed on it is answered
# ``failed`` instead of being run again (``attempts`` counts such take-overs only: a release
# for a retry or parking is an orderly end, not a failed attempt).
MAX_TAKEOVERS = 3
RUN_SCENARIO = scenario_robot.CODE
# A native burst of run-scenario calls is claimed whole (it becomes one launch), up to this many.
BURST_SIZE = 10_000
LEASES = Leases(RobotCall, RobotCallState.QUEUED, RobotCallState.RUNNING, LEASE)


def accept_call(session: Session, portal: Portal, payload: RobotCallPayload) -> bool:
    """Store a verified robot call and queue its processing; False for a repeated delivery."""
    # No lookup first: the unique (portal, event_token hash) key decides, also for two copies
    # arriving at the same moment.
    token_hash = hashlib.sha256(payload.event_token.encode()).hexdigest()
    entity_type, entity_id = _document(payload.document_id[2])
    session.add(
        RobotCall(
            portal_id=portal.id,
            event_token_hash=token_hash,
            event_token=payload.event_token,
            code=payload.code,
            workflow_id=payload.workflow_id,
            document_id=payload.document_id[2],
            entity_type=entity_type,
            entity_id=entity_id,
            properties=payload.properties,
            use_subscription=payload.use_subscription,
            **_launching_user(payload),
        )
    )
    enqueue(process_robot_calls, portal.id, delay=get_config().robot_group_delay)
    try:
        session.commit()
    except IntegrityError:  # a repeated delivery: the call is already stored
        session.rollback()
        return False
    return True


def _launching_user(payload: RobotCallPayload) -> dict[str, Any]:
    """Who a run-scenario call launches as: the robot's run-as user and their token."""
    if payload.code != RUN_SCENARIO:
        return {}
    return {"user_id": payload.auth.user_id, "user_token": payload.auth.access_token}


def _document(document_id: str) -> tuple[str, int]:
    """``CONTACT_42`` → (``CONTACT``, 42); other document kinds keep their prefix (cut to fit
    its column: no supported entity type is that long), with id 0 when not a usable number."""
    prefix = document_id.rpartition("_")[0]
    return prefix.upper()[:16], document_entity_id(document_id) or 0


@job(retries=20, retry_delay=5)
def process_robot_calls(portal_id: int) -> None:
    """Run every waiting robot call of a portal, in groups of up to 50."""
    session = db_session()
    portal = session.get(Portal, portal_id)
    if portal is None or portal.status is not PortalStatus.ACTIVE:
        return  # uninstalled or waiting for re-authorisation: calls stay queued
    context = _context(session, portal)
    retry = False
    with force_locale(portal.language):
        while calls := _claim(session, portal_id):
            try:
                _run(context, calls)
            except PortalUnavailable as exc:
                # Parked: the calls wait (queued) until a new install or page POST heals it.
                log.warning("portal unavailable", extra={"portal_id": portal_id, "why": str(exc)})
                LEASES.release(session, calls)
                return
            except (RetryLater, BitrixError) as exc:
                if isinstance(exc, BitrixError) and not exc.retryable:
                    raise
                log.warning(
                    "robot calls will be retried", extra={"portal_id": portal_id, "why": str(exc)}
                )
                LEASES.release(session, calls)
                retry = True
                break
    if retry:
        raise RetryLater("robot calls left for a retry")


@periodic(every_minutes=1)
def sweep_robot_calls() -> None:
    """Re-queue calls nobody is working on: a dead worker's lease ran out, or a portal healed."""
    session = db_session()
    portal_ids = session.scalars(
        select(RobotCall.portal_id)
        .join(Portal, Portal.id == RobotCall.portal_id)
        .where(
            Portal.status == PortalStatus.ACTIVE,
            LEASES.needs_sweep(datetime.now(UTC), idle=timedelta(minutes=1)),
        )
        .distinct()
    ).all()
    for portal_id in portal_ids:
        enqueue(process_robot_calls, portal_id)
    session.commit()


def _context(session: Session, portal: Portal) -> ActionContext:
    return portal_context(session, portal)


def _claim(session: Session, portal_id: int) -> list[RobotCall]:
    """A burst of run-scenario calls once it is quiet, else up to 50 other calls (or answers)."""
    mine = RobotCall.portal_id == portal_id
    window = timedelta(seconds=get_config().robot_group_delay)
    calls: list[RobotCall] = []
    if scenario_robot.burst_is_quiet(session, portal_id, window):
        calls = list(LEASES.claim(session, mine, scenario_robot.unstarted(), limit=BURST_SIZE))
    if not calls:
        calls = list(LEASES.claim(session, mine, ~scenario_robot.unstarted(), limit=GROUP_SIZE))
    for call in calls:
        if call.attempts >= MAX_TAKEOVERS and not call.status:
            _give_up(call)
    session.commit()
    return calls


def _give_up(call: RobotCall) -> None:
    """Answer a call that keeps stopping its worker as failed; it is never run again."""
    log.error("robot call given up", extra={"call_id": call.id, "attempts": call.attempts})
    outcome = failed(
        "gave_up",
        _("The robot stopped %(n)s times while running; it is not tried again.", n=call.attempts),
    )
    call.status = outcome.status
    call.return_values = outcome.return_values()
    call.log_message = outcome.message


def _run(ctx: ActionContext, calls: list[RobotCall]) -> None:
    calls = confirmed(ctx, calls)  # forged calls are rejected here: no side effect, no answer
    todo = [c for c in calls if not c.status]  # a retried call may only lack its answer
    scenario_calls = [c for c in todo if c.code == RUN_SCENARIO]
    if scenario_calls:  # launched; those that wait for their record's run are answered later
        _answer(
            ctx, [c for c in calls if c.status] + scenario_robot.start_calls(ctx, scenario_calls)
        )
        return
    outcomes = run_requests(ctx, [_request(c) for c in todo])
    for call in todo:
        outcome = outcomes[_key(call)]
        call.status = outcome.status
        call.return_values = outcome.return_values()
        call.log_message = outcome.message
    ctx.session.commit()
    _answer(ctx, calls)


def _request(call: RobotCall) -> Request:
    return Request(_key(call), call.code, call.entity_type, call.entity_id, call.properties)


def _answer(ctx: ActionContext, calls: list[RobotCall]) -> None:
    """``bizproc.event.send`` for every subscribed call; the others are simply closed."""
    commands = {
        str(c.id): (
            "bizproc.event.send",
            {
                "EVENT_TOKEN": c.event_token,
                "RETURN_VALUES": c.return_values,
                "LOG_MESSAGE": c.log_message,
            },
        )
        for c in calls
        if c.use_subscription
    }
    result = ctx.client.batch(commands) if commands else None
    retry = False
    for call in calls:
        error = result.errors.get(str(call.id)) if result else None
        if error is not None and error.retryable:
            retry = True
            continue
        if error is not None:
            # The workflow is gone (timed out or deleted): nobody is waiting for the answer.
            log.warning("robot answer refused", extra={"call_id": call.id, "error": str(error)})
        call.state = RobotCallState.DONE
        call.answered_at = datetime.now(UTC)
        call.lease_until = None
    ctx.session.commit()
    if retry:
        raise RetryLater("bizproc.event.send will be retried")


def _key(call: RobotCall) -> str:
    return f"robot:{call.id}"
