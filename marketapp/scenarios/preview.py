"""Preview: a dry run of a scenario over its whole selection, with no side effect.

The selection is a list of record ids (a row, a card, records chosen in the CRM selection
dialog) or a CRM filter whose fields and operators are checked against ``crm.<entity>.fields``
(an unknown field is an error, never an empty result). Records are read with the LAUNCHING
USER's client (:func:`marketapp.bitrix.client.client_for_user`), so the preview shows only
what that user's CRM rights let them read: an id they cannot read is ``access_denied``, a
filter yields what they see. Reads are cheap: 2,500 records per HTTP request (50 list commands
of 50 in one batch); only read methods are called.

For every record the steps are followed as a run would follow them: conditions are evaluated
on the record (the preview takes the branch the run would take), splits use the run's
reproducible bucket, waits say until when, edits change the record the later steps see. Action
steps use the actions' own previews (the same code a run uses to decide), so the rendered
subject and text, the recipient, the fields before and after and every skip reason are the
run's. The same address twice in one launch (per step) is skipped as ``duplicate``.

Totals count each step's outcomes and reasons, SMS segments, and estimate how long the REST
work of a run takes on the portal's budget (:func:`estimate`). Large selections report
progressively: :meth:`Preview.chunks` yields a chunk per read request.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_babel import force_locale
from flask_babel import gettext as _
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from marketapp.actions import ACTIONS, templating
from marketapp.actions.base import (
    DEAL_CLIENT_FIELDS,
    ENTITY_METHODS,
    ActionContext,
    Outcome,
    Target,
    _attach_deal_clients,
    _select,
    load_records,
    param_fields,
    refused_template,
    render_context,
)
from marketapp.actions.templating import TemplateProblem
from marketapp.bitrix.client import BATCH_SIZE, PAGE_SIZE
from marketapp.bitrix.errors import AccessDenied, BitrixError
from marketapp.bitrix.limiter import Bucket
from marketapp.models import Portal, Scenario
from marketapp.models.robot_call import RobotCall, RobotCallState
from marketapp.scenarios import reentry
from marketapp.scenarios import scenario_variables as sv
from marketapp.scenarios import steps as st
from marketapp.scenarios.context import template_context, template_values
from marketapp.scenarios.definition import ScenarioDefinition, requirements
from marketapp.scenarios.policies import rule_fields
from marketapp.scenarios.windows import next_opening, recipient_zone, window_fields, window_for

RECORDS_PER_REQUEST = BATCH_SIZE * PAGE_SIZE  # 2,500: 50 list commands of 50 in one batch
# REST commands a queued robot call still costs: its share of the record read, its action, and
# the answer (bizproc.event.send); batched 50 a request like everything else.
ROBOT_COMMANDS_PER_CALL = 3
# The REST command a run spends per record on each step that would act.
STEP_COMMANDS = {
    "send_email": "crm.activity.add",  # SMTP e-mail: a timeline comment instead, also one
    "send_sms": "crm.timeline.comment.add",  # the text itself goes to the SMS gateway
    "edit_fields": "crm.<entity>.update",
    "timeline_comment": "crm.timeline.comment.add",
    "create_task": "tasks.task.add",
    "notify": "im.notify.personal.add",
}
NAME_FIELDS = {
    "CONTACT": ("NAME", "LAST_NAME"),
    "LEAD": ("NAME", "LAST_NAME", "TITLE"),
    "COMPANY": ("TITLE",),
    "DEAL": ("TITLE",),
}


# -- the selection ------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Records of one entity type: explicit ``ids``, or every record matching ``filter``."""

    entity_type: str
    ids: tuple[int, ...] = ()
    filter: Mapping[str, Any] | None = None


class SelectionError(ValueError):
    """The selection cannot be previewed (an unknown filter field, a bad operator …)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


# Legacy ``crm.<entity>.list`` filter keys: an optional operator, then the field.
_FILTER_KEY = re.compile(r"^(?P<op>!@|!=|!%|>=|<=|=%|%=|@|!|=|>|<|%)?(?P<field>[A-Za-z][\w]*)$")
_LIST_OPERATORS = {"@", "!@"}


def check_filter(entity_type: str, conditions: Any, known: Mapping[str, Any]) -> dict[str, Any]:
    """``conditions`` checked against the entity's fields (``crm.<entity>.fields``).

    Raises :class:`SelectionError` naming the first unknown field or bad operator or value.
    """
    if not isinstance(conditions, Mapping):
        raise SelectionError(_("The filter must be an object of field conditions."))
    fields = {str(name).upper() for name in known}
    checked: dict[str, Any] = {}
    for key, value in conditions.items():
        match = _FILTER_KEY.match(str(key))
        if match is None:
            raise SelectionError(_("Unknown filter condition %(key)s.", key=key), str(key))
        op, name = match.group("op") or "", match.group("field").upper()
        if name not in fields:
            raise SelectionError(
                _(
                    "Unknown field %(field)s in the filter of %(entity)s.",
                    field=name,
                    entity=entity_type,
                ),
                name,
            )
        is_list = isinstance(value, list | tuple)
        if op in _LIST_OPERATORS and not is_list:
            raise SelectionError(_("%(key)s needs a list of values.", key=key), name)
        if is_list and not all(_scalar(v) for v in value):
            raise SelectionError(_("%(key)s has a value that is not text or a number.", key=key))
        if not is_list and not _scalar(value):
            raise SelectionError(_("%(key)s has a value that is not text or a number.", key=key))
        checked[f"{op}{name}"] = list(value) if is_list else value
    return checked


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


# -- the preview ----------------------------------------------------------------------------


@dataclass
class PreviewChunk:
    """Records previewed since the last chunk; ``done`` so far, ``total`` when known."""

    records: list[dict[str, Any]]
    done: int
    total: int | None


@dataclass
class StepTally:
    type: str
    ready: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "ready": self.ready,
            "skipped": dict(sorted(self.skipped.items())),
            "failed": dict(sorted(self.failed.items())),
        }


@dataclass
class Budget:
    """A portal's REST budget: bucket burst and drain per second, and work already queued."""

    burst: int = 50
    per_second: float = 2.0
    queued_robot_calls: int = 0


@dataclass
class PreviewReport:
    records: list[dict[str, Any]]  # the first ``keep`` records in full
    totals: dict[str, Any]
    eta: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "totals": self.totals, "eta": self.eta}


class Preview:
    """One preview of ``defn`` with launch ``params`` (typed, as ``launch_values`` gives them).

    ``ctx.client`` must be the launching user's client. ``constants`` are the portal's,
    ``user`` the launching user's ``user.current`` row, ``portal_info`` what templates see of
    the portal (``context.portal_view``); ``launched_at`` is when waits start counting.
    """

    def __init__(
        self,
        ctx: ActionContext,
        defn: ScenarioDefinition,
        params: Mapping[str, Any],
        *,
        constants: Mapping[str, Any],
        user: Mapping[str, Any] | None,
        portal_info: Mapping[str, Any],
        launched_at: datetime,
        language: str = "en",
    ) -> None:
        self.language = language  # of the messages (skip reasons), the launching user's
        globals_ = template_context({}, params, constants, user, portal_info)
        self.ctx = dataclasses.replace(ctx, template_globals=globals_)
        self.defn = defn
        self.params = dict(params)
        self.constants = dict(constants)
        self.user = dict(user or {})
        self.zone = _zone(str(portal_info.get("timezone") or ""))
        self.launched_at = launched_at.astimezone(self.zone)
        # Messages wait for the scenario's send window, else the portal's default one.
        self.window = window_for(defn.policies.window, ctx.channels.send_window)
        self.steps: dict[str, StepTally] = {
            path: StepTally(step.type) for path, step in st.walk(defn.steps)
        }
        self.records = 0
        self.record_skips: Counter[str] = Counter()
        self.segments = 0
        self._seen: dict[tuple[str, str], int] = {}  # (step path, address) -> first record id
        self._action_params: dict[str, BaseModel] = {}

    # reading

    def fields(self, entity_type: str) -> set[str] | None:
        """What to read of each record: the fields the steps use (``None``: every field)."""
        need = requirements(self.defn)
        wanted = set(need.fields.get(entity_type, set())) | need.client_fields
        wanted |= {"ASSIGNED_BY_ID", *NAME_FIELDS.get(entity_type, ())}
        wanted |= window_fields(self.window, entity_type)
        if self.defn.policies.goal is not None:
            wanted |= rule_fields(self.defn.policies.goal.rules)
        for path, step in st.walk(self.defn.steps):
            if step.action:
                used = ACTIONS[step.action].fields(self.ctx, self._params_of(path, step))
                used = param_fields(self.ctx, used)
                if used is None:
                    return None
                wanted |= used
        return wanted

    def chunks(self, selection: Selection) -> Iterator[PreviewChunk]:
        """Preview the selection one read request at a time (2,500 records a chunk)."""
        if selection.entity_type not in self.defn.entity_types:
            with force_locale(self.language):
                raise SelectionError(
                    _(
                        "This scenario works on %(types)s, not %(entity)s.",
                        types=", ".join(self.defn.entity_types),
                        entity=selection.entity_type,
                    )
                )
        fields = self.fields(selection.entity_type)
        if selection.filter is not None:
            pages = self._filtered(selection, fields)
        else:
            pages = self._by_id(selection, fields)
        done = 0
        while True:
            with force_locale(self.language):
                batch_total = next(pages, None)
                if batch_total is None:
                    return
                batch, total = batch_total
                refused = self._refusals(selection.entity_type, [t for t, _p in batch])
                records = [
                    self._record(target, problem or self._refused(refused, target))
                    for target, problem in batch
                ]
            done += len(records)
            yield PreviewChunk(records, done, total)

    def _refusals(self, entity_type: str, targets: list[Target]) -> dict[int, str]:
        """The records the scenario's re-entry rule would refuse now (by its saved key)."""
        scenario_id = self.ctx.session.scalar(
            select(Scenario.id).where(
                Scenario.portal_id == self.ctx.portal.id, Scenario.key == self.defn.key
            )
        )
        if scenario_id is None:
            return {}
        ids = [t.entity_id for t in targets]
        rule = self.defn.policies.reentry
        return reentry.check(
            self.ctx.session, self.ctx.portal.id, scenario_id, entity_type, rule, ids
        )[0]

    def _by_id(
        self, selection: Selection, fields: set[str] | None
    ) -> Iterator[tuple[list[tuple[Target, Outcome | None]], int]]:
        ids = list(dict.fromkeys(int(i) for i in selection.ids))
        entity = selection.entity_type
        for start in range(0, len(ids), RECORDS_PER_REQUEST):
            chunk = ids[start : start + RECORDS_PER_REQUEST]
            targets = [Target(entity, i, f"{entity}_{i}") for i in chunk]
            problems = load_records(self.ctx.client, targets, fields)
            missing = [
                t.entity_id for t in targets if problems.get(t.key, _NONE).reason == "not_found"
            ]
            for entity_id in _hidden(self.ctx.client, entity, missing):
                problems[f"{entity}_{entity_id}"] = Outcome(
                    "skipped", "access_denied", _("You have no right to read this record.")
                )
            yield [(t, problems.get(t.key)) for t in targets], len(ids)

    def _filtered(
        self, selection: Selection, fields: set[str] | None
    ) -> Iterator[tuple[list[tuple[Target, Outcome | None]], int | None]]:
        entity = selection.entity_type
        method = f"{ENTITY_METHODS[entity]}.list"
        known = self.ctx.client.call(f"{ENTITY_METHODS[entity]}.fields").result  # type: ignore[attr-defined]
        conditions = check_filter(entity, selection.filter, known or {})
        select = _select(fields)
        if entity == "DEAL":
            select = [*select, *DEAL_CLIENT_FIELDS]
        for rows, total in list_pages(self.ctx.client, method, conditions, select):
            targets = [
                Target(entity, int(row["ID"]), f"{entity}_{row['ID']}", dict(row)) for row in rows
            ]
            if entity == "DEAL":
                _attach_deal_clients(self.ctx.client, targets, select)
            yield [(t, None) for t in targets], total

    # one record

    def _refused(self, refused: Mapping[int, str], target: Target) -> Outcome | None:
        reason = refused.get(target.entity_id)
        return Outcome("skipped", reason, reentry.message(reason)) if reason else None

    def _record(self, target: Target, problem: Outcome | None) -> dict[str, Any]:
        self.records += 1
        entry: dict[str, Any] = {"entity_type": target.entity_type, "id": target.entity_id}
        if problem is not None:
            self.record_skips[problem.reason] += 1
            entry.update(status=problem.status, reason=problem.reason, message=problem.message)
            return entry
        record = dict(target.record or {})
        entry["name"] = _title(target.entity_type, record)
        goal = self.defn.policies.goal
        if goal is not None and st.holds(
            goal.match, goal.rules, record, self.params, self.constants
        ):
            self.record_skips["goal"] += 1  # it would leave before the first step
            message = _("The record already meets the goal: it would leave at once.")
            entry.update(status="skipped", reason="goal", message=message)
            return entry
        entry["status"] = "previewed"
        out: list[dict[str, Any]] = []
        self._set_variables(sv.initial_variables(self.defn))
        self._walk(self.defn.steps, "steps", target, record, self.launched_at, out)
        entry["steps"] = out
        segments = sum(int(s.get("segments") or 0) for s in out if s.get("status") == "ready")
        entry["sms_segments"] = segments
        self.segments += segments
        return entry

    def _walk(
        self,
        steps: Sequence[Any],
        path: str,
        target: Target,
        record: dict[str, Any],
        at: datetime,
        out: list[dict[str, Any]],
    ) -> tuple[datetime, bool]:
        """Follow ``steps`` for one record; returns the time reached and whether it stopped."""
        for n, step in enumerate(steps):
            here = f"{path}[{n}]"
            entry: dict[str, Any] = {"path": here, "type": step.type, "at": _iso(at)}
            out.append(entry)
            if isinstance(step, st.StopStep):
                return at, True
            if isinstance(step, st.WaitStep):
                until = wait_until(step, record, self.params, at, self.zone)
                if until is None:
                    self._count(
                        here, entry, "skipped", "no_date", _("The date to wait for is empty.")
                    )
                    return at, True
                at = max(at, until)
                entry["until"] = _iso(at)
                continue
            if isinstance(step, st.SetVariableStep):
                if not self._set_variable(here, step, record, entry):
                    return at, True
                continue
            if isinstance(step, st.ConditionStep):
                yes = st.holds(
                    step.match, step.rules, record, self.params, self.constants, self.var_view
                )
                entry["branch"] = "yes" if yes else "no"
                at, stopped = self._walk(
                    step.yes if yes else step.no,
                    f"{here}.{entry['branch']}",
                    target,
                    record,
                    at,
                    out,
                )
            elif isinstance(step, st.SplitStep):
                bucket = st.split_bucket(
                    self.defn.key, step.id or here, target.entity_type, target.entity_id
                )
                index = st.split_branch(step, bucket)
                entry.update(branch=step.branches[index].name, bucket=bucket)
                inner = f"{here}.branches[{index}].steps"
                at, stopped = self._walk(step.branches[index].steps, inner, target, record, at, out)
            else:
                if step.run == "with_previous":
                    entry["run"] = "with_previous"
                at = self._act(here, step, target, record, at, entry)
                continue
            if stopped:
                return at, True
        return at, False

    def _act(
        self,
        path: str,
        step: Any,
        target: Target,
        record: dict[str, Any],
        at: datetime,
        entry: dict[str, Any],
    ) -> datetime:
        """Preview one acting step; returns when it acts (a message waits for the window)."""
        current = Target(target.entity_type, target.entity_id, f"{path}|{target.key}", record)
        try:
            if step.action:
                result = self._action(path, step, current)
            else:
                result = self._engine_step(step, current, at)
        except TemplateProblem as exc:
            result = refused_template(exc)
        if isinstance(result, Outcome):
            self._count(path, entry, result.status, result.reason, result.message)
            return at
        address = result.get("to") or result.get("phone")
        if address:
            key = (path, str(address).lower())
            first = self._seen.setdefault(key, target.entity_id)
            if first != target.entity_id:
                message = _(
                    "%(address)s already gets this message in this launch (record %(id)s).",
                    address=address,
                    id=first,
                )
                self._count(path, entry, "skipped", "duplicate", message)
                return at
        entry.update(status="ready", **result)
        self.steps[path].ready += 1
        if "after" in result:  # the later steps see the edited record
            record.update(result["after"])
        return self._send_at(step, record, at, entry)

    def _send_at(
        self, step: Any, record: Mapping[str, Any], at: datetime, entry: dict[str, Any]
    ) -> datetime:
        """When a message goes out: the next opening of the window (``send_at``), in the
        portal's or the recipient's zone; the steps after it start from then."""
        if self.window is None or step.type not in ("send_email", "send_sms"):
            return at
        country = self.ctx.channels.default_country
        zone = recipient_zone(record, self.window, self.zone, country)
        opens = next_opening(self.window, at, zone).astimezone(self.zone)
        entry["send_at"] = _iso(opens)
        return opens

    def _action(self, path: str, step: Any, target: Target) -> dict[str, Any] | Outcome:
        action = ACTIONS[step.action]
        result = action.preview(self.ctx, self._params_of(path, step), [target])[target.key]
        return result if isinstance(result, Outcome) else result.describe()

    def _engine_step(self, step: Any, target: Target, at: datetime) -> dict[str, Any]:
        context = render_context(self.ctx, target)
        record = target.record or {}
        if isinstance(step, st.CreateTaskStep):
            task: dict[str, Any] = {
                "title": templating.one_line(templating.render(step.title, context)),
                "description": templating.plain_text(
                    templating.render(step.description, context)
                ).strip(),
                "responsible": self._employee(step.responsible, record),
            }
            if step.deadline is not None:
                task["deadline"] = _iso(at + timedelta(minutes=step.deadline.minutes_total()))
            return task
        assert isinstance(step, st.NotifyStep)
        return {
            "notify": self._employee(step.to, record),
            "message": templating.plain_text(templating.render(step.message, context)).strip(),
        }

    def _employee(self, who: st.Employee, record: Mapping[str, Any]) -> int | None:
        if who.kind == "responsible":
            return _int(record.get("ASSIGNED_BY_ID"))
        if who.kind == "launcher":
            return _int(self.user.get("ID"))
        if who.kind == "param":
            return _int(self.params.get(who.param or ""))
        return who.id

    def _params_of(self, path: str, step: Any) -> BaseModel:
        if path not in self._action_params:
            self._action_params[path] = st.action_params(step)
        return self._action_params[path]

    def _set_variables(self, stored: dict[str, Any]) -> None:
        """The record's variables, as conditions and templates (``var.x``) read them next."""
        self.variables = stored
        self.var_view = sv.variable_view(stored)
        self.ctx.template_globals["var"] = template_values(self.var_view)

    def _set_variable(
        self, path: str, step: st.SetVariableStep, record: dict[str, Any], entry: dict[str, Any]
    ) -> bool:
        """Evaluate the step on the record; an error skips the record, as the engine does."""
        new, error = sv.evaluate_step(step, record, self.params, self.constants, self.variables)
        if new is None:
            self._count(path, entry, "skipped", sv.EXPRESSION_ERROR, error or "")
            return False
        self._set_variables(new)
        entry.update(status="ready", value=new[step.name]["value"])
        self.steps[path].ready += 1
        return True

    def _count(
        self, path: str, entry: dict[str, Any], status: str, reason: str, message: str
    ) -> None:
        entry.update(status=status, reason=reason, message=message)
        tally = self.steps[path]
        (tally.failed if status == "failed" else tally.skipped)[reason] += 1

    # totals

    def totals(self) -> dict[str, Any]:
        by_reason: Counter[str] = Counter(self.record_skips)
        for tally in self.steps.values():
            by_reason.update(tally.skipped)
            by_reason.update(tally.failed)
        return {
            "records": self.records,
            "previewed": self.records - sum(self.record_skips.values()),
            "records_skipped": dict(sorted(self.record_skips.items())),
            "steps": {path: tally.as_dict() for path, tally in self.steps.items()},
            "by_reason": dict(sorted(by_reason.items())),
            "sms_segments": self.segments,
        }

    def commands(self) -> dict[str, int]:
        """The REST commands a run would send for the steps that would act, per step."""
        return {
            path: tally.ready for path, tally in self.steps.items() if tally.type in STEP_COMMANDS
        }


def estimate(records: int, commands: Mapping[str, int], budget: Budget) -> dict[str, Any]:
    """How much REST work a run is: requests, and seconds on the portal's bucket.

    A run reads the records (2,500 a request) and sends each step's commands in batches of 50.
    The bucket lets ``capacity`` requests through at once and then ``per_second``; robot calls
    already queued go first. Waits in the scenario are not counted (they are the scenario's
    own timing, not REST work).
    """
    reads = math.ceil(records / RECORDS_PER_REQUEST)
    writes = sum(math.ceil(n / BATCH_SIZE) for n in commands.values())
    queued = math.ceil(budget.queued_robot_calls * ROBOT_COMMANDS_PER_CALL / BATCH_SIZE)
    bucket = Bucket(burst=budget.burst, per_second=budget.per_second)
    requests = reads + writes
    seconds = max(0, queued + requests - bucket.capacity) / budget.per_second
    return {
        "requests": requests,
        "read_requests": reads,
        "write_requests": writes,
        "commands": sum(commands.values()),
        "queued_robot_requests": queued,
        "seconds": round(seconds, 1),
        "burst": budget.burst,
        "per_second": budget.per_second,
    }


def queued_robot_calls(session: Session, portal: Portal) -> int:
    """Robot calls of the portal waiting for (or in) their run: they spend the budget first."""
    states = (RobotCallState.QUEUED, RobotCallState.RUNNING)
    query = select(func.count()).where(
        RobotCall.portal_id == portal.id, RobotCall.state.in_(states)
    )
    return int(session.scalar(query) or 0)


def budget_for(session: Session, portal: Portal) -> Budget:
    """The portal's bucket (50/2, Enterprise 250/5) and the robot calls queued on it."""
    return Budget(
        burst=portal.rate_burst,
        per_second=float(portal.rate_per_second),
        queued_robot_calls=queued_robot_calls(session, portal),
    )


def preview_scenario(
    preview: Preview,
    selection: Selection,
    *,
    budget: Budget | None = None,
    keep: int = 100,
    on_progress: Callable[[PreviewChunk], None] | None = None,
) -> PreviewReport:
    """Run ``preview`` over ``selection``: the first ``keep`` records in full, totals, ETA."""
    kept: list[dict[str, Any]] = []
    for chunk in preview.chunks(selection):
        kept.extend(chunk.records[: max(0, keep - len(kept))])
        if on_progress is not None:
            on_progress(chunk)
    totals = preview.totals()
    if budget is None:
        budget = budget_for(preview.ctx.session, preview.ctx.portal)
    return PreviewReport(kept, totals, estimate(totals["previewed"], preview.commands(), budget))


# -- reads --------------------------------------------------------------------------------


def list_pages(
    client: Any, method: str, conditions: Mapping[str, Any], select: list[str]
) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Every row matching ``conditions`` in ID order, 2,500 a request.

    The first page says how many rows there are; then batches of 50 list commands follow an
    ID cursor (``filter[>ID]`` = the last ID of the previous command, ``$result[p0][49][ID]``,
    ``start=-1``: no counting, no offsets), the documented fast way to read a large list. A
    short page ends the list (what follows it in the batch referred to a row it lacks).
    """
    conditions = dict(conditions)
    last = conditions.pop(">ID", None)
    params = {"select": sorted({*select, "ID"}), "order": {"ID": "ASC"}}

    def command(cursor: Any) -> dict[str, Any]:
        flt = {**conditions, ">ID": cursor} if cursor is not None else conditions
        return {**params, "filter": flt, "start": -1}

    first = client.call(method, {**command(last), "start": 0})
    rows = _rows(first.result)
    total = first.total if first.total is not None else len(rows)
    seen = len(rows)
    yield rows, total
    full = len(rows) == PAGE_SIZE
    while full and seen < total:
        last = rows[-1]["ID"]
        wanted = min(BATCH_SIZE, math.ceil((total - seen) / PAGE_SIZE))
        commands = {
            f"p{i}": (
                method,
                command(last if i == 0 else f"$result[p{i - 1}][{PAGE_SIZE - 1}][ID]"),
            )
            for i in range(wanted)
        }
        result = client.batch(commands)
        page: list[dict[str, Any]] = []
        for key in commands:
            if key in result.errors:
                raise result.errors[key]
            rows = _rows(result.results.get(key))
            page.extend(rows)
            full = len(rows) == PAGE_SIZE
            if not full:
                break
        seen += len(page)
        rows = page or rows
        yield page, max(total, seen)
        if not page:
            return


def _hidden(client: Any, entity_type: str, ids: list[int]) -> list[int]:
    """Which of the ids a list did not return exist but are hidden from the user: ``*.get``
    answers "Access denied" for them and "Not found" for records that are gone."""
    if not ids:
        return []
    method = f"{ENTITY_METHODS[entity_type]}.get"
    result = client.batch({i: (method, {"id": i}) for i in ids})
    return [i for i in ids if isinstance(result.errors.get(i), AccessDenied)]


def launching_user(client: Any) -> dict[str, Any]:
    """The launching user (``user.current`` with their own token)."""
    try:
        row = client.call("user.current").result
    except BitrixError:
        return {}
    return dict(row) if isinstance(row, dict) else {}


# -- waits --------------------------------------------------------------------------------


def wait_until(
    step: st.WaitStep,
    record: Mapping[str, Any],
    params: Mapping[str, Any],
    at: datetime,
    zone: tzinfo,
) -> datetime | None:
    """When a wait that starts at ``at`` ends (in ``zone``); ``None`` if its date is empty.

    A moment already past ends the wait at once (the caller takes the later of both).
    """
    local = at.astimezone(zone)
    if step.mode == "duration":
        return local + timedelta(minutes=step.duration_minutes())
    clock = _clock(step.time)
    if step.mode == "weekday":
        days = (st.WEEKDAYS.index(step.weekday or "mon") - local.weekday()) % 7
        moment = datetime.combine(local.date() + timedelta(days=days), clock, zone)
        return moment if moment > local else moment + timedelta(days=7)
    raw = record.get(step.field or "") if step.mode == "field" else params.get(step.param or "")
    day = _day(raw)
    if day is None:
        return None
    if step.yearly:
        day = _anniversary(day, local.date(), step.offset_days, clock, local, zone)
    return datetime.combine(day + timedelta(days=step.offset_days), clock, zone)


def _anniversary(
    day: date, today: date, offset: int, clock: time, local: datetime, zone: tzinfo
) -> date:
    """The next ``day`` of the year whose wait (``offset`` days from it, at ``clock``) is not
    past."""
    for year in (today.year - 1, today.year, today.year + 1):
        candidate = _in_year(day, year)
        if datetime.combine(candidate + timedelta(days=offset), clock, zone) >= local:
            return candidate
    return _in_year(day, today.year + 1)


def _in_year(day: date, year: int) -> date:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February in a common year
        return day.replace(year=year, day=28)


def _day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            return None


def _clock(value: str | None) -> time:
    if not value:
        return time(0, 0)
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Europe"
        return UTC


# -- small things -------------------------------------------------------------------------

_NONE = Outcome("none")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")


def _title(entity_type: str, record: Mapping[str, Any]) -> str:
    """A person's name, else the record's title, else its number."""
    name = " ".join(str(record.get(f) or "") for f in ("NAME", "LAST_NAME")).strip()
    return name or str(record.get("TITLE") or "") or f"#{record.get('ID', '')}"


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number or None


def _rows(result: Any) -> list[dict[str, Any]]:
    rows = result.get("items", []) if isinstance(result, dict) else result
    return [r for r in rows or [] if isinstance(r, dict)]


# -- a readable account -------------------------------------------------------------------

_SHOWN = ("to", "phone", "subject", "text", "body", "segments", "before", "after", "title",
          "description", "responsible", "deadline", "notify", "message", "until", "branch",
          "bucket", "run", "reason", "send_at")  # fmt: skip


def report_text(report: PreviewReport, title: str) -> str:
    """The report as plain text for a person (golden files, the bench, support)."""
    lines = [title, ""]
    for record in report.records:
        name = record.get("name") or ""
        lines.append(f"{record['entity_type']} {record['id']} {name}".rstrip())
        if record.get("status") != "previewed":
            lines.append(f"  {record['status']}: {record['reason']} ({record['message']})")
            continue
        for step in record["steps"]:
            status = step.get("status", "")
            lines.append(f"  {step['path']} {step['type']} @ {step['at']} {status}".rstrip())
            for key in _SHOWN:
                if key in step:
                    lines.append(f"      {key}: {_shown(step[key])}")
        lines.append(f"  SMS segments: {record.get('sms_segments', 0)}")
    totals = report.totals
    lines += ["", "Totals", f"  records: {totals['records']}, previewed: {totals['previewed']}"]
    for reason, count in totals["records_skipped"].items():
        lines.append(f"  record skipped, {reason}: {count}")
    for path, tally in totals["steps"].items():
        parts = [f"ready {tally['ready']}"] if tally["type"] in STEP_COMMANDS else []
        parts += [f"skipped {r} {n}" for r, n in tally["skipped"].items()]
        parts += [f"failed {r} {n}" for r, n in tally["failed"].items()]
        lines.append(f"  {path} {tally['type']}: {', '.join(parts) or '-'}")
    lines.append(f"  SMS segments: {totals['sms_segments']}")
    eta = report.eta
    lines.append(
        f"  ETA: {eta['requests']} requests ({eta['read_requests']} reads, "
        f"{eta['write_requests']} writes of {eta['commands']} commands), {eta['seconds']} s "
        f"at {eta['per_second']}/s, burst {eta['burst']}"
    )
    return "\n".join(lines) + "\n"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown(v)}" for k, v in value.items()) or "-"
    text = str(value)
    if "<" in text:  # HTML: paragraphs and line breaks as new lines, then the text
        text = re.sub(r"(?i)<br\s*/?>|</p>", "\n", text)
        text = templating.plain_text(text)
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n        ".join(lines).replace("\n        \n", "\n\n")
