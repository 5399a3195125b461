"""CRM methods: legacy ``crm.{contact,company,deal,lead}.*``, ``crm.item.*``, activities."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

from marketapp.devportal import crm, crmmeta, lifecycle, phpform, robots
from marketapp.devportal.errors import RestError, legacy
from marketapp.devportal.registry import Ctx, ListPage, method, param

PAGE = 50
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def paginate(rows: list[Any], params: dict[str, Any]) -> ListPage:
    """50 per page; ``start=-1`` gives the first page without ``total``/``next`` (§3.5)."""
    try:
        start = int(param(params, "start", default=0) or 0)
    except (TypeError, ValueError):
        start = 0
    if start == -1:
        return ListPage(rows[:PAGE])
    start = max(start, 0)
    end = start + PAGE
    return ListPage(rows[start:end], total=len(rows), next=end if end < len(rows) else None)


def _first_page_by_id(params: dict[str, Any], order: dict[str, Any]) -> bool:
    """``start=-1`` with no order or ``ID ASC`` only."""
    if str(param(params, "start", default="0")).strip() != "-1":
        return False
    return not order or (
        [k.upper() for k in order] == ["ID"] and str(*order.values()).upper() == "ASC"
    )


def _field_getter(row: dict[str, Any]) -> Callable[[str], Any]:
    return lambda name: row.get(name.upper())


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id(params: dict[str, Any]) -> int:
    raw = param(params, "id", default=None)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        raise legacy("ID is not defined or invalid.")
    return value


def _record(ctx: Ctx, entity: str, rid: int, missing: str = "Not found") -> dict[str, Any]:
    record = ctx.portal.crm.records[entity].get(rid)
    if record is None:
        raise legacy(missing)
    if not _visible(ctx, record):
        raise legacy("Access denied.")
    return record


# -- CRM rights (Portal.record_access) ------------------------------------------------------------
def _read_level(ctx: Ctx) -> str:
    """``all``, ``own`` (ASSIGNED_BY_ID is the caller) or ``none``; admins always see all."""
    if ctx.user.admin:
        return "all"
    return ctx.portal.record_access.get(ctx.user.id, "all")


def _visible(ctx: Ctx, record: dict[str, Any]) -> bool:
    level = _read_level(ctx)
    if level == "own":
        return str(record.get("ASSIGNED_BY_ID")) == str(ctx.user.id)
    return level != "none"


# -- list parameters: filter and order must be objects of known fields -----------------------------
def _invalid(description: str) -> RestError:
    return RestError("INVALID_ARG_VALUE", description, 400)


def _object(
    params: dict[str, Any], name: str, on_error: Callable[[Any], RestError]
) -> dict[str, Any]:
    """A ``filter``/``order`` parameter: absent or null is {}, an empty list is {} (PHP array)."""
    value = param(params, name, default=None)
    if value is None or value == []:
        return {}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise on_error(value)
    return value


def _check_fields(flt: dict[str, Any], order: dict[str, Any], known: set[str]) -> None:
    """Unknown filter or sort fields and sort directions other than ASC/DESC are errors.

    The wording is the documented one of crm.item.list; the legacy lists use it too (their
    docs are silent) so that a typo never turns into an unfiltered or empty selection.
    """
    for name in crm.filter_fields(flt):
        if name not in known and name.upper() not in known:
            raise _invalid(f"Invalid filter: field '{name}' is not allowed in filter")
    for name, direction in order.items():
        if name not in known and name.upper() not in known:
            raise _invalid(f"Invalid order: field '{name}' is not allowed in order")
        if str(direction).upper() not in ("ASC", "DESC"):
            raise _invalid(
                "Invalid order: allowed sort directions are ASC, DESC. "
                f"But got '{direction}' for field '{name}'"
            )


def _legacy_known(ctx: Ctx, entity: str) -> set[str]:
    return set(crmmeta.STANDARD[entity]) | set(ctx.portal.crm.user_fields[entity])


def _legacy_object(params: dict[str, Any], name: str) -> dict[str, Any]:
    return _object(params, name, lambda _v: legacy(f"Parameter '{name}' must be array."))


def _engine_object(params: dict[str, Any], name: str) -> dict[str, Any]:
    """crm.item.* bind parameters like every REST controller (code 100, as the docs show)."""

    def error(value: Any) -> RestError:
        return RestError(
            100,
            f"Invalid value {{{value}}} to match with parameter {{{name}}}. "
            "Should be value of type array.",
            400,
        )

    return _object(params, name, error)


def _check_emails(fields: dict[str, Any]) -> None:
    items = fields.get("EMAIL") or fields.get("email") or []
    for item in phpform.as_list(items):
        value = item.get("VALUE", "") if isinstance(item, dict) else ""
        if value and not EMAIL.match(str(value)):
            kind = str(item.get("VALUE_TYPE", "WORK")).capitalize()
            raise RestError(
                "ERROR_CORE", f"The field {kind} e-mail contains an invalid address", 400
            )


def _stage(record: dict[str, Any]) -> Any:
    return record.get("STAGE_ID", record.get("STATUS_ID"))


def _after_save(ctx: Ctx, entity: str, record: dict[str, Any], action: str, old_stage: Any) -> None:
    """Emit ONCRM*ADD/UPDATE and run automation rules on stage entry (§9.28)."""
    event = f"ONCRM{entity.upper()}{action}"
    lifecycle.dispatch_event(
        ctx.emu, ctx.portal, event, {"FIELDS": {"ID": str(record["ID"])}}, ctx.user.id
    )
    stage = _stage(record)
    if stage is None or stage == old_stage:
        return
    for rule in ctx.portal.automation:
        if rule["entity"] == entity and rule["stage"] == stage:
            robots.run_robot(
                ctx.emu,
                ctx.portal,
                rule["client_id"],
                rule["code"],
                f"{entity.upper()}_{record['ID']}",
                rule.get("properties"),
                rule.get("run_as"),
                int(rule.get("timeout_duration", 0)),
            )


def _legacy_methods(entity: str) -> None:
    label = entity.capitalize()

    @method(f"crm.{entity}.get", "crm")
    def get(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
        return crm.legacy_view(entity, _record(ctx, entity, _id(params)))

    @method(f"crm.{entity}.fields", "crm")
    def fields_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
        return crmmeta.describe(entity, ctx.portal.crm.user_fields[entity])

    @method(f"crm.{entity}.list", "crm")
    def list_(ctx: Ctx, params: dict[str, Any]) -> ListPage:
        flt = _legacy_object(params, "filter")
        select = param(params, "select", default=None)
        order = _legacy_object(params, "order")
        _check_fields(flt, order, _legacy_known(ctx, entity))
        if _read_level(ctx) == "none":
            raise legacy("Access denied.")
        found = (
            r
            for r in crm.candidates(ctx.portal.crm.records[entity], flt)
            if _visible(ctx, r) and crm.matches(crm.legacy_getter(entity, r), flt)
        )
        if _first_page_by_id(params, order):
            # start=-1 by ID (the documented fast cursor): candidates come in ID order, so the
            # first 50 matches are the page; no scan of the rest, no count.
            page = ListPage(list(itertools.islice(found, PAGE)))
        else:
            rows = crm.sort_records(
                list(found), order, lambda r, n: crm.legacy_getter(entity, r)(n)
            )
            page = paginate(rows, params)
        # Docs: without select, "*" plus "UF_*" (multifields only when named).
        fields = phpform.as_list(select) if select else ["*", "UF_*"]
        page.items = [crm.legacy_view(entity, r, fields) for r in page.items]
        return page

    @method(f"crm.{entity}.add", "crm")
    def add(ctx: Ctx, params: dict[str, Any]) -> int:
        fields = _dict(param(params, "fields", default={}))
        if not fields:
            raise legacy("Parameter 'fields' must be array.")
        _check_emails(fields)
        rid = ctx.portal.crm.add(entity, fields, ctx.user.id, ctx.emu.clock.now())
        _after_save(ctx, entity, ctx.portal.crm.records[entity][rid], "ADD", None)
        return rid

    @method(f"crm.{entity}.update", "crm")
    def update(ctx: Ctx, params: dict[str, Any]) -> bool:
        record = _record(ctx, entity, _id(params), f"{label} is not found")
        fields = _dict(param(params, "fields", default={}))
        if not fields:
            raise legacy("Parameter 'fields' must be array.")
        _check_emails(fields)
        old_stage = _stage(record)
        ctx.portal.crm.apply_legacy(entity, record, fields)
        record["DATE_MODIFY"] = crm.iso(ctx.emu.clock.now())
        record["MODIFY_BY_ID"] = ctx.user.id
        _after_save(ctx, entity, record, "UPDATE", old_stage)
        return True

    del get, fields_, list_, add, update


for _name in ("contact", "company", "deal", "lead"):
    _legacy_methods(_name)


# -- crm.item.* -----------------------------------------------------------------------------------
def _entity(params: dict[str, Any]) -> str:
    try:
        type_id = int(param(params, "entityTypeId", default=0) or 0)
    except (TypeError, ValueError):
        type_id = 0
    if type_id not in crm.TYPE_NAMES:
        raise RestError("NOT_FOUND", "Smart process not found", 400)
    return crm.TYPE_NAMES[type_id]


def _item(
    ctx: Ctx,
    entity: str,
    params: dict[str, Any],
    denied: str = "You do not have permission to view this item",
) -> dict[str, Any]:
    try:
        rid = int(param(params, "id", default=0) or 0)
    except (TypeError, ValueError):
        rid = 0
    record = ctx.portal.crm.records[entity].get(rid)
    if record is None:
        raise RestError("NOT_FOUND", "Element not found", 400)
    if not _visible(ctx, record):
        raise RestError("ACCESS_DENIED", denied, 400)
    return record


def _item_names(ctx: Ctx, entity: str) -> dict[str, str]:
    """crm.item field name (camelCase) -> stored UPPER_CASE name, standard then custom."""
    names = [*crmmeta.STANDARD[entity], *ctx.portal.crm.user_fields[entity]]
    return {crm.camel(n): n for n in names if n not in crm.MULTIFIELDS}


@method("crm.item.fields", "crm")
def item_fields(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    entity = _entity(params)
    original = str(param(params, "useOriginalUfNames", default="N")).upper() in ("Y", "1", "TRUE")
    described = crmmeta.describe(entity, ctx.portal.crm.user_fields[entity])
    out: dict[str, Any] = {}
    for key, name in _item_names(ctx, entity).items():
        out[name if original and name.startswith("UF_") else key] = {
            **described[name],
            "upperName": name,
        }
    return {"fields": out}


@method("crm.item.get", "crm")
def item_get(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    entity = _entity(params)
    return {"item": crm.item_view(entity, _item(ctx, entity, params))}


@method("crm.item.list", "crm")
def item_list(ctx: Ctx, params: dict[str, Any]) -> ListPage:
    entity = _entity(params)
    flt = _engine_object(params, "filter")
    order = _engine_object(params, "order")
    names = _item_names(ctx, entity)
    _check_fields(flt, order, set(names) | set(names.values()))
    if _read_level(ctx) == "none":
        raise RestError("ACCESS_DENIED", "You do not have permission to view this item", 400)
    select = phpform.as_list(param(params, "select", default=None)) or ["*"]
    rows = [
        r
        for r in crm.candidates(ctx.portal.crm.records[entity], flt)
        if _visible(ctx, r) and crm.matches(crm.item_getter(entity, r), flt)
    ]
    rows = crm.sort_records(
        rows, order or {"id": "ASC"}, lambda r, n: crm.item_getter(entity, r)(n)
    )
    page = paginate(rows, params)
    page.items = {"items": [crm.item_view(entity, r, select) for r in page.items]}
    return page


@method("crm.item.update", "crm")
def item_update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    entity = _entity(params)
    record = _item(ctx, entity, params, "Access denied")
    fields = param(params, "fields", default=None)
    if not isinstance(fields, dict):
        raise RestError(100, "Could not find value for parameter {fields}", 400)
    old_stage = _stage(record)
    before = repr(record)
    changes: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "fm":
            if not isinstance(value, dict | list):
                raise RestError(100, "Expected iterable value for multiple field fm", 400)
            ctx.portal.crm.apply_fm(record, value)
        else:
            changes[crm.from_camel(entity, key, record)] = value
    _check_emails(changes)
    ctx.portal.crm.apply_legacy(entity, record, changes)
    if repr(record) != before:  # nothing is saved (or triggered) when nothing changed
        record["DATE_MODIFY"] = crm.iso(ctx.emu.clock.now())
        record["MODIFY_BY_ID"] = ctx.user.id
        _after_save(ctx, entity, record, "UPDATE", old_stage)
    return {"item": crm.item_view(entity, record)}


# -- activities -----------------------------------------------------------------------------------
ACTIVITY_TYPES = {"1", "2", "4", "6"}


def _validate_activity(ctx: Ctx, fields: dict[str, Any]) -> list[dict[str, Any]]:
    if not str(fields.get("SUBJECT") or "").strip():
        raise legacy("The field SUBJECT is not defined or empty")
    if not str(fields.get("RESPONSIBLE_ID") or "").isdigit():
        raise legacy("The field RESPONSIBLE_ID is not defined or invalid")
    if str(fields.get("TYPE_ID") or "") not in ACTIVITY_TYPES:
        raise legacy("The field TYPE_ID is not defined or invalid")
    comms = [c for c in phpform.as_list(fields.get("COMMUNICATIONS")) if isinstance(c, dict)]
    if not comms:
        raise legacy("The field COMMUNICATIONS is not defined or invalid")
    if str(fields["TYPE_ID"]) == "4" and len(comms) > 1:
        raise legacy("The only one communication is allowed for activity of specified type")
    owner = crm.TYPE_NAMES.get(int(fields.get("OWNER_TYPE_ID") or 0))
    if owner is None or int(fields.get("OWNER_ID") or 0) not in ctx.portal.crm.records[owner]:
        raise legacy(
            "Could not build binding. Please ensure that owner info and communications are defined."
        )
    if fields.get("PROVIDER_ID") and ctx.install is None:
        raise legacy("Application context required")
    return comms


@method("crm.activity.add", "crm")
def activity_add(ctx: Ctx, params: dict[str, Any]) -> int:
    fields = {str(k).upper(): v for k, v in _dict(param(params, "fields", default={})).items()}
    comms = _validate_activity(ctx, fields)
    store = ctx.portal.crm
    aid = store.new_id("activity")
    now = ctx.emu.clock.now()
    is_email = str(fields["TYPE_ID"]) == "4"
    activity = {
        **{k: v for k, v in fields.items() if k != "COMMUNICATIONS"},
        "ID": aid,
        "COMMUNICATIONS": comms,
        "COMPLETED": str(fields.get("COMPLETED") or "N").upper(),
        "DIRECTION": str(fields.get("DIRECTION") or "1"),
        "PROVIDER_ID": fields.get("PROVIDER_ID") or ("CRM_EMAIL" if is_email else ""),
        "CREATED": crm.iso(now),
        "LAST_UPDATED": crm.iso(now),
        "AUTHOR_ID": ctx.user.id,
    }
    store.activities[aid] = activity
    if is_email and activity["DIRECTION"] == "2" and activity["COMPLETED"] == "Y":
        _send_email(ctx, activity, comms[0], now)
    lifecycle.dispatch_event(
        ctx.emu, ctx.portal, "ONCRMACTIVITYADD", {"FIELDS": {"ID": str(aid)}}, ctx.user.id
    )
    return aid


def _send_email(ctx: Ctx, activity: dict[str, Any], comm: dict[str, Any], now: float) -> None:
    """Put the e-mail in the portal outbox, or fail after the activity exists (as Bitrix24 does)."""
    to = str(comm.get("VALUE") or "")
    injected = ctx.portal.faults.get("email_error")
    if injected:
        raise legacy(f"Email send error. {injected}")
    if not to:
        raise legacy('Email send error. "To" is not found')
    if not EMAIL.match(to):
        raise legacy("Email send error. Invalid email is specified")
    settings = _dict(activity.get("SETTINGS"))
    ctx.portal.outbox.append(
        {
            "activity_id": activity["ID"],
            "time": now,
            "from": settings.get("MESSAGE_FROM") or ctx.user.email,
            "to": to,
            "subject": activity.get("SUBJECT"),
            "body": activity.get("DESCRIPTION", ""),
            "description_type": str(activity.get("DESCRIPTION_TYPE", "1")),
            "owner_type_id": str(activity.get("OWNER_TYPE_ID")),
            "owner_id": str(activity.get("OWNER_ID")),
            "origin_id": activity.get("ORIGIN_ID"),
            "originator_id": activity.get("ORIGINATOR_ID"),
        }
    )


def _activity_view(activity: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in activity.items():
        out[key] = (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )
    out["COMMUNICATIONS"] = [
        {**{k: str(v) if isinstance(v, int) else v for k, v in c.items()}, "TYPE": "EMAIL"}
        for c in activity["COMMUNICATIONS"]
    ]
    return out


@method("crm.activity.get", "crm")
def activity_get(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    activity = ctx.portal.crm.activities.get(_id(params))
    if activity is None:
        raise legacy("Not found")
    return _activity_view(activity)


@method("crm.activity.list", "crm")
def activity_list(ctx: Ctx, params: dict[str, Any]) -> ListPage:
    flt = _dict(param(params, "filter", default={}))
    order = _dict(param(params, "order", default={}))
    select = phpform.as_list(param(params, "select", default=None))
    rows = [a for a in ctx.portal.crm.activities.values() if crm.matches(_field_getter(a), flt)]
    rows = crm.sort_records(rows, order, lambda a, n: a.get(n.upper()))
    page = paginate(rows, params)
    views = [_activity_view(a) for a in page.items]
    if select and "*" not in select:
        wanted = {"ID", *(str(s).upper() for s in select)}
        views = [{k: v for k, v in view.items() if k in wanted} for view in views]
    page.items = views
    return page


# -- timeline comments ----------------------------------------------------------------------------
@method("crm.timeline.comment.add", "crm")
def comment_add(ctx: Ctx, params: dict[str, Any]) -> int:
    fields = params.get("fields")
    if not isinstance(fields, dict):
        raise RestError(100, "Could not find value for parameter {fields}", 400)
    fields = {str(k).upper(): v for k, v in fields.items()}
    entity = str(fields.get("ENTITY_TYPE") or "").lower()
    try:
        rid = int(fields.get("ENTITY_ID") or 0)
    except (TypeError, ValueError):
        rid = 0
    if entity not in crm.ENTITY_TYPES or rid not in ctx.portal.crm.records[entity]:
        raise RestError("OWNER_NOT_FOUND", "Owner element not found", 400)
    if not str(fields.get("COMMENT") or "").strip():
        raise RestError("INVALID_ARG_VALUE", "Empty comment message", 400)
    cid = ctx.portal.crm.new_id("comment")
    ctx.portal.crm.comments[cid] = {
        "ID": cid,
        "CREATED": crm.iso(ctx.emu.clock.now()),
        "ENTITY_ID": rid,
        "ENTITY_TYPE": entity,
        "AUTHOR_ID": ctx.user.id,
        "COMMENT": str(fields["COMMENT"]),
        "FILES": [],
    }
    return cid


@method("crm.timeline.comment.list", "crm")
def comment_list(ctx: Ctx, params: dict[str, Any]) -> ListPage:
    flt = _dict(param(params, "filter", default={}))
    order = _dict(param(params, "order", default={}))
    rows = [c for c in ctx.portal.crm.comments.values() if crm.matches(_field_getter(c), flt)]
    rows = crm.sort_records(rows, order, lambda c, n: c.get(n.upper()))
    page = paginate(rows, params)
    page.items = [
        {k: str(v) if isinstance(v, int) else v for k, v in c.items()} for c in page.items
    ]
    return page


def _need(params: dict[str, Any], name: str) -> Any:
    """A required parameter of a REST controller (code 100 when absent, as the docs list)."""
    value = params.get(name)
    if value in (None, "", {}, []):
        raise RestError(100, f"Could not find value for parameter {{{name}}}", 400)
    return value


def _comment(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """The comment ``id`` names, checked against ``ownerTypeId``/``ownerId`` and CRM rights."""
    try:
        cid = int(_need(params, "id"))
    except (TypeError, ValueError):
        cid = 0
    comment = ctx.portal.crm.comments.get(cid)
    if comment is None:
        raise RestError("NOT_FOUND", "Not found.", 400)
    owner_type, owner_id = params.get("ownerTypeId"), params.get("ownerId")
    if owner_type is not None or owner_id is not None:
        same_type = str(owner_type) == str(crm.ENTITY_TYPES[comment["ENTITY_TYPE"]])
        if not same_type or str(owner_id) != str(comment["ENTITY_ID"]):
            raise RestError("OWNER_NOT_FOUND", "Owner element not found", 400)
    owner = ctx.portal.crm.records[comment["ENTITY_TYPE"]].get(comment["ENTITY_ID"])
    if owner is not None and not _visible(ctx, owner):
        raise RestError("ACCESS_DENIED", "Access denied.", 400)
    return comment


@method("crm.timeline.comment.update", "crm")
def comment_update(ctx: Ctx, params: dict[str, Any]) -> int:
    comment = _comment(ctx, params)
    fields = _need(params, "fields")  # only lowercase ``fields`` since crm 23.100.0 (docs)
    if not isinstance(fields, dict):
        raise RestError(100, "Could not find value for parameter {fields}", 400)
    fields = {str(k).upper(): v for k, v in fields.items()}
    if "COMMENT" in fields:
        if not str(fields["COMMENT"] or "").strip():
            raise RestError("INVALID_ARG_VALUE", "Empty comment message", 400)
        comment["COMMENT"] = str(fields["COMMENT"])
    return int(comment["ID"])


@method("crm.timeline.comment.delete", "crm")
def comment_delete(ctx: Ctx, params: dict[str, Any]) -> None:
    comment = _comment(ctx, params)
    del ctx.portal.crm.comments[comment["ID"]]
    return None


@method("crm.activity.delete", "crm")
def activity_delete(ctx: Ctx, params: dict[str, Any]) -> bool:
    aid = _id(params)
    store = ctx.portal.crm
    activity = store.activities.get(aid)
    if activity is None:
        raise legacy("Activity is not found")
    owner_entity = crm.TYPE_NAMES.get(int(activity.get("OWNER_TYPE_ID") or 0))
    owner = (
        store.records[owner_entity].get(int(activity.get("OWNER_ID") or 0))
        if owner_entity
        else None
    )
    if owner is not None and not _visible(ctx, owner):
        raise legacy("Access denied.")
    del store.activities[aid]
    lifecycle.dispatch_event(
        ctx.emu, ctx.portal, "ONCRMACTIVITYDELETE", {"FIELDS": {"ID": str(aid)}}, ctx.user.id
    )
    return True


# -- directories and pipelines --------------------------------------------------------------------
_STATUS_FIELDS = {
    "ID",
    "ENTITY_ID",
    "STATUS_ID",
    "NAME",
    "NAME_INIT",
    "SORT",
    "SYSTEM",
    "CATEGORY_ID",
    "COLOR",
    "SEMANTICS",
    "EXTRA",
}


@method("crm.status.list", "crm")
def status_list(ctx: Ctx, params: dict[str, Any]) -> ListPage:
    def error(_value: Any) -> RestError:
        return RestError("Invalid parameters.", "Incorrect parameters passed.", 400)

    flt = _object(params, "filter", error)
    order = _object(params, "order", error)
    _check_fields(flt, order, _STATUS_FIELDS)
    rows = [r for r in crmmeta.statuses() if crm.matches(_field_getter(r), flt)]
    rows = crm.sort_records(rows, order, lambda r, n: r.get(n.upper())) if order else rows
    return ListPage(rows, total=len(rows))


@method("crm.category.list", "crm")
def category_list(ctx: Ctx, params: dict[str, Any]) -> ListPage:
    entity = _entity(params)
    if crm.ENTITY_TYPES[entity] not in crmmeta.CATEGORY_TYPES:
        raise RestError(
            "ENTITY_TYPE_NOT_SUPPORTED", f"Entity type {entity.upper()} is not supported", 400
        )
    categories = [dict(c) for c in crmmeta.DEAL_CATEGORIES]
    return ListPage({"categories": categories}, total=len(categories))
