"""One runner for actions, shared by robots and scenario steps.

:func:`run_requests` takes requests (an action code, its raw parameters, a record) and answers
each with an :class:`Outcome`: unknown codes and unsupported records are refused, records are
read in few requests, requests with the same parameters run as one group, parameters are
validated once per group, and an action that crashes fails its group alone (reporting from the
ledger what was done). :func:`preview` is the first half of a run: what would happen, with no
side effect; :func:`run` is preview then deliver.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask_babel import gettext as _
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from marketapp.actions import ACTIONS
from marketapp.actions.base import (
    ENTITY_METHODS,
    Action,
    ActionContext,
    Draft,
    Outcome,
    RetryLater,
    Target,
    failed,
    load_records,
    param_fields,
    refused_template,
    sent,
    skipped,
)
from marketapp.actions.templating import TemplateProblem
from marketapp.bitrix.errors import BitrixError
from marketapp.caps import record_touches, sent_messages
from marketapp.models import Send, SendState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One action to run on one record; ``key`` names its side effect in the ledger."""

    key: str
    code: str
    entity_type: str
    entity_id: int
    params: dict[str, Any]


def run_requests(
    ctx: ActionContext, requests: list[Request], *, at: datetime | None = None
) -> dict[str, Outcome]:
    """Run every request; each gets an outcome. ``RetryLater``/``BitrixError`` propagate.

    Each e-mail and SMS that went out is recorded as a touch for frequency caps, at ``at``
    (default: now), in the caller's transaction (the caller commits with its answers).
    """
    outcomes: dict[str, Outcome] = {}
    groups: dict[tuple[str, str], list[Request]] = defaultdict(list)
    for request in requests:
        refusal = _refusal(request)
        if refusal is not None:
            outcomes[request.key] = refusal
        else:
            groups[(request.code, json.dumps(request.params, sort_keys=True))].append(request)
    checked = {group: _validated(ACTIONS[group[0]], rs[0].params) for group, rs in groups.items()}
    targets = {
        r.key: Target(r.entity_type, r.entity_id, r.key) for reqs in groups.values() for r in reqs
    }
    fields = _fields_of(ctx, [(ACTIONS[code], p) for (code, _p), p in checked.items()])
    outcomes.update(load_records(ctx.client, list(targets.values()), fields))
    for group, reqs in groups.items():
        todo = [targets[r.key] for r in reqs if r.key not in outcomes]
        params = checked[group]
        if not todo:
            continue
        if isinstance(params, Outcome):
            outcomes.update(dict.fromkeys((t.key for t in todo), params))
        else:
            outcomes.update(_run_guarded(ctx, ACTIONS[group[0]], params, todo))
    codes = {r.key: (r.code, r.entity_type, r.entity_id) for r in requests}
    touched = sent_messages(codes, outcomes)
    record_touches(ctx.session, ctx.portal.id, touched, at or datetime.now(UTC))
    return outcomes


def preview(
    ctx: ActionContext, action: Action, params: BaseModel, targets: list[Target]
) -> dict[str, Draft | Outcome]:
    """What ``action`` would do for each target; records not loaded yet are read first."""
    results: dict[str, Draft | Outcome] = {}
    unread = [t for t in targets if t.record is None]
    results.update(load_records(ctx.client, unread, param_fields(ctx, action.fields(ctx, params))))
    ready = [t for t in targets if t.key not in results]
    if ready:
        results.update(action.preview(ctx, params, ready))
    return results


def run(
    ctx: ActionContext, action: Action, params: BaseModel, targets: list[Target]
) -> dict[str, Outcome]:
    """Preview every target (so every record renders before any side effect), then deliver."""
    outcomes: dict[str, Outcome] = {}
    drafts: list[Draft] = []
    for key, result in preview(ctx, action, params, targets).items():
        if isinstance(result, Outcome):
            outcomes[key] = result
        else:
            drafts.append(result)
    if drafts:
        outcomes.update(action.deliver(ctx, params, drafts))
    return outcomes


def _refusal(request: Request) -> Outcome | None:
    if request.code not in ACTIONS:
        return failed("unknown_robot", _("Unknown robot %(code)s.", code=request.code))
    if request.entity_type not in ENTITY_METHODS:
        return skipped(
            "unsupported_document",
            _("This robot works on contacts, companies, deals and leads only."),
        )
    return None


def _validated(action: Action, raw: dict[str, Any]) -> BaseModel | Outcome:
    try:
        return action.Params.model_validate(raw)
    except ValidationError as exc:
        return _invalid(exc)
    except Exception:  # a validator's bug: this group fails, the others run
        log.exception("robot settings check crashed", extra={"code": action.code})
        problem = _("Robot settings could not be checked; it has been logged.")
        return failed("invalid_settings", problem)


def _fields_of(
    ctx: ActionContext, groups: list[tuple[Action, BaseModel | Outcome]]
) -> set[str] | None:
    """The fields every valid group reads together (``None``: some group needs them all)."""
    fields: set[str] = set()
    for action, params in groups:
        if isinstance(params, Outcome):
            continue
        used = param_fields(ctx, action.fields(ctx, params))
        if used is None:
            return None
        fields |= used
    return fields


def _run_guarded(
    ctx: ActionContext, action: Action, params: BaseModel, targets: list[Target]
) -> dict[str, Outcome]:
    try:
        return run(ctx, action, params, targets)
    except (RetryLater, BitrixError):
        raise
    except Exception:
        # A bug must not leave the caller waiting forever: answer what happened.
        log.exception("robot action crashed", extra={"code": action.code})
        return _after_crash(ctx, [t.key for t in targets])


def _invalid(exc: ValidationError) -> Outcome:
    """A template refused by the sandbox is a ``template_error`` skip; others invalid settings."""
    for error in exc.errors():
        problem = (error.get("ctx") or {}).get("error")
        if isinstance(problem, TemplateProblem):
            return refused_template(problem)
    return failed(
        "invalid_settings", _("Robot settings are invalid: %(problems)s", problems=_problems(exc))
    )


def _after_crash(ctx: ActionContext, keys: list[str]) -> dict[str, Outcome]:
    """After an action crashed, report from the ledger: what was done is ``sent``."""
    ctx.session.rollback()
    done = set(
        ctx.session.scalars(
            select(Send.key).where(
                Send.portal_id == ctx.portal.id, Send.key.in_(keys), Send.state == SendState.SENT
            )
        )
    )
    problem = failed("internal_error", _("Internal error in the application; it has been logged."))
    return {
        key: sent(_("Done; the application failed afterwards and it has been logged."))
        if key in done
        else problem
        for key in keys
    }


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
