"""What every action shares: targets, drafts, outcomes, the run context, record loading.

An action runs on many records at once, in two halves. ``preview`` reads and decides per record:
a :class:`Draft` (what would be done: the rendered text, the recipient, the fields before and
after) or an :class:`Outcome` (a skip); it has no side effect and writes nothing. ``deliver``
claims the drafts in the ledger, performs them (REST commands in batches of 50) and settles
them. :mod:`marketapp.actions.runner` puts the halves together for robots and scenario steps.
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

from marketapp.actions import templating
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


def preview_each(targets: list[Target], draft: Callable[[Target], Any]) -> dict[str, Any]:
    """:func:`prepare_each` keyed by target: each target's draft or outcome."""
    ready, outcomes = prepare_each(targets, draft)
    results: dict[str, Any] = dict(outcomes)
    results.update((d.target.key, d) for d in ready)
    return {t.key: results[t.key] for t in targets}


def with_fields(used: set[str] | None, *names: str) -> set[str] | None:
    """``used`` plus ``names`` (blank ones dropped); ``None`` (every field) stays ``None``."""
    return None if used is None else used | {n for n in names if n}


@dataclass
class ActionContext:
    session: Session
    portal: Portal
    client: BatchClient
    channels: ChannelSettings
    app_code: str
    http: requests.Session
    timeout: float = 30.0
    # What templates see besides the record (a scenario's ``params``, ``const``, ``user``,
    # ``portal``); robots have none.
    template_globals: dict[str, Any] = field(default_factory=dict)
    # Whether an action writes its own line to the timeline (a robot's SMS, an SMTP e-mail);
    # the scenario engine writes one line per step itself, naming the scenario.
    own_lines: bool = True
    # Per record (by target key), what its templates see besides (a scenario's ``var``).
    record_globals: dict[str, dict[str, Any]] = field(default_factory=dict)


def render_context(ctx: ActionContext, target: Target) -> dict[str, Any]:
    """The template context of one record: the record's names over ``ctx.template_globals``."""
    context = templating.record_context(target.entity_type, target.record or {})
    if not ctx.template_globals:
        return context
    if target.entity_type == "DEAL":
        context.setdefault("client", {})  # a deal without a client renders client.X empty
    merged = {**ctx.template_globals, **ctx.record_globals.get(target.key, {}), **context}
    params = merged.get("params")
    if isinstance(params, dict) and any(is_template(v) for v in params.values()):
        merged["params"] = _rendered_params(params, merged)
    return merged


# A launch parameter's text ("Hello {{ contact.NAME }}") is a template rendered per record; its
# output is bounded like a parameter's longest allowed value.
PARAM_TEXT_LIMIT = 100_000


def param_fields(ctx: ActionContext, used: set[str] | None) -> set[str] | None:
    """``used`` (an action's fields) plus the record fields the launch's parameter templates
    read, so a record is read with them (``None``: every field)."""
    params = ctx.template_globals.get("params")
    sources = [v for v in params.values() if is_template(v)] if isinstance(params, dict) else []
    extra = template_fields(*sources)
    return None if used is None or extra is None else used | extra


def is_template(value: Any) -> bool:
    """Whether a parameter value holds template markup (plain text is used as it is)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value)


def _rendered_params(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each template value rendered for this record (``context``); a value
    never sees another rendered one (``params.*`` is refused in values at launch)."""
    return {
        key: templating.render(value, context, limit=PARAM_TEXT_LIMIT)
        if is_template(value)
        else value
        for key, value in params.items()
    }


class Draft(Protocol):
    """What an action would do for one record, decided and rendered but not done."""

    @property
    def target(self) -> Target: ...

    def describe(self) -> dict[str, Any]:
        """A JSON-able account for previews (recipient, rendered text, fields …)."""
        ...


class Action(Protocol):
    code: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def fields(self, ctx: ActionContext, params: Any) -> set[str] | None:
        """The CRM fields the action reads besides ``PHONE``/``EMAIL`` (``None``: all)."""
        ...

    def preview(
        self, ctx: ActionContext, params: Any, targets: list[Target]
    ) -> dict[str, Draft | Outcome]:
        """Read, render, decide for every target; no side effect, no ledger write."""
        ...

    def deliver(self, ctx: ActionContext, params: Any, drafts: list[Any]) -> dict[str, Outcome]:
        """Claim each draft in the ledger, perform it, settle it."""
        ...


def ui(
    en: str,
    ru: str,
    *,
    kind: str | None = None,
    options: dict[str, str] | None = None,
    hint: dict[str, str] | None = None,
) -> dict[str, Any]:
    """How a parameter is shown (``Field(json_schema_extra=ui(...))``): its label in English and
    Russian, the input ``kind`` (``string``, ``text``; a ``Literal`` is a ``select``), option
    titles, a hint. The robots' ``PROPERTIES`` and their settings page are built from it."""
    shown: dict[str, Any] = {"label": {"en": en, "ru": ru}}
    if kind:
        shown["kind"] = kind
    if options:
        shown["options"] = options
    if hint:
        shown["hint"] = hint
    return shown


def template_fields(*sources: str) -> set[str] | None:
    """The record fields a set of templates reads (``None``: they need every field)."""
    fields: set[str] = set()
    for source in sources:
        used = templating.template_fields(source)
        if used is None:
            return None
        fields |= used
    return fields


def load_records(
    client: BatchClient, targets: list[Target], fields: set[str] | None = None
) -> dict[str, Outcome]:
    """Fill ``target.record``; deals get their contact or company as ``_client``.

    Records are read with ``crm.<entity>.list`` filtered by ``@ID`` (up to 50 ids a command,
    50 commands a request: 2,500 records per HTTP request), selecting only ``fields`` plus
    ``PHONE``/``EMAIL`` (``None``: every field). Returns outcomes for targets that cannot run:
    a record missing from the answer is ``not_found``.
    """
    if not targets:
        return {}
    select = _select(fields)
    found, errors = _read_many(client, {(t.entity_type, t.entity_id) for t in targets}, select)
    problems: dict[str, Outcome] = {}
    for target in targets:
        ref = (target.entity_type, target.entity_id)
        if ref in errors:
            problems[target.key] = _unreadable(errors[ref])
        elif ref in found:
            target.record = dict(found[ref])
        else:
            problems[target.key] = skipped("not_found", _("The record no longer exists."))
    deals = [t for t in targets if t.entity_type == "DEAL" and t.record]
    _attach_deal_clients(client, deals, select)
    return problems


# Always read: what every channel needs (a deal's client comes through its ids).
BASE_FIELDS = ("ID", "PHONE", "EMAIL")
DEAL_CLIENT_FIELDS = ("CONTACT_ID", "COMPANY_ID")
IDS_PER_COMMAND = 50  # one list page: the answer to 50 ids is never cut short


def _select(fields: set[str] | None) -> list[str]:
    if fields is None:
        return ["*", "UF_*", *BASE_FIELDS, "IM", "WEB"]
    return sorted({*BASE_FIELDS, *fields})


Ref = tuple[str, int]


def _read_many(
    client: BatchClient, refs: set[Ref], select: list[str]
) -> tuple[dict[Ref, dict[str, Any]], dict[Ref, BitrixError]]:
    """Read records by id in list commands; errors are per id (each id of a failed command)."""
    commands: dict[str, tuple[str, dict[str, Any]]] = {}
    chunks: dict[str, tuple[str, list[int]]] = {}
    for entity_type in sorted({e for e, _id in refs}):
        ids = sorted(i for e, i in refs if e == entity_type)
        columns = [*select, *DEAL_CLIENT_FIELDS] if entity_type == "DEAL" else select
        for n in range(0, len(ids), IDS_PER_COMMAND):
            key = f"{entity_type}:{n}"
            chunk = ids[n : n + IDS_PER_COMMAND]
            chunks[key] = (entity_type, chunk)
            params = {"filter": {"@ID": chunk}, "select": columns, "start": -1}
            commands[key] = (f"{ENTITY_METHODS[entity_type]}.list", params)
    result = client.batch(commands)
    found: dict[Ref, dict[str, Any]] = {}
    errors: dict[Ref, BitrixError] = {}
    for key, (entity_type, chunk) in chunks.items():
        error = result.errors.get(key)
        if error is not None:
            errors.update(dict.fromkeys(((entity_type, i) for i in chunk), error))
            continue
        for row in result.results.get(key) or []:
            if isinstance(row, dict) and _int(row.get("ID")) in chunk:
                found[(entity_type, _int(row.get("ID")))] = row
    return found, errors


def _attach_deal_clients(client: BatchClient, deals: list[Target], select: list[str]) -> None:
    wanted: dict[str, Ref] = {}
    for deal in deals:
        record = deal.record or {}
        if _int(record.get("CONTACT_ID")):
            wanted[deal.key] = ("CONTACT", _int(record.get("CONTACT_ID")))
        elif _int(record.get("COMPANY_ID")):
            wanted[deal.key] = ("COMPANY", _int(record.get("COMPANY_ID")))
    if not wanted:
        return
    found, _errors = _read_many(client, set(wanted.values()), select)  # a client is optional
    for deal in deals:
        ref = wanted.get(deal.key)
        if ref in found and deal.record is not None:
            deal.record["_client"] = {**found[ref], "_entity": ref[0]}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


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
