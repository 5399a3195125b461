"""Is a robot call from a real workflow of its portal? Bitrix24 is asked before anything runs.

Any employee can read the application token (it travels through their browser), so the handler's
token check only names the portal. Before a call can cause a side effect, the worker confirms it:

- locally: the call is subscribed (every robot of our manifest is registered with
  ``USE_SUBSCRIPTION=Y``, and Bitrix24 keeps an app-set value out of the template's reach, so a
  genuine call always says ``Y``), and the first ``|`` part of ``event_token`` (Bitrix24 signs
  ``<workflow id>|<activity name>|<event id>``) is the call's ``workflow_id``;
- with the portal's stored (admin) token, two commands per call in batches of 50:
  ``bizproc.workflow.instances`` filtered by ``ID`` must list the workflow running on the call's
  document, and ``bizproc.activity.log`` with the call's ``event_token`` must be accepted: the
  token is signed with a secret of the portal, and Bitrix24 answers ``ACCESS_DENIED`` to any
  token it did not sign (any user may call the method, so that is the only reason). It adds one
  line to the workflow log of a genuine call.

A call that fails is marked rejected, logged on the security logger (never with a token) and
not answered. A transient error means "ask again later"; the answer "the stored user may not
list workflows" parks the portal's calls (:class:`CannotConfirm`) until an admin's token is stored.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _

from marketapp.actions.base import ActionContext, RetryLater
from marketapp.bitrix.errors import AccessDenied, BitrixError, MethodNotFound, PortalUnavailable
from marketapp.models import RobotCall, RobotCallState
from marketapp.security import security_log

# The document classes of the entity types our robots run on (``document_id[1]``).
DOCUMENT_CLASSES = {
    "LEAD": "CCrmDocumentLead",
    "DEAL": "CCrmDocumentDeal",
    "CONTACT": "CCrmDocumentContact",
    "COMPANY": "CCrmDocumentCompany",
}


class CannotConfirm(PortalUnavailable):
    """The stored token may not call ``bizproc.workflow.instances`` (not an admin, or the plan
    lacks business processes): the calls wait, they are not rejected."""


def confirmed(ctx: ActionContext, calls: list[RobotCall]) -> list[RobotCall]:
    """The calls shown to come from a workflow of the portal; the others are marked rejected.

    A call that already has an outcome was confirmed before (only its answer is missing).
    """
    pending = [c for c in calls if not c.status]
    reasons = {c.id: _local_problem(c) for c in pending}
    remote = [c for c in pending if reasons[c.id] is None]
    retry = _ask_portal(ctx, remote, reasons) if remote else False
    rejected = [c for c in pending if reasons[c.id]]
    for call in rejected:
        _reject(ctx, call, str(reasons[call.id]))
    ctx.session.commit()
    if retry:
        raise RetryLater("robot call confirmation will be retried")
    return [c for c in calls if c not in rejected]


def _local_problem(call: RobotCall) -> str | None:
    if not call.use_subscription:
        return "not_subscribed"
    if call.event_token.split("|", 1)[0] != call.workflow_id:
        return "event_token_mismatch"
    return None


def _ask_portal(ctx: ActionContext, calls: list[RobotCall], reasons: dict[int, str | None]) -> bool:
    """Fill ``reasons`` from Bitrix24's answers; True when some call must be asked again."""
    commands: dict[str, tuple[str, dict[str, Any]]] = {}
    message = _("The application received the request and is checking it.")
    for call in calls:
        commands[f"wf{call.id}"] = (
            "bizproc.workflow.instances",
            {
                "select": ["ID", "MODULE_ID", "ENTITY", "DOCUMENT_ID"],
                # No operator: Bitrix24 ignores filter keys with one it does not allow ("=").
                "filter": {"ID": call.workflow_id},
            },
        )
        commands[f"log{call.id}"] = (
            "bizproc.activity.log",
            {"EVENT_TOKEN": call.event_token, "LOG_MESSAGE": message},
        )
    result = ctx.client.batch(commands)
    retry = False
    for call in calls:
        try:
            reasons[call.id] = _instance_problem(call, result.errors.get(f"wf{call.id}"), result)
            reasons[call.id] = reasons[call.id] or _token_problem(
                result.errors.get(f"log{call.id}")
            )
        except RetryLater:
            retry = True
    return retry


def _instance_problem(call: RobotCall, error: BitrixError | None, result: Any) -> str | None:
    if isinstance(error, AccessDenied | MethodNotFound):
        raise CannotConfirm(error.code, f"bizproc.workflow.instances refused: {error}")
    if error is not None:
        raise RetryLater(str(error))  # not a verdict on the call
    rows = result.results.get(f"wf{call.id}") or []
    row = next((r for r in rows if isinstance(r, dict) and r.get("ID") == call.workflow_id), None)
    if row is None:
        return "workflow_not_running"
    expected = DOCUMENT_CLASSES.get(call.entity_type)
    if str(row.get("DOCUMENT_ID")) != call.document_id or (
        expected is not None and (row.get("MODULE_ID"), row.get("ENTITY")) != ("crm", expected)
    ):
        return "document_mismatch"
    return None


def _token_problem(error: BitrixError | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, AccessDenied):
        return "event_token_forged"
    if "not found" in error.description.lower():
        return "workflow_not_running"  # it finished between the two commands
    raise RetryLater(str(error))  # 423 "being executed", 5xx: ask again


def _reject(ctx: ActionContext, call: RobotCall, reason: str) -> None:
    security_log.warning(
        "rejected robot call",
        extra={
            "reason": reason,
            "portal_id": call.portal_id,
            "member_id": ctx.portal.member_id,
            "call_id": call.id,
            "code": call.code,
            "workflow_id": call.workflow_id,
            "document_id": call.document_id,
        },
    )
    call.state = RobotCallState.REJECTED
    call.lease_until = None
    call.log_message = f"rejected: {reason}"
