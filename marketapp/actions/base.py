"""What every action shares: targets, outcomes, the run context, batched record loading.

An action runs on many records at once: it loads them in batches, decides per record (skip,
render), claims each side effect in the ledger and sends the REST commands in batches of 50.
Robots run it on one record per call (grouped when calls arrive together); the scenario engine
runs it on a launch's records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import requests
from flask_babel import gettext as _
from pydantic import BaseModel
from sqlalchemy.orm import Session

from marketapp.actions.templating import TemplateProblem, TextTooLong
from marketapp.bitrix.errors import BitrixError, NotFound
from marketapp.models import ChannelSettings, Portal

log = logging.getLogger(__name__)
T = TypeVar("T")

ENTITY_TYPE_IDS = {"LEAD": 1, "DEAL": 2, "CONTACT": 3, "COMPANY": 4}
ENTITY_METHODS = {
    "LEAD": "crm.lead",
    "DEAL": "crm.deal",
    "CONTACT": "crm.contact",
    "COMPANY": "crm.company",
}


class BatchClient(Protocol):
    def batch(self, commands: dict[str, tuple[str, dict[str, Any]]], halt: bool = False) -> Any: ...


@dataclass
class Target:
    """One record an action runs on; ``key`` identifies the side effect (idempotency)."""

    entity_type: str
    entity_id: int
    key: str
    record: dict[str, Any] | None = None


@dataclass
class Outcome:
    """``status`` is ``sent`` (done), ``skipped`` (terminal, with reason) or ``failed``."""

    status: str
    reason: str = ""
    message: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def return_values(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, **self.values}


def sent(message: str, **values: Any) -> Outcome:
    return Outcome("sent", message=message, values=values)


def skipped(reason: str, message: str) -> Outcome:
    return Outcome("skipped", reason=reason, message=message)


def failed(reason: str, message: str) -> Outcome:
    return Outcome("failed", reason=reason, message=message)


class RetryLater(Exception):
    """A transient failure: nothing irreversible happened that the ledger does not know."""


def refused_template(exc: TemplateProblem) -> Outcome:
    """A template that cannot be rendered for a record: terminal, nothing was sent."""
    if isinstance(exc, TextTooLong):
        return skipped("too_long", str(exc))
    return skipped("template_error", str(exc))


def prepare_each(
    targets: list[Target], prepare: Callable[[Target], T | Outcome]
) -> tuple[list[T], dict[str, Outcome]]:
    """Decide and render every target before any side effect; one that fails fails alone.

    ``prepare`` returns what to deliver or an outcome (skip). A template problem is a skip
    with its reason; any other exception is logged (once, bounded) and fails that record only.
    """
    ready: list[T] = []
    outcomes: dict[str, Outcome] = {}
    for target in targets:
        try:
            prepared = prepare(target)
        except TemplateProblem as exc:
            prepared = refused_template(exc)
        except RetryLater:
            raise
        except Exception:
            log.exception("preparing a record failed", extra={"key": target.key})
            prepared = failed(
                "internal_error", _("Internal error in the application; it has been logged.")
            )
        if isinstance(prepared, Outcome):
            outcomes[target.key] = prepared
        else:
            ready.append(prepared)
    return ready, outcomes


@dataclass
class ActionContext:
    session: Session
    portal: Portal
    client: BatchClient
    channels: ChannelSettings
    app_code: str
    http: requests.Session
    timeout: float = 30.0


class Action(Protocol):
    code: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def run(self, ctx: ActionContext, params: Any, targets: list[Target]) -> dict[str, Outcome]: ...


def load_records(client: BatchClient, targets: list[Target]) -> dict[str, Outcome]:
    """Fill ``target.record`` (deals get their contact or company as ``_client``).

    Returns outcomes for targets that cannot run (record gone or unreadable).
    """
    problems: dict[str, Outcome] = {}
    commands = {
        t.key: (f"{ENTITY_METHODS[t.entity_type]}.get", {"id": t.entity_id}) for t in targets
    }
    result = client.batch(commands)
    for target in targets:
        error = result.errors.get(target.key)
        if error is not None:
            problems[target.key] = _unreadable(error)
        else:
            target.record = result.results.get(target.key) or {}
    _attach_deal_clients(client, [t for t in targets if t.entity_type == "DEAL" and t.record])
    return problems


def _attach_deal_clients(client: BatchClient, deals: list[Target]) -> None:
    commands: dict[str, tuple[str, dict[str, Any]]] = {}
    for deal in deals:
        assert deal.record is not None
        if int(deal.record.get("CONTACT_ID") or 0):
            commands[deal.key] = ("crm.contact.get", {"id": deal.record["CONTACT_ID"]})
        elif int(deal.record.get("COMPANY_ID") or 0):
            commands[deal.key] = ("crm.company.get", {"id": deal.record["COMPANY_ID"]})
    if not commands:
        return
    result = client.batch(commands)
    for deal in deals:
        found = result.results.get(deal.key)
        if isinstance(found, dict) and deal.record is not None:
            method = commands[deal.key][0]
            deal.record["_client"] = {**found, "_entity": method.split(".")[1].upper()}


def _unreadable(error: BitrixError) -> Outcome:
    if isinstance(error, NotFound):
        return skipped("not_found", _("The record no longer exists."))
    if error.retryable:
        raise RetryLater(str(error))
    return failed("unreadable", _("The record could not be read: %(error)s", error=str(error)))


def communication_owner(target: Target) -> tuple[str, int, dict[str, Any]]:
    """Whose phones and e-mails to use: the record itself, or a deal's contact/company."""
    record = target.record or {}
    client = record.get("_client")
    if target.entity_type == "DEAL" and isinstance(client, dict):
        return str(client["_entity"]), int(client["ID"]), client
    return target.entity_type, target.entity_id, record


def multifield(record: dict[str, Any], name: str, value_type: str, prefer: str = "") -> str:
    """The first ``PHONE``/``EMAIL`` value of ``value_type`` (``auto``: ``prefer``, then any)."""
    values = [v for v in record.get(name) or [] if isinstance(v, dict) and v.get("VALUE")]
    if value_type != "auto":
        values = [v for v in values if v.get("VALUE_TYPE") == value_type]
    elif prefer:
        values.sort(key=lambda v: v.get("VALUE_TYPE") != prefer)
    return str(values[0]["VALUE"]).strip() if values else ""


def opted_out(record: dict[str, Any], field_name: str) -> bool:
    """Whether the consent field says no (``Y``, ``1``, ``true``, or a non-empty list)."""
    if not field_name:
        return False
    value = record.get(field_name)
    if isinstance(value, list):
        return bool(value)
    return str(value or "").strip().lower() in {"y", "1", "true", "yes"}
