"""Test mode: run a scenario version on one chosen record, at once, step by step, with a log.

As Bitrix24 automation's test mode: the admin picks a record and follows every step. The plan
is walked as the engine walks it (:class:`marketapp.scenarios.plan.Plan`: ``after``,
``enter``, units of ``with_previous`` steps), synchronously and bounded (``MAX_STEPS`` steps,
``TIME_BUDGET`` seconds):

- waits are fast-forwarded: the run's clock jumps to when the wait would end
  (:func:`marketapp.scenarios.preview.wait_until`), and each later time is logged from there;
- conditions and the exit goal are checked on the record read once at the start, as the
  steps before left it (an edit step's values are applied to it in memory); splits take the
  record's reproducible branch; a stop step ends the run;
- a send step outside the send window moves the clock to the window's next opening.

Modes:

- ``dry``: no side effect at all. The record (and the user) are only read; every acting step
  is rendered as its action previews it (the same composition as a real run) and logged as
  what it would do. Nothing is claimed in the ledger, no SMS row is written.
- ``redirect``: e-mails and SMS really go out, to the admin's test address and test number,
  through the portal's channels (SMTP, the SMS provider), under ledger keys
  ``test:<run>:<step>`` so they are never taken for real sends (they count for no cap, and
  write no timeline line). The record's unsubscribe link in a test message is replaced by an
  inert one (clicking it in a test must not unsubscribe the client). Every other acting step
  (fields, comments, tasks, notifications) is only logged. E-mail through the portal's mail
  is a CRM activity on the record: it cannot be redirected without writing to the CRM, so a
  test address is refused unless the portal sends e-mail by SMTP (without a test address the
  e-mails are shown, not sent).

Each run is a :class:`marketapp.models.TestRun` with its log; the last ``KEEP`` runs of a
scenario are kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from marketapp import consent
from marketapp.actions import ACTIONS
from marketapp.actions import runner as action_runner
from marketapp.actions.base import (
    ENTITY_METHODS,
    ActionContext,
    Outcome,
    RetryLater,
    Target,
    communication_owner,
    failed,
    load_records,
    refused_template,
)
from marketapp.actions.email import Letter
from marketapp.actions.portal import portal_context
from marketapp.actions.sms import Sms
from marketapp.actions.templating import TemplateProblem
from marketapp.bitrix.errors import BitrixError
from marketapp.channel_settings import channel_settings
from marketapp.channels.phones import InvalidPhone, normalize_phone
from marketapp.config import get_config
from marketapp.models import ChannelSettings, Portal, ScenarioVersion, TestRun
from marketapp.scenarios import gates
from marketapp.scenarios import scenario_variables as sv
from marketapp.scenarios import steps as st
from marketapp.scenarios.constants import constant_values
from marketapp.scenarios.context import portal_info, template_context
from marketapp.scenarios.definition import ScenarioDefinition, launch_values
from marketapp.scenarios.engine import RECORD_REASONS
from marketapp.scenarios.engine_steps import _command as engine_command
from marketapp.scenarios.plan import ACTING, Plan
from marketapp.scenarios.preview import _zone, wait_until
from marketapp.scenarios.windows import next_opening, recipient_zone, window_for

log = logging.getLogger(__name__)
MODES = ("dry", "redirect")
MAX_STEPS = 500  # steps visited in one run (a plan has no loops: a guard, not a limit in use)
TIME_BUDGET = 60.0  # seconds of work per run (an SMTP server that hangs, a slow portal)
KEEP = 50  # test runs kept per scenario
DETAIL_MAX = 20_000  # characters of one rendered text kept in the log
KEY_PREFIX = "test:"
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


class TestModeError(ValueError):
    """The test cannot run: a wrong mode or entity, an unreadable record, a bad test address."""

    __test__ = False  # not a pytest test class


def now() -> datetime:
    """When a test run starts (tests replace it)."""
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True)
class Redirect:
    """Where a redirected test sends: ``""`` for a channel that is not redirected."""

    email: str = ""
    phone: str = ""


def run_test(
    session: Session,
    portal: Portal,
    version: ScenarioVersion,
    entity_type: str,
    entity_id: int,
    *,
    mode: str = "dry",
    user_id: int | None = None,
    test_email: str = "",
    test_phone: str = "",
    params: Mapping[str, Any] | None = None,
) -> TestRun:
    """Run ``version`` on one record now and return the stored run (committed) with its log.

    Raises :class:`TestModeError` (nothing stored) for a bad mode, entity or test address, or a
    record that cannot be read; ``DefinitionError`` for launch values the parameters refuse.
    Messages are in the portal's language.
    """
    with force_locale(portal.language):
        defn = ScenarioDefinition.model_validate(version.definition)
        entity_type = _checked_entity(defn, entity_type, entity_id)
        if mode not in MODES:
            raise TestModeError(_("Unknown test mode %(mode)s.", mode=mode))
        values = launch_values(defn, dict(params or {}), language=portal.language)
        channels = channel_settings(session, portal)
        redirect = Redirect()
        if mode == "redirect":
            redirect = _redirect(defn, channels, test_email, test_phone)
        tester = _Tester.prepare(session, portal, defn, entity_type, entity_id, user_id)
        row = _new_run(session, portal, version, entity_type, entity_id, mode, user_id)
        tester.run(row, values, redirect)
        session.commit()
        return row


def list_test_runs(
    session: Session, portal: Portal, scenario_id: int, limit: int = KEEP
) -> list[TestRun]:
    """The scenario's test runs, newest first."""
    query = (
        select(TestRun)
        .where(TestRun.portal_id == portal.id, TestRun.scenario_id == scenario_id)
        .order_by(TestRun.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def get_test_run(session: Session, portal: Portal, run_id: int) -> TestRun | None:
    """One test run of the portal (``None`` for another portal's)."""
    return session.scalar(
        select(TestRun).where(TestRun.portal_id == portal.id, TestRun.id == run_id)
    )


# -- checks -----------------------------------------------------------------------------------


def _checked_entity(defn: ScenarioDefinition, entity_type: str, entity_id: int) -> str:
    entity = str(entity_type or "").strip().upper()
    if entity not in ENTITY_METHODS or entity not in defn.entity_types:
        raise TestModeError(
            _(
                "This scenario works on %(types)s, not %(entity)s.",
                types=", ".join(defn.entity_types),
                entity=entity or "-",
            )
        )
    if isinstance(entity_id, bool) or not isinstance(entity_id, int) or entity_id < 1:
        raise TestModeError(_("Choose the record to test on by its number."))
    return entity


def _redirect(
    defn: ScenarioDefinition, channels: ChannelSettings, email: str, phone: str
) -> Redirect:
    email, phone = (email or "").strip(), (phone or "").strip()
    if not email and not phone:
        raise TestModeError(_("A redirected test needs a test e-mail address or a test number."))
    if email and (len(email) > 254 or not _EMAIL.match(email)):
        raise TestModeError(_("The test address %(address)s is invalid.", address=email[:254]))
    has_email = any(s.type == "send_email" for _p, s in st.walk(defn.steps))
    if email and has_email and channels.email_channel != "smtp":
        raise TestModeError(
            _(
                "E-mail goes through the portal's mail, which writes an activity to the record: "
                "a test cannot redirect it. Set up SMTP in the settings, or leave the test "
                "address empty (the e-mails are then shown, not sent)."
            )
        )
    normalized = ""
    if phone:
        try:
            normalized = normalize_phone(phone[:64], channels.default_country)
        except InvalidPhone:
            raise TestModeError(
                _("The test number %(phone)s is not a valid phone number.", phone=phone[:64])
            ) from None
    return Redirect(email, normalized)


def _new_run(
    session: Session,
    portal: Portal,
    version: ScenarioVersion,
    entity_type: str,
    entity_id: int,
    mode: str,
    user_id: int | None,
) -> TestRun:
    """The run's row (its id names the ledger keys), the scenario's oldest runs beyond ``KEEP``
    deleted."""
    row = TestRun(
        portal_id=portal.id,
        scenario_id=version.scenario_id,
        version_id=version.id,
        entity_type=entity_type,
        entity_id=entity_id,
        mode=mode,
        user_id=user_id,
        log=[],
        outcome="running",
    )
    session.add(row)
    session.flush()
    mine = (TestRun.portal_id == portal.id) & (TestRun.scenario_id == version.scenario_id)
    kept = select(TestRun.id).where(mine).order_by(TestRun.id.desc()).limit(KEEP)
    session.execute(
        delete(TestRun)
        .where(mine, TestRun.id.not_in(kept))
        .execution_options(synchronize_session=False)
    )
    return row


# -- the run ----------------------------------------------------------------------------------


class _Tester:
    """One test run: the record in memory, the run's clock, the log."""

    def __init__(
        self,
        ctx: ActionContext,
        defn: ScenarioDefinition,
        target: Target,
        user: dict[str, Any],
        user_id: int | None,
    ) -> None:
        self.ctx = ctx
        self.defn = defn
        self.plan = Plan.of(defn)
        self.entity_type = target.entity_type
        self.entity_id = target.entity_id
        self.record: dict[str, Any] = target.record or {}
        self.user = user
        self.user_id = user_id
        info = portal_info(ctx.session, ctx.portal)
        self.info = info
        self.zone = _zone(str(info.get("timezone") or ""))
        self.constants = constant_values(ctx.session, ctx.portal)
        self.at = now()
        self.entries: list[dict[str, Any]] = []
        self.acted = False
        self.first_skip = ""
        self.redirect = Redirect()
        self.params: dict[str, Any] = {}
        self.variables: dict[str, Any] = {}
        self.run_id = 0

    @classmethod
    def prepare(
        cls,
        session: Session,
        portal: Portal,
        defn: ScenarioDefinition,
        entity_type: str,
        entity_id: int,
        user_id: int | None,
    ) -> _Tester:
        """Read the record (every field, once) and the user; :class:`TestModeError` if the
        record cannot be read."""
        ctx = portal_context(session, portal, own_lines=False)  # a test writes no timeline
        target = Target(entity_type, entity_id, f"{entity_type}_{entity_id}")
        try:
            problems = load_records(ctx.client, [target], None)
        except (RetryLater, BitrixError) as exc:
            raise TestModeError(
                _("The record could not be read: %(error)s", error=str(exc)[:300])
            ) from None
        problem = problems.get(target.key)
        if problem is not None and problem.reason == "not_found":
            raise TestModeError(
                _(
                    "There is no %(entity)s %(id)s on the portal, or the application cannot "
                    "read it.",
                    entity=entity_type,
                    id=entity_id,
                )
            )
        if problem is not None:
            raise TestModeError(problem.message)
        return cls(ctx, defn, target, _user(ctx.client, user_id), user_id)

    def run(self, row: TestRun, params: Mapping[str, Any], redirect: Redirect) -> None:
        """Walk the plan; the row gets the log and the outcome (not committed)."""
        self.run_id = row.id
        self.redirect = redirect
        # As the engine keeps them: JSON values (dates as ISO text).
        self.params = json.loads(json.dumps(dict(params), default=str))
        self._set_variables(sv.initial_variables(self.defn))
        try:
            outcome = self._walk()
        except Exception:  # a bug fails this test run alone, and says so
            log.exception("test run crashed", extra={"test_run": row.id})
            self._log("", "", "failed", _("Internal error in the application; it has been logged."))
            outcome = "failed"
        self._log("", "", "end", _outcome_text(outcome))
        row.log = self.entries
        row.outcome = outcome

    def _walk(self) -> str:
        path = self.plan.first()
        began = time.monotonic()
        visited = 0
        while path is not None:
            step = self.plan.steps.get(path)
            if step is None:
                break  # the end of the scenario
            if visited >= MAX_STEPS:
                self._log(path, step.type, "limit", _limit_text())
                return "limit"
            if time.monotonic() - began > TIME_BUDGET:
                message = _("The test took too long and was stopped here.")
                self._log(path, step.type, "timeout", message)
                return "timeout"
            if self._goal_met(path, step):
                return "goal"
            path, ended, count = self._step(path, step)
            visited += count
            if ended:
                return ended
        return "skipped" if self.first_skip and not self.acted else "done"

    def _step(self, path: str, step: Any) -> tuple[str | None, str, int]:
        """Run one step (or a unit of acting steps): the next path, the outcome that ends the
        run (``""``: it goes on), how many steps were visited."""
        if step.type in ACTING:
            unit = self.plan.unit(path)
            if gates.channels_of([self.plan.steps[p] for p in unit]):
                self._window(path, step)  # once for the steps that run together, as the engine
            ends = [self._act(here, self.plan.steps[here]) for here in unit]
            ended = next((e for e in ends if e), "")  # the unit runs fully, the first end counts
            return self.plan.after.get(unit[-1]), ended, len(unit)
        if isinstance(step, st.StopStep):
            self._log(path, step.type, "stop", _("Stop: the scenario ends here for the record."))
            return None, "", 1
        if isinstance(step, st.WaitStep):
            return self._wait(path, step)
        if isinstance(step, st.ConditionStep):
            yes = st.holds(
                step.match, step.rules, self.record, self.params, self.constants, self.var_view
            )
            branch = "yes" if yes else "no"
            text = (
                _("Condition holds: the yes branch.")
                if yes
                else _("Condition does not hold: the no branch.")
            )
            self._log(path, step.type, "branch", text, {"branch": branch})
            following = self.plan.enter(path, f"{path}.{branch}", step.yes if yes else step.no)
            return following, "", 1
        if isinstance(step, st.SplitStep):
            return self._split(path, step)
        if isinstance(step, st.SetVariableStep):
            return self._set_variable(path, step)
        self._log(path, step.type, "skipped", _("This step is not supported in test mode."))
        return self.plan.after.get(path), "", 1

    # control steps

    def _wait(self, path: str, step: st.WaitStep) -> tuple[str | None, str, int]:
        until = wait_until(step, self.record, self.params, self.at, self.zone)
        if until is None:
            self._skip(path, step.type, "no_date", _("The date to wait for is empty."))
            return None, "skipped", 1
        if until <= self.at:
            self._log(path, step.type, "passed", _("The moment has passed: the scenario goes on."))
        else:
            self.at = until.astimezone(UTC)
            text = _("Would wait until %(until)s; fast-forwarded.", until=_shown_time(until))
            self._log(path, step.type, "waited", text, {"until": until.isoformat()})
        return self.plan.after.get(path), "", 1

    def _split(self, path: str, step: st.SplitStep) -> tuple[str | None, str, int]:
        bucket = st.split_bucket(self.defn.key, step.id or path, self.entity_type, self.entity_id)
        index = st.split_branch(step, bucket)
        chosen = step.branches[index]
        text = _("Split: branch %(branch)s (bucket %(bucket)s).", branch=chosen.name, bucket=bucket)
        self._log(path, step.type, "branch", text, {"branch": chosen.name, "bucket": bucket})
        following = self.plan.enter(path, f"{path}.branches[{index}].steps", chosen.steps)
        return following, "", 1

    def _set_variable(self, path: str, step: st.SetVariableStep) -> tuple[str | None, str, int]:
        new, error = sv.evaluate_step(
            step, self.record, self.params, self.constants, self.variables
        )
        if new is None:
            self._skip(path, step.type, sv.EXPRESSION_ERROR, error or "")
            return None, "skipped", 1
        self._set_variables(new)
        value = new[step.name]["value"]
        text = f"{step.name} = {_short(value)}"
        self._log(path, step.type, "variable", text, {"name": step.name, "value": value})
        return self.plan.after.get(path), "", 1

    def _set_variables(self, stored: dict[str, Any]) -> None:
        self.variables = stored
        self.var_view = sv.variable_view(stored)
        self.ctx.template_globals = {
            **template_context({}, self.params, self.constants, self.user, self.info),
            "var": self.var_view,
        }

    def _goal_met(self, path: str, step: Any) -> bool:
        goal = self.defn.policies.goal
        if goal is None:
            return False
        met = st.holds(
            goal.match, goal.rules, self.record, self.params, self.constants, self.var_view
        )
        if met:
            self._log(path, step.type, "goal", _("Goal reached: the record leaves the scenario."))
        else:
            self._log(path, step.type, "goal", _("Goal not reached yet."))
        return met

    # acting steps

    def _act(self, path: str, step: Any) -> str:
        """Render one acting step, send it when redirected, log it; the outcome that ends
        the run, or ``""``."""
        key = f"{KEY_PREFIX}{self.run_id}:{path}"
        target = Target(self.entity_type, self.entity_id, key, self.record)
        try:
            draft = self._draft(step, target)
        except TemplateProblem as exc:
            draft = refused_template(exc)
        if isinstance(draft, Outcome):
            return self._settle(path, step.type, draft)
        if isinstance(draft, Letter):
            return self._email(path, step, draft)
        if isinstance(draft, Sms):
            return self._sms(path, step, draft)
        self.acted = True
        text, detail = _would(step, draft)
        if isinstance(step, st.EditFieldsStep):
            self.record.update(detail.get("after") or {})  # later steps see the edit
        self._log(path, step.type, "would", text, detail)
        return ""

    def _draft(self, step: Any, target: Target) -> Any:
        """What the step would do for the record: the action's draft (no side effect), the
        engine's command for a task or notification, or a skip."""
        if step.action:
            action = ACTIONS[step.action]
            result = action_runner.preview(self.ctx, action, st.action_params(step), [target])
            return result[target.key]
        return engine_command(self.ctx, step, target, self.params, self.user_id, self.at)

    def _email(self, path: str, step: Any, letter: Letter) -> str:
        self.acted = True
        detail = _bounded(letter.describe())
        would = _(
            "Would send an e-mail to %(to)s: %(subject)s", to=letter.to, subject=letter.subject
        )
        # Only SMTP can be redirected (the portal's mail is a CRM activity on the record).
        if not self.redirect.email or self.ctx.channels.email_channel != "smtp":
            text = f"{would} {self._not_redirected('email')}".strip()
            self._log(path, step.type, "would", text, detail)
            return ""
        link = letter.unsubscribe
        test = dataclasses.replace(
            letter,
            to=self.redirect.email,
            subject=_inert(letter.subject, link),
            body=_inert(letter.body, link),
            unsubscribe="",
        )
        outcome = ACTIONS["send_email"].deliver(self.ctx, st.action_params(step), [test])
        result = outcome[letter.target.key]
        if result.status != "sent":
            return self._settle(path, step.type, result)
        text = _(
            "E-mail sent to the test address %(test)s instead of %(to)s: %(subject)s",
            test=self.redirect.email,
            to=letter.to,
            subject=letter.subject,
        )
        self._log(path, step.type, "sent", text, {**detail, "test_to": self.redirect.email})
        return ""

    def _sms(self, path: str, step: Any, sms: Sms) -> str:
        self.acted = True
        detail = _bounded(sms.describe())
        would = _(
            "Would send an SMS to %(phone)s (%(segments)s segments): %(text)s",
            phone=sms.phone,
            segments=detail.get("segments", 0),
            text=sms.text,
        )
        if not self.redirect.phone:
            text = f"{would} {self._not_redirected('sms')}".strip()
            self._log(path, step.type, "would", text, detail)
            return ""
        owner_type, owner_id, _owner = communication_owner(sms.target)
        link = consent.unsubscribe_url(self.ctx.portal, owner_type, owner_id, "sms")
        test = dataclasses.replace(sms, phone=self.redirect.phone, text=_inert(sms.text, link))
        try:
            outcome = ACTIONS["send_sms"].deliver(self.ctx, st.action_params(step), [test])
        except RetryLater as exc:
            problem = failed("send_error", _("The SMS was not sent: %(reason)s", reason=str(exc)))
            return self._settle(path, step.type, problem)
        result = outcome[sms.target.key]
        if result.status != "sent":
            return self._settle(path, step.type, result)
        text = _(
            "SMS sent to the test number %(test)s instead of %(phone)s: %(text)s",
            test=self.redirect.phone,
            phone=sms.phone,
            text=test.text,
        )
        self._log(path, step.type, "sent", text, {**detail, "test_to": self.redirect.phone})
        return ""

    def _not_redirected(self, channel: str) -> str:
        """Why a redirected test did not send this message ("" in a dry run)."""
        if not (self.redirect.email or self.redirect.phone):
            return ""
        if channel == "email":
            return str(_("Not sent: no test address was given."))
        return str(_("Not sent: no test number was given."))

    def _window(self, path: str, step: Any) -> None:
        """A message outside the send window waits for its next opening (the clock moves)."""
        window = window_for(self.defn.policies.window, self.ctx.channels.send_window)
        if window is None:
            return
        zone = recipient_zone(self.record, window, self.zone, self.ctx.channels.default_country)
        opening = next_opening(window, self.at, zone)
        if opening <= self.at:
            self._log(path, step.type, "window", _("Inside the send window."))
            return
        self.at = opening
        text = _(
            "Outside the send window: would wait until %(at)s.",
            at=_shown_time(opening.astimezone(zone)),
        )
        self._log(path, step.type, "window", text, {"until": opening.isoformat()})

    # the log

    def _settle(self, path: str, kind: str, outcome: Outcome) -> str:
        """A skip or failure as the engine settles it: a failure, or a skip about the record
        itself, ends the run; other skips go on."""
        if outcome.status == "sent":
            self.acted = True
            self._log(path, kind, "sent", outcome.message)
            return ""
        if outcome.status == "skipped":
            self._skip(path, kind, outcome.reason, outcome.message)
            return "skipped" if outcome.reason in RECORD_REASONS else ""
        self._log(path, kind, "failed", outcome.message, {"reason": outcome.reason})
        return "failed"

    def _skip(self, path: str, kind: str, reason: str, message: str) -> None:
        if not self.first_skip:
            self.first_skip = reason
        self._log(path, kind, "skipped", message, {"reason": reason})

    def _log(
        self,
        path: str,
        step_type: str,
        kind: str,
        message: Any,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "step": path,
            "type": step_type,
            "kind": kind,
            "message": str(message)[:DETAIL_MAX],
            "at": self.at.isoformat(timespec="seconds"),
        }
        if detail:
            entry["detail"] = json.loads(json.dumps(_bounded(detail), default=str))
        self.entries.append(entry)


# -- small things -----------------------------------------------------------------------------


def _user(client: Any, user_id: int | None) -> dict[str, Any]:
    """What ``user.*`` renders: the given admin (``user.get``), else the token's user."""
    try:
        if user_id is None:
            row = client.call("user.current").result
            return dict(row) if isinstance(row, dict) else {}
        rows = client.call("user.get", {"ID": user_id}).result
    except BitrixError:
        return {"ID": str(user_id)} if user_id is not None else {}
    found = [r for r in rows or [] if isinstance(r, dict) and str(r.get("ID")) == str(user_id)]
    return dict(found[0]) if found else {"ID": str(user_id)}


def _would(step: Any, draft: Any) -> tuple[str, dict[str, Any]]:
    """The log line and detail of an acting step that is not executed."""
    if isinstance(draft, tuple):  # the engine's command for a task or a notification
        _method, body = draft
        if isinstance(step, st.CreateTaskStep):
            fields = body["fields"]
            text = _(
                'Would create the task "%(title)s" for employee %(user)s.',
                title=fields["TITLE"],
                user=fields["RESPONSIBLE_ID"],
            )
            detail = {
                "title": fields["TITLE"],
                "description": fields["DESCRIPTION"],
                "responsible": fields["RESPONSIBLE_ID"],
                "deadline": fields.get("DEADLINE", ""),
            }
            return str(text), detail
        text = _(
            "Would notify employee %(user)s: %(message)s",
            user=body["USER_ID"],
            message=body["MESSAGE"],
        )
        return str(text), {"to": body["USER_ID"], "message": body["MESSAGE"]}
    detail = _bounded(draft.describe())
    if isinstance(step, st.EditFieldsStep):
        shown = ", ".join(f"{k} = {_short(v)}" for k, v in (detail.get("after") or {}).items())
        return str(_("Would set %(fields)s.", fields=shown)), detail
    return str(_("Would add a timeline comment: %(text)s", text=detail.get("text", ""))), detail


def _inert(text: str, link: str) -> str:
    """``text`` with the record's unsubscribe link replaced by one that changes nothing."""
    if not link:
        return text
    inert = f"{get_config().public_url.rstrip('/')}{consent.PATH}test"
    return text.replace(link, inert)


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        return value[:DETAIL_MAX]
    if isinstance(value, dict):
        return {str(k): _bounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded(v) for v in value[:100]]
    return value


def _short(value: Any, limit: int = 200) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _shown_time(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")


def _limit_text() -> str:
    return str(_("The test stopped after %(n)s steps.", n=MAX_STEPS))


def _outcome_text(outcome: str) -> str:
    texts = {
        "done": _("The test reached the end of the scenario."),
        "skipped": _("The record would be skipped: nothing would be done for it."),
        "failed": _("The test ended with a failure."),
        "goal": _("The record reached the goal and left the scenario."),
        "limit": _limit_text(),
        "timeout": _("The test took too long and was stopped here."),
    }
    return str(texts.get(outcome, outcome))
