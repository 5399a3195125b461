"""The JSON API of the launch pages (``/api/launch/*``): preview, launch, progress, stop, undo.

Every call carries the page session (``X-Session-Token``: the CSRF defence) and, for preview and
launch, the placement context the launcher page was rendered with (a signed token naming the
portal, the user and the entity type of the placement), so a page can only launch the active
scenarios of its own entity. Preview and launch read records with the **launching user's**
token: the page passes ``BX24.getAuth().access_token`` in ``X-User-Token`` and it is accepted
only when the portal says it is this session's user (``verify.portal_user``, cached a minute).

Launches are visible to the user who made them; a portal administrator sees all of the portal's.
Any other launch, and every id of another portal, is a 404.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import or_, select

from marketapp.actions.base import ENTITY_METHODS
from marketapp.actions.portal import portal_context
from marketapp.bitrix.client import client_for, client_for_user
from marketapp.bitrix.errors import BitrixError
from marketapp.db import db_session
from marketapp.errors import AppError
from marketapp.lifecycle import verify
from marketapp.models import Enrollment, Launch, LaunchEvent, Portal, ScenarioVersion
from marketapp.scenarios import launches
from marketapp.scenarios.constants import constant_values
from marketapp.scenarios.context import portal_info
from marketapp.scenarios.definition import DefinitionError, ScenarioDefinition, launch_values
from marketapp.scenarios.preview import (
    Preview,
    PreviewReport,
    Selection,
    SelectionError,
    check_filter,
    launching_user,
    list_pages,
    preview_scenario,
)
from marketapp.scenarios.robot import active_scenarios
from marketapp.scenarios.undo import UndoError, undo
from marketapp.security import SESSION_MAX_AGE, PortalSession, reject
from placements.web import json_body, page_api

bp = Blueprint("launch_api", __name__, url_prefix="/api/launch")

USER_TOKEN_HEADER = "X-User-Token"  # noqa: S105 - a header name
# Hand-picked selections larger than this go through the "Run scenario" robot (the page says so).
MAX_PICKED = 500
LOG_LIMIT = 200
CSV_LIMIT = 100_000
ERROR_KINDS = ("failed",)
ENTITY_TYPES = ("CONTACT", "COMPANY", "DEAL", "LEAD")
_PLACEMENT = re.compile(
    r"^CRM_(CONTACT|COMPANY|DEAL|LEAD)_(LIST_TOOLBAR|LIST_MENU|DETAIL_TOOLBAR)$"
)
# A record id as the page sends it: ASCII digits, or the selection dialog's ``C_12`` form
# (``str.isdigit`` would pass "²" and "١٢", which ``int`` refuses or reads as another number).
_RECORD_ID = re.compile(r"(?:(C|CO|D|L)_)?([0-9]{1,10})", re.ASCII)
# ``BX24.selectCRM`` prefixes of each entity type: a company id is never a contact's.
SELECT_PREFIXES = {"CONTACT": "C", "COMPANY": "CO", "DEAL": "D", "LEAD": "L"}
# Ids above this reach no row (database integers are 64-bit): a 404, not an overflow.
MAX_ROW_ID = 2**63 - 1


# -- the placement context ------------------------------------------------------------------


def _context_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="launch-placement")


def placement_entity(placement: str) -> str | None:
    """``CONTACT`` for ``CRM_CONTACT_LIST_MENU`` …; ``None`` for any other placement."""
    match = _PLACEMENT.match(placement or "")
    return match.group(1) if match else None


def issue_context(session: PortalSession, placement: str, entity_type: str) -> str:
    """The signed placement context the launcher page sends back with preview and launch."""
    data = {"p": session.portal_id, "u": session.user_id, "e": entity_type, "pl": placement}
    return _context_serializer().dumps(data)


def _placement(session: PortalSession, data: Mapping[str, Any]) -> tuple[str, str]:
    """(entity type, placement) of the page's signed context; 403 when forged or foreign."""
    try:
        found = _context_serializer().loads(str(data.get("context") or ""), max_age=SESSION_MAX_AGE)
    except BadSignature as exc:
        raise _refused(session, "bad launch context") from exc
    if (
        not isinstance(found, dict)
        or found.get("p") != session.portal_id
        or found.get("u") != session.user_id
    ):
        raise _refused(session, "launch context of another session")
    return str(found.get("e")), str(found.get("pl"))


def _refused(session: PortalSession, reason: str) -> AppError:
    """A 403 logged with its reason; the page shows the user a message in their language."""
    reject(reason, member_id=session.member_id, status=403)
    return AppError(_("This request could not be verified."), status=403, code="forbidden")


# -- input ------------------------------------------------------------------------------------


def _body() -> dict[str, Any]:
    data = json_body()
    if not isinstance(data, dict):
        raise AppError(_("The request must be a JSON object."), code="bad_request")
    return data


def _scenario(
    portal: Portal, key: Any, entity_type: str
) -> tuple[ScenarioVersion, ScenarioDefinition]:
    """The active scenario ``key`` of the portal, working on ``entity_type``; else 400."""
    for scenario, version in active_scenarios(db_session(), portal):
        if scenario.key == key:
            defn = ScenarioDefinition.model_validate(version.definition)
            if entity_type not in defn.entity_types:
                break
            return version, defn
    raise AppError(
        _("This scenario is not available here: choose an active scenario for these records."),
        code="unknown_scenario",
    )


def _ids(value: Any, entity: str) -> tuple[int, ...]:
    """Record ids: numbers, or the selection dialog's ``C_12``-style ids of ``entity``."""
    if not isinstance(value, list) or not value:
        raise AppError(_("Choose at least one record."), code="no_records")
    if len(value) > MAX_PICKED:
        raise AppError(
            _(
                'Up to %(n)s hand-picked records: for more, use the "Run scenario" robot '
                "in a Bitrix24 smart scenario.",
                n=MAX_PICKED,
            ),
            code="too_many_records",
        )
    ids: list[int] = []
    for item in value:
        found = _RECORD_ID.fullmatch(item) if isinstance(item, str) else None
        if isinstance(item, int) and not isinstance(item, bool):
            number = item
        elif found and found.group(1) in (None, SELECT_PREFIXES.get(entity)):
            number = int(found.group(2))
        else:
            number = 0
        if not 0 < number < 2**31:
            raise AppError(_("A record id is not valid."), code="bad_record")
        ids.append(number)
    return tuple(dict.fromkeys(ids))


def _values(portal: Portal, defn: ScenarioDefinition, raw: Any, language: str) -> dict[str, Any]:
    """The launch values, checked; 400 with one message per field otherwise."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise AppError(_("The parameters must be a JSON object."), code="bad_request")
    codes = set(constant_values(db_session(), portal))
    try:
        return launch_values(defn, raw, language=language, constants=codes)
    except DefinitionError as exc:
        raise FieldErrors(exc) from exc


class FieldErrors(AppError):
    """Parameter values the scenario refuses: one message per field."""

    def __init__(self, exc: DefinitionError) -> None:
        super().__init__(_("Check the highlighted fields."), status=400, code="invalid_params")
        self.fields = {p.path.removeprefix("params."): p.message for p in exc.problems}


@bp.errorhandler(FieldErrors)
def _field_errors(exc: FieldErrors) -> ResponseReturnValue:
    return jsonify(error=exc.code, error_description=exc.message, fields=exc.fields), exc.status


def _user_client(session: PortalSession, portal: Portal) -> tuple[Any, str]:
    """The launching user's client (the page's own token), once the portal vouches for it."""
    token = request.headers.get(USER_TOKEN_HEADER, "").strip()
    if not token or len(token) > 512:
        raise AppError(
            _("Your Bitrix24 session is not available: reopen the application."),
            status=401,
            code="no_user_token",
        )
    try:
        owner = verify.portal_user(portal.client_endpoint, token)
    except verify.VerificationError as exc:
        raise AppError(
            _("Your Bitrix24 session has expired: reopen the application."),
            status=401,
            code="expired",
        ) from exc
    if owner.user_id != session.user_id:
        raise _refused(session, "user token of another user")
    return client_for_user(portal, token), token


# -- preview ---------------------------------------------------------------------------------


@bp.post("/preview")
@page_api()
def preview(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    """A dry run over the chosen records: counts, skip reasons with records, samples, ETA."""
    data = _body()
    entity, _placement_code = _placement(session, data)
    version, defn = _scenario(portal, data.get("scenario"), entity)
    values = _values(portal, defn, data.get("params"), session.language)
    client, _token = _user_client(session, portal)
    selection, total = _preview_selection(client, entity, data)
    report = _run_preview(session, portal, client, defn, values, selection)
    view = preview_view(report, defn, entity)
    if total is not None:  # a filter: the first records of how many
        view["matching"] = total
    return jsonify(view)


def _run_preview(
    session: PortalSession,
    portal: Portal,
    client: Any,
    defn: ScenarioDefinition,
    values: dict[str, Any],
    selection: Selection,
) -> PreviewReport:
    db = db_session()
    ctx = portal_context(db, portal, client)
    runner = Preview(
        ctx,
        defn,
        values,
        constants=constant_values(db, portal),
        user=launching_user(client),
        portal_info=portal_info(db, portal),
        launched_at=datetime.now(UTC),
        language=session.language,
    )
    try:
        return preview_scenario(runner, selection, keep=MAX_PICKED)
    except SelectionError as exc:
        raise AppError(str(exc), code="bad_selection") from exc
    except BitrixError as exc:
        raise _portal_error(exc) from exc


def _portal_error(exc: BitrixError) -> AppError:
    return AppError(
        _("Bitrix24 did not answer as expected (%(code)s): try again.", code=exc.code),
        status=502,
        code="portal_error",
    )


def preview_view(report: PreviewReport, defn: ScenarioDefinition, entity: str) -> dict[str, Any]:
    """What the preview panel shows, from the preview's report."""
    outcomes = {"ready": 0, "skipped": 0, "failed": 0}
    reasons: dict[str, dict[str, Any]] = {}
    samples: dict[str, dict[str, Any]] = {}
    for record in report.records:
        outcome, problems = _record_outcome(record)
        outcomes[outcome] += 1
        for reason, message in problems:
            group = reasons.setdefault(reason, {"reason": reason, "label": reason_label(reason),
                                                 "records": []})  # fmt: skip
            if len(group["records"]) < 50 and record["id"] not in {
                r["id"] for r in group["records"]
            }:
                group["records"].append(
                    {
                        "id": record["id"],
                        "name": record.get("name") or f"#{record['id']}",
                        "message": message,
                        "path": card_path(entity, record["id"]),
                    }  # fmt: skip
                )
        for step in record.get("steps") or []:
            if step.get("status") == "ready" and step["type"] not in samples:
                samples[step["type"]] = _sample(step, record)
    totals = report.totals
    counts = {reason: n for reason, n in totals["by_reason"].items()}
    for group in reasons.values():
        group["count"] = counts.get(group["reason"], len(group["records"]))
    return {
        "records": totals["records"],
        "outcomes": outcomes,
        "steps": totals["steps"],
        "reasons": sorted(reasons.values(), key=lambda g: -int(g["count"])),
        "samples": list(samples.values()),
        "sms_segments": totals["sms_segments"],
        "eta": report.eta,
    }


def _record_outcome(record: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A record's outcome (ready when any step would act) and its skip reasons."""
    if record.get("status") in ("skipped", "failed"):
        return str(record["status"]), [(str(record["reason"]), str(record.get("message", "")))]
    steps = record.get("steps") or []
    problems = [
        (str(s["reason"]), str(s.get("message", "")))
        for s in steps
        if s.get("status") in ("skipped", "failed")
    ]
    if any(s.get("status") == "ready" and s["type"] not in ("set_variable",) for s in steps):
        return "ready", problems
    failed = any(s.get("status") == "failed" for s in steps)
    return ("failed" if failed else "skipped"), problems


def _sample(step: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    shown = ("to", "phone", "subject", "body", "text", "segments", "title", "message", "after")
    sample = {k: step[k] for k in shown if k in step}
    return {"type": step["type"], "record": record.get("name") or f"#{record['id']}", **sample}


def card_path(entity: str, entity_id: int) -> str:
    return f"/crm/{entity.lower()}/details/{int(entity_id)}/"


# Labels in the user's language (lazy: translated when shown, built once).
STEP_NAMES = {
    "send_email": lazy_gettext("Send e-mail"),
    "send_sms": lazy_gettext("Send SMS"),
    "edit_fields": lazy_gettext("Edit fields"),
    "timeline_comment": lazy_gettext("Timeline comment"),
    "create_task": lazy_gettext("Create a task"),
    "notify": lazy_gettext("Notify an employee"),
    "wait": lazy_gettext("Wait"),
    "condition": lazy_gettext("Condition"),
    "split": lazy_gettext("Split"),
    "stop": lazy_gettext("Stop"),
    "set_variable": lazy_gettext("Set a variable"),
}
KIND_LABELS = {
    "sent": lazy_gettext("Done"),
    "passed": lazy_gettext("Passed"),
    "branch": lazy_gettext("Branch"),
    "waiting": lazy_gettext("Waiting"),
    "woke": lazy_gettext("Wait over"),
    "deferred": lazy_gettext("Deferred"),
    "skipped": lazy_gettext("Skipped"),
    "failed": lazy_gettext("Failed"),
    "stopped": lazy_gettext("Stopped"),
    "goal": lazy_gettext("Goal reached"),
}
RECORD_NAMES = {
    "CONTACT": lazy_gettext("Contact"),
    "COMPANY": lazy_gettext("Company"),
    "DEAL": lazy_gettext("Deal"),
    "LEAD": lazy_gettext("Lead"),
}
REASON_LABELS = {
    "no_phone": lazy_gettext("No phone"),
    "no_email": lazy_gettext("No e-mail"),
    "invalid_phone": lazy_gettext("Invalid phone number"),
    "invalid_email": lazy_gettext("Invalid e-mail address"),
    "opted_out": lazy_gettext("Opted out"),
    "unsubscribed": lazy_gettext("Unsubscribed"),
    "duplicate": lazy_gettext("Duplicate address"),
    "too_long": lazy_gettext("Text too long"),
    "template_error": lazy_gettext("Template error"),
    "not_found": lazy_gettext("Record not found"),
    "unreadable": lazy_gettext("Record unreadable"),
    "access_denied": lazy_gettext("No access to the record"),
    "no_date": lazy_gettext("No date to wait for"),
    "goal": lazy_gettext("Already meets the goal"),
    "reentry_never": lazy_gettext("Already was in the scenario"),
    "reentry_active": lazy_gettext("Still in the scenario"),
    "expression_error": lazy_gettext("Expression error"),
}


def step_name(kind: str) -> str:
    """A step type in the user's language."""
    return str(STEP_NAMES.get(kind, kind))


def kind_label(kind: str) -> str:
    """What happened to a record at a step, in the user's language."""
    return str(KIND_LABELS.get(kind, kind))


def record_label(entity: str, entity_id: int) -> str:
    """``Contact 12`` in the user's language."""
    return f"{RECORD_NAMES.get(entity, entity)} {entity_id}"


def reason_label(reason: str) -> str:
    """A skip or failure reason in the user's language."""
    return str(REASON_LABELS.get(reason, reason))


# -- a filter built in the page ---------------------------------------------------------------

# The launcher's operators as legacy ``crm.<entity>.list`` filter prefixes ("empty": equal to "").
FILTER_OPERATORS = {"=": "=", "!=": "!", ">": ">", "<": "<", "contains": "%", "empty": "="}
MAX_CONDITIONS = 10
# Field types a condition can test (files and multi-value links cannot be compared).
_UNFILTERABLE = {"file", "crm_multifield", "location", "resourcebooking", "iblock_section"}


class FilterError(AppError):
    """A condition of the page's filter the portal would not accept: its row and why."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message, status=400, code="bad_filter")
        self.row = row


@bp.errorhandler(FilterError)
def _filter_error(exc: FilterError) -> ResponseReturnValue:
    return jsonify(error=exc.code, error_description=exc.message, row=exc.row), exc.status


def _known_fields(client: Any, entity: str) -> dict[str, Any]:
    """``crm.<entity>.fields`` with the user's own token."""
    try:
        known = client.call(f"{ENTITY_METHODS[entity]}.fields").result
    except BitrixError as exc:
        raise _portal_error(exc) from exc
    return known if isinstance(known, dict) else {}


def filter_fields(known: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The fields a condition may test, with their labels and (lists) their values."""
    found = []
    for code, spec in known.items():
        if not isinstance(spec, dict) or spec.get("type") in _UNFILTERABLE:
            continue
        label = spec.get("filterLabel") or spec.get("formLabel") or spec.get("title") or code
        field: dict[str, Any] = {"code": str(code), "label": str(label), "type": spec.get("type")}
        items = spec.get("items")
        if isinstance(items, list):
            field["items"] = [{"value": str(i.get("ID")), "label": str(i.get("VALUE"))}
                              for i in items if isinstance(i, dict)]  # fmt: skip
        found.append(field)
    return sorted(found, key=lambda f: (f["code"] != "ID", f["label"].lower()))


def conditions_of(rows: Any) -> dict[str, Any]:
    """The page's condition rows (``{"field", "op", "value"}``) as a ``crm.*.list`` filter."""
    if not isinstance(rows, list) or not rows:
        raise FilterError(_("Add at least one condition to the filter."))
    if len(rows) > MAX_CONDITIONS:
        raise FilterError(_("At most %(n)s conditions.", n=MAX_CONDITIONS))
    conditions: dict[str, Any] = {}
    for n, row in enumerate(rows):
        op = row.get("op") if isinstance(row, dict) else None
        field = row.get("field") if isinstance(row, dict) else None
        if not isinstance(op, str) or op not in FILTER_OPERATORS or not isinstance(field, str):
            raise FilterError(_("Choose a field and a condition."), n)
        value = "" if op == "empty" else row.get("value")
        if not _filter_value(value):
            raise FilterError(_("The value must be text or a number."), n)
        if row["op"] != "empty" and str(value).strip() == "":
            raise FilterError(_("Enter a value."), n)
        key = FILTER_OPERATORS[op] + field
        if key in conditions:
            raise FilterError(_("Each field and condition may be used once."), n)
        conditions[key] = str(value)[:255] if isinstance(value, str) else value
    return conditions


def _filter_value(value: Any) -> bool:
    """Text, or a number the portal can compare (JSON ``NaN`` and ``1e999`` parse as floats)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) or (isinstance(value, int) and abs(value) <= MAX_ROW_ID)


def _filter(client: Any, entity: str, rows: Any) -> dict[str, Any]:
    """The page's filter checked against the entity's fields (the user's view of them)."""
    conditions = conditions_of(rows)
    try:
        return check_filter(entity, conditions, _known_fields(client, entity))
    except SelectionError as exc:
        keys = list(conditions)
        at = next((i for i, k in enumerate(keys) if exc.field and k.endswith(exc.field)), None)
        raise FilterError(str(exc), at) from exc


def count_matching(client: Any, entity: str, conditions: Mapping[str, Any]) -> int:
    """How many records match: one ``crm.<entity>.list`` call (``start=0``) read for ``total``."""
    method = f"{ENTITY_METHODS[entity]}.list"
    params = {"filter": dict(conditions), "select": ["ID"], "order": {"ID": "ASC"}, "start": 0}
    try:
        answer = client.call(method, params)
    except BitrixError as exc:
        raise _portal_error(exc) from exc
    if answer.total is not None:
        return int(answer.total)
    return len(answer.result) if isinstance(answer.result, list) else 0


def _first_ids(
    client: Any, entity: str, conditions: Mapping[str, Any]
) -> tuple[tuple[int, ...], int]:
    """The ids of the first :data:`MAX_PICKED` matching records, and how many match."""
    ids: list[int] = []
    total = 0
    method = f"{ENTITY_METHODS[entity]}.list"
    try:
        for rows, found in list_pages(client, method, conditions, ["ID"]):
            total = found
            ids.extend(int(r["ID"]) for r in rows)
            if len(ids) >= MAX_PICKED:
                break
    except BitrixError as exc:
        raise _portal_error(exc) from exc
    return tuple(ids[:MAX_PICKED]), total


def _preview_selection(
    client: Any, entity: str, data: Mapping[str, Any]
) -> tuple[Selection, int | None]:
    """Hand-picked ids as they are; a filter's first records (a preview never reads them all)."""
    if data.get("recipients") != "filter":
        return Selection(entity, ids=_ids(data.get("ids"), entity)), None
    ids, total = _first_ids(client, entity, _filter(client, entity, data.get("filter")))
    if not ids:
        raise FilterError(_("No records match the filter."))
    return Selection(entity, ids=ids), total


@bp.post("/fields")
@page_api()
def fields(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    """The fields a filter of this placement's entity may test (as the user sees them)."""
    entity, _placement_code = _placement(session, _body())
    client, _token = _user_client(session, portal)
    return jsonify(fields=filter_fields(_known_fields(client, entity)))


@bp.post("/count")
@page_api()
def count(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    """How many records the filter matches, read with the user's own rights."""
    data = _body()
    entity, _placement_code = _placement(session, data)
    client, _token = _user_client(session, portal)
    conditions = _filter(client, entity, data.get("filter"))
    return jsonify(count=count_matching(client, entity, conditions))


# -- launch ----------------------------------------------------------------------------------


@bp.post("/start")
@page_api()
def start(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    """Launch on the chosen records; the same idempotency key returns the same launch."""
    data = _body()
    entity, _placement_code = _placement(session, data)
    version, defn = _scenario(portal, data.get("scenario"), entity)
    values = _values(portal, defn, data.get("params"), session.language)
    key = str(data.get("idempotency_key") or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{8,40}", key):
        raise AppError(_("Reload the page and launch again."), code="bad_idempotency_key")
    client, token = _user_client(session, portal)
    if data.get("recipients") == "filter":
        selection = Selection(entity, filter=_filter(client, entity, data.get("filter")))
    else:
        selection = Selection(entity, ids=_ids(data.get("ids"), entity))
    try:
        row = launches.launch(
            db_session(),
            portal,
            version,
            selection,
            json.loads(json.dumps(values, default=str)),
            session.user_id,
            token,
            f"page:{session.user_id}:{key}",  # one user's key never finds another's launch
            user=launching_user(client),
        )
    except launches.LaunchError as exc:
        raise AppError(str(exc), code="launch_refused") from exc
    return jsonify(id=row.id, state=row.state.value)


# -- progress ---------------------------------------------------------------------------------


def visible_launch(session: PortalSession, portal: Portal, launch_id: int) -> Launch:
    """The launch if this user may see it (theirs, or any for an admin); else 404."""
    row = None
    if 0 < launch_id <= MAX_ROW_ID:
        try:
            row = launches.get_launch(db_session(), portal, launch_id)
        except launches.LaunchNotFound:
            row = None
    if row is None or not (session.is_admin or row.user_id == session.user_id):
        raise AppError(_("Not found."), status=404, code="not_found")
    return row


def launch_status(session: PortalSession, portal: Portal, row: Launch) -> dict[str, Any]:
    """``launches.status`` with the scenario's name and the latest errors, for the page."""
    db = db_session()
    doc = launches.status(db, portal, row.id)
    version = db.get(ScenarioVersion, row.version_id)
    if version is not None:
        defn = ScenarioDefinition.model_validate(version.definition)
        doc["name"] = defn.name.get(session.language)
        doc["step_types"] = {path: step["type"] for path, step in _step_types(defn)}
        # "1. Send SMS" in the user's language, by path (branches keep their path's order).
        doc["step_labels"] = {
            path: f"{n}. {step_name(step['type'])}"
            for n, (path, step) in enumerate(_step_types(defn), start=1)
        }
    doc["errors"] = events(portal, row.id, kinds=ERROR_KINDS, limit=5, newest_first=True)
    doc["active"] = row.state.value in ("expanding", "running", "parked", "sleeping", "stopping")
    return doc


def _step_types(defn: ScenarioDefinition) -> Iterator[tuple[str, dict[str, Any]]]:
    from marketapp.scenarios import steps as st

    for path, step in st.walk(defn.steps):
        yield path, {"type": step.type}


@bp.get("/<int:launch_id>/status")
@page_api()
def status(session: PortalSession, portal: Portal, launch_id: int) -> ResponseReturnValue:
    return jsonify(launch_status(session, portal, visible_launch(session, portal, launch_id)))


def events(
    portal: Portal,
    launch_id: int,
    *,
    search: str = "",
    kinds: tuple[str, ...] = (),
    limit: int = LOG_LIMIT,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """The launch's per-record log (``LaunchEvent`` rows), optionally searched."""
    query = (
        select(LaunchEvent, Enrollment.entity_type, Enrollment.entity_id)
        .join(Enrollment, Enrollment.id == LaunchEvent.enrollment_id)
        .where(LaunchEvent.portal_id == portal.id, LaunchEvent.launch_id == launch_id)
    )
    if kinds:
        query = query.where(LaunchEvent.kind.in_(kinds))
    text = search.strip()[:100]
    if text.isascii() and text.isdigit() and int(text) <= MAX_ROW_ID:
        query = query.where(Enrollment.entity_id == int(text))
    elif text:
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                LaunchEvent.message.ilike(like, escape="\\"),
                LaunchEvent.reason.ilike(like, escape="\\"),
                LaunchEvent.kind.ilike(like, escape="\\"),
            )
        )
    order = LaunchEvent.id.desc() if newest_first else LaunchEvent.id
    rows = db_session().execute(query.order_by(order).limit(limit))
    return [
        {
            "at": event.at.isoformat(timespec="seconds"),
            "entity_type": entity_type,
            "entity_id": entity_id,
            "path": card_path(entity_type, entity_id),
            "step": event.step,
            "kind": event.kind,
            "kind_label": kind_label(event.kind),
            "record": record_label(entity_type, entity_id),
            "reason": event.reason,
            "label": reason_label(event.reason) if event.reason else "",
            "message": event.message,
            "result_id": event.result_id,
        }
        for event, entity_type, entity_id in rows
    ]


@bp.get("/<int:launch_id>/log")
@page_api()
def log(session: PortalSession, portal: Portal, launch_id: int) -> ResponseReturnValue:
    row = visible_launch(session, portal, launch_id)
    return jsonify(events(portal, row.id, search=request.args.get("q", "")))


@bp.get("/<int:launch_id>/log.csv")
@page_api()
def log_csv(session: PortalSession, portal: Portal, launch_id: int) -> ResponseReturnValue:
    """The whole per-record log as CSV (a cell starting like a formula is quoted as text)."""
    row = visible_launch(session, portal, launch_id)
    lines = events(portal, row.id, search=request.args.get("q", ""), limit=CSV_LIMIT)
    out = io.StringIO()
    columns = ["at", "entity_type", "entity_id", "step", "kind", "reason", "message", "result_id"]
    writer = csv.writer(out)
    writer.writerow(columns)
    for line in lines:
        writer.writerow([_cell(line[c]) for c in columns])
    return Response(
        "\ufeff" + out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="launch-{row.id}.csv"'},
    )


def _cell(value: Any) -> str:
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.post("/<int:launch_id>/stop")
@page_api()
def stop(session: PortalSession, portal: Portal, launch_id: int) -> ResponseReturnValue:
    row = visible_launch(session, portal, launch_id)
    return jsonify(launches.stop(db_session(), portal, row.id))


@bp.post("/<int:launch_id>/undo")
@page_api()
def undo_launch(session: PortalSession, portal: Portal, launch_id: int) -> ResponseReturnValue:
    """Take back what the launch did (stopping it first); the report in the user's language."""
    row = visible_launch(session, portal, launch_id)
    try:
        report = undo(db_session(), portal, row.id, client_for(portal))
    except UndoError as exc:
        raise AppError(str(exc), status=404, code="not_found") from exc
    except BitrixError as exc:
        raise _portal_error(exc) from exc
    db_session().commit()
    return jsonify(report=report.describe(), lines=report.lines())


# -- my launches ------------------------------------------------------------------------------


def my_launches(session: PortalSession, portal: Portal, limit: int = 50) -> list[dict[str, Any]]:
    """The user's own launches (an admin: every launch of the portal), newest first."""
    db = db_session()
    query = select(Launch).where(Launch.portal_id == portal.id)
    if not session.is_admin:
        query = query.where(Launch.user_id == session.user_id)
    rows = list(db.scalars(query.order_by(Launch.id.desc()).limit(limit)))
    names = _scenario_names(portal, {r.version_id for r in rows}, session.language)
    found = []
    for row in rows:
        doc = launches.status(db, portal, row.id)
        doc["name"] = names.get(row.version_id, doc["scenario"])
        found.append(doc)
    return found


def _scenario_names(portal: Portal, version_ids: set[int], language: str) -> dict[int, str]:
    if not version_ids:
        return {}
    query = select(ScenarioVersion).where(
        ScenarioVersion.portal_id == portal.id, ScenarioVersion.id.in_(version_ids)
    )
    names = {}
    for version in db_session().scalars(query):
        names[version.id] = ScenarioDefinition.model_validate(version.definition).name.get(language)
    return names


@bp.get("/mine")
@page_api()
def mine(session: PortalSession, portal: Portal) -> ResponseReturnValue:
    return jsonify(my_launches(session, portal))
