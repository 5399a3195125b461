"""The scenario engine: runs the due enrollments of a portal's launches, a slice at a time.

:func:`process_portal` (a job per portal) wakes the waits that are due, then claims due
enrollments with a lease (:mod:`marketapp.leases`), up to 50 at the same step of the same launch,
and runs that step for all of them at once:

- an acting step (and the acting steps ``with_previous`` right after it) goes through the shared
  runner (:func:`marketapp.actions.runner.run_requests`) or, for tasks and notifications,
  :mod:`marketapp.scenarios.engine_steps`: one read of the records, one batch of up to 50
  commands per step, every side effect claimed in the ledger under
  ``launch:{launch}:{enrollment}:{step}`` before it is attempted and settled after;
- a wait sets ``next_at`` (no worker sleeps); a condition reads the record fresh; a split takes
  the record's reproducible bucket; a stop ends the record.

Each record is settled from the outcome, its counters move and its log grows in the same commit
as its state. A skip for the record itself (gone, unreadable) or a failure ends it; other skips
(no phone …) count at the step and the record goes on. A transient error puts the group back
with a backoff; after ``MAX_TRIES`` the records end ``failed`` with the reason. On
``PortalUnavailable`` the portal's launches are parked (enrollments stay due) until the portal
is healthy again; :func:`sweep_enrollments` un-parks them and re-queues expired leases and due
waits. A job runs at most ``SLICE`` groups, then queues itself again, so robot calls of the same
portal (which share its limiter) get their turns while a big launch runs.

"Now" for waits comes from :func:`now` (tests move it; leases use the wall clock).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from marketapp.actions.base import (
    Outcome,
    RetryLater,
    Target,
    load_records,
    param_fields,
    template_fields,
)
from marketapp.actions.portal import portal_context
from marketapp.actions.runner import Request, run_requests
from marketapp.actions.sms import timeline_text
from marketapp.bitrix.errors import BitrixError, PortalUnavailable
from marketapp.caps import caps_for
from marketapp.db import db_session
from marketapp.jobs import enqueue, job, periodic
from marketapp.leases import Leases
from marketapp.models import (
    Enrollment,
    EnrollmentState,
    Launch,
    LaunchEvent,
    LaunchState,
    Portal,
    PortalStatus,
    ScenarioVersion,
    SmsMessage,
)
from marketapp.scenarios import gates
from marketapp.scenarios import steps as st
from marketapp.scenarios.constants import constant_values
from marketapp.scenarios.context import portal_info, template_context, template_values
from marketapp.scenarios.counters import Deltas, bump
from marketapp.scenarios.definition import ScenarioDefinition
from marketapp.scenarios.engine_steps import run_engine_step, write_lines
from marketapp.scenarios.expressions import parse
from marketapp.scenarios.plan import ACTING, Plan
from marketapp.scenarios.policies import rule_fields
from marketapp.scenarios.preview import STEP_COMMANDS, _zone, budget_for, estimate, wait_until
from marketapp.scenarios.scenario_variables import EXPRESSION_ERROR, evaluate_step, variable_view
from marketapp.scenarios.windows import window_fields, window_for

log = logging.getLogger(__name__)
# Records claimed at one step: one read request (2,500 records) and full batches of 50
# commands. A group that lost its worker is retried in smaller groups (a record that crashes
# the worker every time ends up alone, and fails alone).
GROUP_SIZE = 2500
TAKEOVER_GROUP_SIZES = (GROUP_SIZE, 50, 1)
# A job run stops after this long (or SLICE groups) and queues itself again, so robot calls of
# the same portal (which share its limiter and the worker's threads) get their turns.
SLICE = 4
SLICE_SECONDS = 10.0
# A group of 2,500 at the standard plan's 2 requests/s takes about a minute per acting step.
LEASE = timedelta(minutes=10)
MAX_TRIES = 5  # transient failures of one step before the record ends failed
MAX_TAKEOVERS = 3  # leases lost (a worker died on the group) before the record ends failed
LEASES = Leases(Enrollment, EnrollmentState.PENDING, EnrollmentState.RUNNING, LEASE)
CHAIN_LEASE = timedelta(minutes=2)  # longer than a group takes; renewed at each group
# A launch with due work that no job touched for this long gets a job from the sweeper (a
# live job touches its launch at every group; a second job for a portal only asks for a turn).
IDLE = timedelta(seconds=30)
# Queue the job for a wait that ends within this many seconds (the sweeper does the rest).
WAKE_AHEAD = 60.0
RECORD_REASONS = {"not_found", "unsupported_document", "access_denied", "unreadable"}
RUNNABLE = (LaunchState.RUNNING, LaunchState.EXPANDING, LaunchState.STOPPING)
ACTIVE = (EnrollmentState.PENDING, EnrollmentState.RUNNING, EnrollmentState.WAITING)
ACTED = "_acted"  # key in ``Enrollment.branches``: some acting step did something


def now() -> datetime:
    """The engine's "now" (waits and due times); tests replace it to move time."""
    return datetime.now(UTC)


def backoff(tries: int) -> float:
    """Seconds before a group that failed ``tries`` times is tried again."""
    return float(min(60, 2**tries))


def ledger_key(launch_id: int, enrollment_id: int, path: str) -> str:
    return f"launch:{launch_id}:{enrollment_id}:{path}"


# -- the job ----------------------------------------------------------------------------------


@job(retries=20, retry_delay=5)
def process_portal(portal_id: int) -> None:
    """Run due enrollments of one portal's launches, at most ``SLICE`` groups, then re-queue.
    One such job runs per portal at a time: a job that finds another one on it asks for a
    turn and leaves (the one on it queues a run after its own), so jobs never pile up."""
    session = db_session()
    portal = session.get(Portal, portal_id)
    if portal is None or portal.status is not PortalStatus.ACTIVE:
        return  # uninstalled or waiting for re-authorisation: enrollments stay due
    if not CHAIN.take(session, portal_id):
        return
    try:
        _process(session, portal)
    finally:
        session.rollback()
        if CHAIN.leave(session, portal_id):
            enqueue(process_portal, portal_id, session=session)
        session.commit()


def _process(session: Session, portal: Portal) -> None:
    portal_id = portal.id
    runs: dict[int, LaunchRun] = {}
    with force_locale(portal.language):
        wake(session, portal, runs)
        more = False
        began = time.monotonic()
        for _n in range(SLICE):
            if time.monotonic() - began >= SLICE_SECONDS:
                more = True
                break
            CHAIN.renew(session, portal_id)
            group = _claim(session, portal, runs)
            if not group:
                break
            run = runs[group[0].launch_id]
            try:
                run.step(group)
            except PortalUnavailable as exc:
                log.warning("portal unavailable", extra={"portal_id": portal_id, "why": str(exc)})
                session.rollback()  # nothing of the group is settled: it stays due
                LEASES.release(session, group)
                park(session, portal, str(exc))
                return
            except (RetryLater, BitrixError) as exc:
                if isinstance(exc, BitrixError) and not exc.retryable:
                    run.fail_group(group, "rest_error", str(exc))
                else:
                    delay = run.back_off(group, str(exc))
                    enqueue(process_portal, portal_id, session=session, delay=delay)
                    break
        else:
            more = True
        for run in runs.values():
            run.finish_if_done()
        if more:
            enqueue(process_portal, portal_id, session=session)
        else:
            _schedule_next_wake(session, portal)
        session.commit()


@dataclasses.dataclass(frozen=True)
class Chain:
    """The per-portal engine lease (``Portal.engine_until``), renewed at every group."""

    duration: timedelta

    def take(self, session: Session, portal_id: int) -> bool:
        """Hold the portal, or (held by a live job) ask it for a turn; ``False``: leave."""
        for _attempt in range(2):
            t = datetime.now(UTC)
            held = Portal.engine_until.is_not(None) & (Portal.engine_until >= t)
            taken = session.execute(
                update(Portal)
                .where(Portal.id == portal_id, ~held)
                .values(engine_until=t + self.duration, engine_rerun=False)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if _rows(taken):
                return True
            asked = session.execute(
                update(Portal)
                .where(Portal.id == portal_id, held)
                .values(engine_rerun=True)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if _rows(asked):
                return False
            # The holder left between the two statements: try to take it once more.
        return False

    def renew(self, session: Session, portal_id: int) -> None:
        session.execute(
            update(Portal)
            .where(Portal.id == portal_id)
            .values(engine_until=datetime.now(UTC) + self.duration)
            .execution_options(synchronize_session=False)
        )
        session.commit()

    def leave(self, session: Session, portal_id: int) -> bool:
        """Release the portal; ``True`` if another job asked for a turn meanwhile."""
        asked = session.scalar(
            select(Portal.engine_rerun).where(Portal.id == portal_id).with_for_update()
        )
        session.execute(
            update(Portal)
            .where(Portal.id == portal_id)
            .values(engine_until=None, engine_rerun=False)
            .execution_options(synchronize_session=False)
        )
        return bool(asked)


CHAIN = Chain(CHAIN_LEASE)


def _rows(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _schedule_next_wake(session: Session, portal: Portal) -> None:
    """Queue the job for the next wait (or deferred step) that ends within a minute (the
    sweeper does the rest)."""
    soonest = session.scalar(
        select(func.min(Enrollment.next_at)).where(
            Enrollment.portal_id == portal.id,
            Enrollment.launch_id.in_(_runnable_ids(session, portal)),
            Enrollment.state.in_((EnrollmentState.WAITING, EnrollmentState.PENDING)),
            Enrollment.next_at > now(),
        )
    )
    if soonest is None:
        return
    seconds = (_aware(soonest) - now()).total_seconds()
    if seconds <= WAKE_AHEAD:
        enqueue(process_portal, portal.id, session=session, delay=max(0.0, seconds))


def park(session: Session, portal: Portal, why: str) -> None:
    """Park the portal's running launches; their enrollments stay due for the un-park."""
    session.execute(
        update(Launch)
        .where(Launch.portal_id == portal.id, Launch.state == LaunchState.RUNNING)
        .values(state=LaunchState.PARKED, reason="portal_unavailable")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    log.info("launches parked", extra={"portal_id": portal.id, "why": why[:200]})


@periodic(every_minutes=1)
def sweep_enrollments() -> None:
    """Un-park launches of healthy portals; queue portals whose work nobody is on: expired
    leases (a dead worker), or due enrollments and waits of a launch no job has touched for
    ``IDLE`` (a live job chain updates its launch's ETA every run: no second chain for it)."""
    session = db_session()
    healthy = select(Portal.id).where(Portal.status == PortalStatus.ACTIVE)
    unparked = session.scalars(
        update(Launch)
        .where(Launch.state == LaunchState.PARKED, Launch.portal_id.in_(healthy))
        .values(state=LaunchState.RUNNING, reason="")
        .returning(Launch.portal_id)
        .execution_options(synchronize_session=False)
    ).all()
    t = now()
    due = Enrollment.state.in_((EnrollmentState.PENDING, EnrollmentState.WAITING)) & (
        Enrollment.next_at <= t
    )
    idle = due & (Launch.updated_at < t - IDLE)
    lost = (Enrollment.state == EnrollmentState.RUNNING) & (
        Enrollment.lease_until < datetime.now(UTC)
    )
    portal_ids = session.scalars(
        select(Enrollment.portal_id)
        .join(Launch, Launch.id == Enrollment.launch_id)
        .where(Launch.state.in_(RUNNABLE), Launch.portal_id.in_(healthy), idle | lost)
        .distinct()
    ).all()
    for portal_id in sorted({*unparked, *portal_ids}):
        enqueue(process_portal, portal_id, session=session)
    session.commit()


# -- claiming ---------------------------------------------------------------------------------


def _runnable_ids(session: Session, portal: Portal) -> list[int]:
    # A launch reading explicit ids with the user's rights waits for that check.
    query = select(Launch.id).where(
        Launch.portal_id == portal.id,
        Launch.state.in_(RUNNABLE),
        (Launch.state != LaunchState.EXPANDING) | Launch.target_filter.is_not(None),
    )
    return list(session.scalars(query))


def _claim(session: Session, portal: Portal, runs: dict[int, LaunchRun]) -> list[Enrollment]:
    """Up to ``GROUP_SIZE`` due enrollments of one launch at one step (the oldest due first)."""
    launch_ids = _runnable_ids(session, portal)
    if not launch_ids:
        return []
    due = Enrollment.next_at <= now()
    first = session.execute(
        select(Enrollment.launch_id, Enrollment.step, Enrollment.attempts, Enrollment.state)
        .where(
            Enrollment.portal_id == portal.id,
            Enrollment.launch_id.in_(launch_ids),
            LEASES.claimable(datetime.now(UTC)),
            due,
        )
        .order_by(Enrollment.id)
        .limit(1)
    ).first()
    if first is None:
        return []
    launch_id, path, attempts, state = first
    takeovers = attempts + (state == EnrollmentState.RUNNING)  # what the claim will count
    size = TAKEOVER_GROUP_SIZES[min(takeovers, len(TAKEOVER_GROUP_SIZES) - 1)]
    # Rows this session settled before are in its identity map with the values it wrote: the
    # claim must see the ones it sets (running), not those.
    session.expire_all()
    group = list(
        LEASES.claim(
            session,
            Enrollment.portal_id == portal.id,
            Enrollment.launch_id == launch_id,
            Enrollment.step == path,
            due,
            Enrollment.attempts == attempts,
            Enrollment.state == state,
            limit=size,
        )
    )
    if launch_id not in runs:
        runs[launch_id] = LaunchRun.load(session, portal, launch_id)
    return runs[launch_id].give_up_takeovers(group)


def wake(session: Session, portal: Portal, runs: dict[int, LaunchRun]) -> None:
    """Waits that are due move on to the step after them (one UPDATE per launch and step)."""
    t = now()
    due = session.execute(
        select(Enrollment.launch_id, Enrollment.step)
        .where(
            Enrollment.portal_id == portal.id,
            Enrollment.launch_id.in_(_runnable_ids(session, portal)),  # not asleep
            Enrollment.state == EnrollmentState.WAITING,
            Enrollment.next_at <= t,
        )
        .distinct()
    ).all()
    for launch_id, path in due:
        if launch_id not in runs:
            runs[launch_id] = LaunchRun.load(session, portal, launch_id)
        runs[launch_id].wake(path, t)
    session.commit()


# -- one launch -------------------------------------------------------------------------------


@dataclasses.dataclass
class Settled:
    """What a step did to one enrollment."""

    kind: str  # sent | skipped | failed | waiting | branch | passed
    reason: str = ""
    message: str = ""
    result_id: str = ""
    ends: EnrollmentState | None = None  # a final state, or None: the record goes on


class LaunchRun:
    """One launch being worked on in this job run: its plan, context and counters."""

    def __init__(self, session: Session, portal: Portal, row: Launch, plan: Plan) -> None:
        self.session = session
        self.portal = portal
        self.row = row
        self.plan = plan
        self.defn = plan.defn
        info = portal_info(session, portal)
        self.zone = _zone(str(info.get("timezone") or ""))
        self.constants = constant_values(session, portal)
        self.ctx = portal_context(
            session,
            portal,
            template_globals=template_context({}, row.params, self.constants, row.user, info),
            own_lines=False,
        )
        self.touched = False
        self._stopping = False
        self._restarted: set[int] = set()
        self._ended = False  # a record ended: robot calls waiting for it get their answer

    @classmethod
    def load(cls, session: Session, portal: Portal, launch_id: int) -> LaunchRun:
        row = session.get(Launch, launch_id)
        assert row is not None
        version = session.get(ScenarioVersion, row.version_id)
        assert version is not None
        return cls(
            session, portal, row, Plan.of(ScenarioDefinition.model_validate(version.definition))
        )

    @property
    def name(self) -> str:
        lang = self.portal.language if self.portal.language in ("ru", "en") else "en"
        return str(getattr(self.defn.name, lang))

    # claiming helpers

    def give_up_takeovers(self, group: list[Enrollment]) -> list[Enrollment]:
        """Records whose worker died ``MAX_TAKEOVERS`` times end failed; the rest run."""
        lost = [e for e in group if e.attempts >= MAX_TAKEOVERS]
        if lost:
            message = _("The scenario stopped %(n)s times on this record.", n=MAX_TAKEOVERS)
            self._settle(
                {
                    e.id: Settled("failed", "gave_up", message, ends=EnrollmentState.FAILED)
                    for e in lost
                },
                lost,
                lost[0].step,
            )
            self.session.commit()
        return [e for e in group if e.attempts < MAX_TAKEOVERS]

    def wake(self, path: str, t: datetime) -> None:
        # After the last step the record is claimed at step "" and ended like any other.
        following = self.plan.after.get(path) or ""
        values = {"next_at": t, "tries": 0, "state": EnrollmentState.PENDING, "step": following}
        woken = self.session.scalars(
            update(Enrollment)
            .where(
                Enrollment.launch_id == self.row.id,
                Enrollment.step == path,
                Enrollment.state == EnrollmentState.WAITING,
                Enrollment.next_at <= t,
            )
            .values(**values)
            .returning(Enrollment.id)
            .execution_options(synchronize_session=False)
        ).all()
        n = len(woken)
        if woken:
            self.session.execute(
                insert(LaunchEvent),
                [
                    {
                        "portal_id": self.portal.id,
                        "launch_id": self.row.id,
                        "enrollment_id": i,
                        "step": path,
                        "kind": "woke",
                        "reason": "",
                        "message": "",
                        "result_id": "",
                        "at": datetime.now(UTC),
                    }
                    for i in woken
                ],
            )
        deltas: Deltas = Counter({("", "waiting"): -n, (path, "waiting"): -n, (path, "done"): n})
        bump(self.session, self.row, deltas)
        self.touched = True

    # running a step

    def step(self, group: list[Enrollment]) -> None:
        self.row.updated_at = datetime.now(UTC)  # a job is on it (the sweeper looks)
        self.session.commit()  # before any request: the limiter's writes must not wait on ours
        path = group[0].step
        step = self.plan.steps.get(path)
        if step is not None:
            group = self._gate(group, path, step)
        if not group:
            pass
        elif step is None:  # the end of the scenario (or a path the version lacks)
            self._settle(
                {e.id: Settled("passed", ends=EnrollmentState.DONE) for e in group}, group, path
            )
        elif step.type in ACTING:
            self._act(group, path)
        else:
            self._control(group, path, step)
        self.session.commit()
        self.touched = True

    def _gate(self, group: list[Enrollment], path: str, step: Any) -> list[Enrollment]:
        """The goal, the send window and the caps (:mod:`.gates`): records that met the goal
        end, those that must wait are put back until their time, those over a cap with
        "skip" skip the step. Returns the records that run the step now."""
        unit = self.plan.unit(path) if step.type in ACTING else [path]
        channels = gates.channels_of([self.plan.steps[p] for p in unit])
        policies = self.defn.policies
        window = window_for(policies.window, self.ctx.channels.send_window) if channels else None
        caps = caps_for(self.ctx.channels) if channels else []
        gate = gates.Gate(policies, window, caps, channels)
        if gate.idle:
            return group
        group = self._drop_restarted(group, path)  # about to be put back: not if restarted
        records: dict[int, dict[str, Any]] = {}
        if gate.reads:
            # A record that is gone or unreadable is reported by the step itself.
            records, _problems = self._read(group, self._gate_fields(gate))
        context = (self.row.params, self.constants)
        variables = {e.id: variable_view(e.variables or {}) for e in group}
        decided = gates.decide(
            self.session, self.portal.id, gate, group, records, context, variables, now(),
            self.zone, self.ctx.channels.default_country,
        )  # fmt: skip
        results: dict[int, Settled] = {}
        for e in group:
            if e.id in decided.goal:
                results[e.id] = Settled("goal", "goal", ends=EnrollmentState.GOAL)
            elif e.id in decided.capped:
                message = _("Over the frequency cap: the step was skipped.")
                results[e.id] = Settled("skipped", "capped", message)
                e.step = self.plan.after.get(unit[-1]) or ""
        if results:
            self._settle(results, [e for e in group if e.id in results], path)
        for e in group:
            if e.id in decided.later:
                self._defer(e, *decided.later[e.id])
        # Settled before the step's requests: the limiter's own writes must not wait on ours.
        self.session.commit()
        return [e for e in group if e.id not in results and e.id not in decided.later]

    def _drop_restarted(self, group: list[Enrollment], path: str) -> list[Enrollment]:
        """Records that entered again meanwhile (``restart``) stop here instead of going on."""
        self._refresh_state(group)
        gone = [e for e in group if e.id in self._restarted]
        if gone:
            stopped = Settled("stopped", "restarted", ends=EnrollmentState.STOPPED)
            self._settle(dict.fromkeys((e.id for e in gone), stopped), gone, path)
            self.session.commit()
        return [e for e in group if e.id not in self._restarted]

    def _gate_fields(self, gate: gates.Gate) -> set[str]:
        fields = window_fields(gate.window, self.row.entity_type)
        if gate.policies.goal is not None:
            fields |= rule_fields(gate.policies.goal.rules)
        return fields

    def _read(
        self, group: list[Enrollment], fields: set[str] | None
    ) -> tuple[dict[int, dict[str, Any]], dict[int, Outcome]]:
        targets = {e.id: Target(e.entity_type, e.entity_id, str(e.id)) for e in group}
        problems = load_records(self.ctx.client, list(targets.values()), fields)
        records = {i: t.record or {} for i, t in targets.items() if t.record is not None}
        return records, {int(k): p for k, p in problems.items()}

    def _defer(self, e: Enrollment, until: datetime, why: str) -> None:
        """Back in the queue until ``until`` (no counter moves: the record is still due)."""
        e.state = EnrollmentState.PENDING
        e.next_at = until.astimezone(UTC)
        e.lease_until = None
        e.message = why
        event = self._event(e, e.step, Settled("deferred", "", why))
        event["message"] = f"{why} {until.isoformat(timespec='minutes')}"
        self.session.execute(insert(LaunchEvent), [event])

    def _act(self, group: list[Enrollment], path: str) -> None:
        unit = self.plan.unit(path)
        if self.defn.variables:  # each record's templates see its own ``var``
            self.ctx.record_globals = {
                ledger_key(self.row.id, e.id, here): {
                    "var": template_values(variable_view(e.variables or {}))
                }
                for e in group
                for here in unit
            }
        by_step: dict[str, dict[int, Outcome]] = {}
        targets = {e.id: Target(e.entity_type, e.entity_id, "") for e in group}
        for here in unit:
            by_step[here] = self._run_step(here, self.plan.steps[here], group, targets)
        results: dict[int, list[tuple[str, Settled]]] = {e.id: [] for e in group}
        lines: dict[str, tuple[Target, str]] = {}
        for here in unit:
            sms = self._sms_lines(group, here) if self.plan.steps[here].action == "send_sms" else {}
            for enrollment in group:
                outcome = by_step[here][enrollment.id]
                settled = _settled(outcome, self._result_id(outcome))
                results[enrollment.id].append((here, settled))
                if settled.kind == "sent" and self.defn.timeline and outcome.message:
                    key = ledger_key(self.row.id, enrollment.id, here)
                    what = sms.get(key, outcome.message)
                    text = _("Scenario '%(name)s': %(what)s", name=self.name, what=what)
                    lines[key] = (targets[enrollment.id], text)
        write_lines(self.ctx, lines)
        self._settle_unit(group, unit, results)

    def _sms_lines(self, group: list[Enrollment], path: str) -> dict[str, str]:
        """What the SMS step sent (number, segments, text) by ledger key, for its line."""
        keys = [ledger_key(self.row.id, e.id, path) for e in group]
        query = select(SmsMessage.key, SmsMessage.phone, SmsMessage.segments, SmsMessage.text)
        query = query.where(SmsMessage.portal_id == self.portal.id, SmsMessage.key.in_(keys))
        return {str(k): timeline_text(p, n, t) for k, p, n, t in self.session.execute(query)}

    def _run_step(
        self, path: str, step: Any, group: list[Enrollment], targets: dict[int, Target]
    ) -> dict[int, Outcome]:
        keys = {e.id: ledger_key(self.row.id, e.id, path) for e in group}
        if step.action:
            params = st.action_params(step).model_dump(mode="json")
            requests = [
                Request(keys[e.id], step.action, e.entity_type, e.entity_id, params) for e in group
            ]
            outcomes = run_requests(self.ctx, requests, at=now())
            return {e.id: outcomes[keys[e.id]] for e in group}
        records = {e.id: Target(e.entity_type, e.entity_id, keys[e.id]) for e in group}
        fields = template_fields(*(getattr(step, f) for f in step.template_fields))
        wanted = param_fields(self.ctx, None if fields is None else fields | {"ASSIGNED_BY_ID"})
        problems = load_records(self.ctx.client, list(records.values()), wanted)
        ready = [t for t in records.values() if t.key not in problems]
        for enrollment_id, t in records.items():
            targets[enrollment_id].record = t.record
        outcomes = dict(problems)
        outcomes.update(
            run_engine_step(self.ctx, step, ready, self.row.params, self.row.user_id, now())
        )
        return {e.id: outcomes[keys[e.id]] for e in group}

    def _result_id(self, outcome: Outcome) -> str:
        for name in ("activity_id", "comment_id", "task_id", "notification_id", "message_id"):
            if outcome.values.get(name):
                return str(outcome.values[name])
        return ""

    def _control(self, group: list[Enrollment], path: str, step: Any) -> None:
        results: dict[int, Settled] = {}
        if isinstance(step, st.StopStep):
            results = {
                e.id: Settled("passed", "stop_step", ends=EnrollmentState.DONE) for e in group
            }
            self._settle(results, group, path)
            return
        records, problems = self._fresh(group, step)
        for e in group:
            problem = problems.get(e.id)
            if problem is not None:
                results[e.id] = _settled(problem, "")
                continue
            record = records.get(e.id) or {}
            variables = variable_view(e.variables or {})
            if isinstance(step, st.WaitStep):
                results[e.id] = self._wait(e, step, record)
            elif isinstance(step, st.SetVariableStep):
                results[e.id] = self._set_variable(e, step, record)
            elif isinstance(step, st.ConditionStep):
                yes = st.holds(
                    step.match, step.rules, record, self.row.params, self.constants, variables
                )
                branch = "yes" if yes else "no"
                e.branches = {**e.branches, path: branch}
                e.step = (
                    self.plan.enter(path, f"{path}.{branch}", step.yes if yes else step.no) or ""
                )
                results[e.id] = Settled("branch", branch)
            elif isinstance(step, st.SplitStep):
                bucket = st.split_bucket(self.defn.key, step.id or path, e.entity_type, e.entity_id)
                index = st.split_branch(step, bucket)
                chosen = step.branches[index]
                e.branches = {**e.branches, path: chosen.name}
                e.step = (
                    self.plan.enter(path, f"{path}.branches[{index}].steps", chosen.steps) or ""
                )
                results[e.id] = Settled("branch", chosen.name)
        self._settle(results, group, path)

    def _set_variable(
        self, e: Enrollment, step: st.SetVariableStep, record: dict[str, Any]
    ) -> Settled:
        stored = e.variables or {}
        new, error = evaluate_step(step, record, self.row.params, self.constants, stored)
        if new is None:
            return Settled("skipped", EXPRESSION_ERROR, error or "", ends=EnrollmentState.SKIPPED)
        e.variables = new
        return Settled("passed", message=f"{step.name} = {new[step.name].get('value')}")

    def _fresh(
        self, group: list[Enrollment], step: Any
    ) -> tuple[dict[int, dict[str, Any]], dict[int, Outcome]]:
        """The records read now (conditions, date waits, set-variable steps that read the
        record); splits and timed waits read none."""
        if isinstance(step, st.SetVariableStep):
            fields = {r.name for r in parse(step.expression).refs if r.root == "record"}
            return self._read(group, fields) if fields else ({}, {})
        needs_read = isinstance(step, st.ConditionStep) or (
            isinstance(step, st.WaitStep) and step.mode == "field"
        )
        if not needs_read:
            return {}, {}
        return self._read(group, _rule_fields(step))

    def _wait(self, e: Enrollment, step: st.WaitStep, record: dict[str, Any]) -> Settled:
        t = now()
        until = wait_until(step, record, self.row.params, t, self.zone)
        if until is None:
            message = _("The date to wait for is empty.")
            return Settled("skipped", "no_date", message, ends=EnrollmentState.SKIPPED)
        if until <= t:
            e.step = self.plan.after.get(e.step) or ""
            return Settled("passed")
        e.state = EnrollmentState.WAITING
        e.next_at = until.astimezone(UTC)
        return Settled("waiting", message=until.isoformat(timespec="minutes"))

    # settling

    def _settle_unit(
        self,
        group: list[Enrollment],
        unit: list[str],
        results: dict[int, list[tuple[str, Settled]]],
    ) -> None:
        self._refresh_state(group)
        deltas: Deltas = Counter()
        events: list[dict[str, Any]] = []
        for e in group:
            end: Settled | None = None
            for here, settled in results[e.id]:
                self._note(e, settled)
                deltas.update(_step_deltas(here, settled))
                events.append(self._event(e, here, settled))
                if settled.ends is not None and end is None:
                    end = settled
            if end is not None:
                self._end(e, end, deltas)
            else:
                self._advance(e, self.plan.after.get(unit[-1]), deltas)
        self._write(deltas, events)

    def _settle(self, results: dict[int, Settled], group: list[Enrollment], path: str) -> None:
        """Settle a group at one step; a record that goes on has its next ``step`` set (a
        branch's first step, the step after a passed wait) or continues after ``path``."""
        self._refresh_state(group)
        deltas: Deltas = Counter()
        events: list[dict[str, Any]] = []
        for e in group:
            settled = results[e.id]
            self._note(e, settled)
            deltas.update(_step_deltas(path, settled))
            events.append(self._event(e, path, settled))
            if settled.ends is not None:
                self._end(e, settled, deltas)
            elif settled.kind == "waiting" and not (self._stopping or e.id in self._restarted):
                e.lease_until = None
                e.tries = 0
                deltas[("", "waiting")] += 1
            elif settled.kind == "waiting":
                deltas[(path, "waiting")] -= 1
                self._advance(e, None, deltas)
            else:
                self._advance(e, e.step if e.step != path else self.plan.after.get(path), deltas)
        self._write(deltas, events)

    def _refresh_state(self, group: list[Enrollment]) -> None:
        """The launch's state now (a stop may have come from another process meanwhile), and
        the records of the group that entered again meanwhile under the ``restart`` rule."""
        self.session.refresh(self.row, ["state"])
        self._stopping = self.row.state in (LaunchState.STOPPING, LaunchState.STOPPED)
        ids = [e.id for e in group]
        query = select(Enrollment.id).where(
            Enrollment.id.in_(ids), Enrollment.reason == "restarted"
        )
        self._restarted = set(self.session.scalars(query))

    def _advance(self, e: Enrollment, following: str | None, deltas: Deltas) -> None:
        if self._stopping or e.id in self._restarted:
            reason = "restarted" if e.id in self._restarted else "stopped"
            self._end(e, Settled("stopped", reason, ends=EnrollmentState.STOPPED), deltas)
            return
        if not following:
            self._end(e, Settled("passed", ends=EnrollmentState.DONE), deltas)
            return
        e.step = following
        e.state = EnrollmentState.PENDING
        e.next_at = now()
        e.lease_until = None
        e.tries = 0
        e.attempts = 0  # the step was done: take-overs count per step

    def _end(self, e: Enrollment, settled: Settled, deltas: Deltas) -> None:
        """Make an enrollment final. A record that reached the end with nothing done for it
        (every acting step skipped it) ends ``skipped`` with its first skip's reason."""
        state = settled.ends or EnrollmentState.DONE
        if state is EnrollmentState.DONE and e.reason and not e.branches.get(ACTED):
            state = EnrollmentState.SKIPPED
        elif state is EnrollmentState.DONE:
            e.reason, e.message = "", ""
        else:
            e.reason, e.message = settled.reason, settled.message
        self._ended = True
        e.state = state
        e.lease_until = None
        if state is EnrollmentState.DONE:
            deltas[("", "done")] += 1
        elif state is EnrollmentState.STOPPED:
            deltas[("", "stopped")] += 1
        elif state is EnrollmentState.GOAL:
            deltas[("", "goal")] += 1
        else:
            deltas[("", f"{state.value}:{e.reason}")] += 1

    def _note(self, e: Enrollment, settled: Settled) -> None:
        """Remember that something was done for the record, or its first skip."""
        if settled.kind == "sent" and not e.branches.get(ACTED):
            e.branches = {**e.branches, ACTED: True}
        elif settled.kind == "skipped" and not e.reason:
            e.reason, e.message = settled.reason, settled.message

    def _event(self, e: Enrollment, path: str, settled: Settled) -> dict[str, Any]:
        return {
            "portal_id": self.portal.id,
            "launch_id": self.row.id,
            "enrollment_id": e.id,
            "step": path,
            "kind": settled.kind,
            "reason": settled.reason,
            "message": settled.message[:2000],
            "result_id": settled.result_id[:128],
            "at": datetime.now(UTC),
        }

    def _write(self, deltas: Deltas, events: list[dict[str, Any]]) -> None:
        bump(self.session, self.row, deltas)
        if events:
            self.session.execute(insert(LaunchEvent), events)
        if self._ended:
            self.session.flush()
            _ended(self.session, self.row.id)
            self._ended = False

    # failures

    def back_off(self, group: list[Enrollment], why: str) -> float:
        """A transient failure: the group waits ``2**tries`` seconds (capped); after
        ``MAX_TRIES`` its records end failed. Returns the delay."""
        self.session.rollback()
        group = self._drop_restarted(group, group[0].step)
        if not group:
            return 0.0
        tries = max(e.tries for e in group) + 1
        if tries >= MAX_TRIES:
            self.fail_group(group, "transient", why)
            return 0.0
        delay = backoff(tries)
        for e in group:
            e.tries = tries
            e.state = EnrollmentState.PENDING
            e.lease_until = None
            e.next_at = now() + timedelta(seconds=delay)
            e.message = why[:500]
        self.session.commit()
        return delay

    def fail_group(self, group: list[Enrollment], reason: str, why: str) -> None:
        self.session.rollback()
        message = _("The step kept failing: %(error)s", error=why[:300])
        settled = Settled("failed", reason, message, ends=EnrollmentState.FAILED)
        self._settle(dict.fromkeys((e.id for e in group), settled), group, group[0].step)
        self.session.commit()

    # the end of the launch

    def finish_if_done(self) -> None:
        """A launch with no active enrollment left (and its target read) is done or stopped;
        the ETA is recomputed on the way."""
        if not self.touched:
            return
        self.session.refresh(self.row)
        active = recompute_eta(self.session, self.portal, self.row, self.plan)
        if active or self.row.state is LaunchState.EXPANDING:
            return
        if self.row.state in (LaunchState.RUNNING, LaunchState.STOPPING):
            stopping = self.row.state is LaunchState.STOPPING
            self.row.state = LaunchState.STOPPED if stopping else LaunchState.DONE
            self.row.finished_at = datetime.now(UTC)


def recompute_eta(session: Session, portal: Portal, row: Launch, plan: Plan) -> int:
    """The REST work left (preview's ``estimate``) for the active enrollments, each counted
    once per acting step (an upper bound: branches and skips send less). Returns how many
    enrollments are active."""
    active = int(
        session.scalar(
            select(func.count()).where(Enrollment.launch_id == row.id, Enrollment.state.in_(ACTIVE))
        )
        or 0
    )
    commands = {p: active for p, s in plan.steps.items() if s.type in STEP_COMMANDS}
    eta = estimate(active, commands, budget_for(session, portal))
    eta.update(active=active, at=datetime.now(UTC).isoformat(timespec="seconds"))
    row.eta = eta
    return active


def _ended(session: Session, launch_id: int) -> None:
    """Robot calls waiting for records of the launch that ended get their answers (same
    transaction as the end)."""
    from marketapp.scenarios.robot import enrollments_ended

    enrollments_ended(session, [launch_id])


def _settled(outcome: Outcome, result_id: str) -> Settled:
    if outcome.status == "sent":
        return Settled("sent", message=outcome.message, result_id=result_id)
    if outcome.status == "skipped":
        ends = EnrollmentState.SKIPPED if outcome.reason in RECORD_REASONS else None
        return Settled("skipped", outcome.reason, outcome.message, ends=ends)
    return Settled("failed", outcome.reason, outcome.message, ends=EnrollmentState.FAILED)


def _step_deltas(path: str, settled: Settled) -> Deltas:
    if not path:  # the end of the scenario is no step ("" counts the launch as a whole)
        return Counter()
    deltas: Deltas = Counter({(path, "entered"): 1})
    if settled.kind in ("sent", "passed", "branch"):
        deltas[(path, "done")] += 1
    elif settled.kind == "waiting":
        deltas[(path, "waiting")] += 1
    elif settled.kind == "goal":
        deltas[(path, "goal")] += 1
    elif settled.kind in ("skipped", "failed", "stopped"):
        deltas[(path, f"{settled.kind}:{settled.reason}")] += 1
    return deltas


def _rule_fields(step: Any) -> set[str]:
    if isinstance(step, st.WaitStep):
        return {step.field} if step.field else set()
    return rule_fields(step.rules)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
