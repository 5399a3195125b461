"""``bizproc.robot.*``, ``bizproc.event.send``, ``bizproc.activity.log``, stubs."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from marketapp.devportal import faults, robots
from marketapp.devportal.crm import iso
from marketapp.devportal.errors import RestError, access_denied, legacy
from marketapp.devportal.registry import Ctx, ListPage, method, param
from marketapp.devportal.state import Robot, Workflow

CODE = re.compile(r"^[a-zA-Z0-9._-]+$")
PROP_KEY = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")


def _invalid(text: str) -> RestError:
    return RestError("ERROR_ACTIVITY_VALIDATION_FAILURE", text, 400)


def _check_handler(ctx: Ctx, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RestError("ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol", 400)
    app_host = urlsplit(ctx.need_install().app.handler_url).netloc
    if parts.netloc != app_host:
        raise RestError("ERROR_WRONG_HANDLER_URL", "Wrong handler URL", 400)


def _check_properties(value: Any) -> None:
    if value in (None, "", []):
        return
    if not isinstance(value, dict):
        raise _invalid("Wrong properties array!")
    for key, prop in value.items():
        if not PROP_KEY.match(str(key)):
            raise _invalid(f"Wrong property key {key}!")
        if not isinstance(prop, dict) or not prop.get("Name"):
            raise _invalid(f"Empty property NAME {key}!")


def _validate(ctx: Ctx, fields: dict[str, Any]) -> None:
    """§4.1 validation, in the server's order."""
    if not fields:
        raise _invalid("Empty data!")
    code = str(fields.get("CODE") or "")
    if not code:
        raise _invalid("Empty activity code!")
    if not CODE.match(code):
        raise _invalid("Wrong activity code!")
    _check_handler(ctx, str(fields.get("HANDLER") or ""))
    if not fields.get("NAME"):
        raise _invalid("Empty activity NAME!")
    _check_properties(fields.get("PROPERTIES"))
    _check_properties(fields.get("RETURN_PROPERTIES"))
    flt = fields.get("FILTER")
    if flt not in (None, "", []) and (
        not isinstance(flt, dict) or not set(flt) <= {"INCLUDE", "EXCLUDE"}
    ):
        raise _invalid("Wrong activity FILTER!")
    doc_type = fields.get("DOCUMENT_TYPE")
    if doc_type not in (None, "", []) and len(_as_list(doc_type)) != 3:
        raise _invalid("Wrong activity DOCUMENT_TYPE!")
    if str(fields.get("USE_PLACEMENT", "N")).upper() == "Y":
        if not fields.get("PLACEMENT_HANDLER"):
            raise _invalid("Empty PLACEMENT_HANDLER!")
        _check_handler(ctx, str(fields["PLACEMENT_HANDLER"]))


def _as_list(value: Any) -> list[Any]:
    return list(value.values()) if isinstance(value, dict) else list(value)


def _upper_keys(params: dict[str, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


@method("bizproc.robot.add", "bizproc", admin=True, app_only=True)
def robot_add(ctx: Ctx, params: dict[str, Any]) -> bool:
    install = ctx.need_install()
    fields = _upper_keys(params)
    _validate(ctx, fields)
    key = (install.app.client_id, str(fields["CODE"]))
    if key in ctx.portal.robots:
        raise RestError(
            "ERROR_ACTIVITY_ALREADY_INSTALLED",
            "Activity or Automation rule already installed!",
            400,
        )
    ctx.portal.robots[key] = Robot(install.app.client_id, str(fields["CODE"]), fields)
    return True


def _robot(ctx: Ctx, params: dict[str, Any]) -> Robot:
    install = ctx.need_install()
    code = str(param(params, "CODE", default=""))
    robot = ctx.portal.robots.get((install.app.client_id, code))
    if robot is None:
        raise RestError("ERROR_ACTIVITY_NOT_FOUND", "Activity or Automation Rule not found!", 400)
    return robot


@method("bizproc.robot.update", "bizproc", admin=True, app_only=True)
def robot_update(ctx: Ctx, params: dict[str, Any]) -> bool:
    robot = _robot(ctx, params)
    changes = _upper_keys(param(params, "FIELDS", default={}) or {})
    changes.pop("CODE", None)
    if not changes:
        raise _invalid("No fields to update")
    merged = {**robot.fields, **changes}
    _validate(ctx, merged)
    robot.fields = merged
    return True


@method("bizproc.robot.delete", "bizproc", admin=True, app_only=True)
def robot_delete(ctx: Ctx, params: dict[str, Any]) -> bool:
    robot = _robot(ctx, params)
    del ctx.portal.robots[(robot.client_id, robot.code)]
    return True


@method("bizproc.robot.list", "bizproc", admin=True, app_only=True)
def robot_list(ctx: Ctx, params: dict[str, Any]) -> list[str]:
    install = ctx.need_install()
    return [r.code for r in ctx.portal.robots.values() if r.client_id == install.app.client_id]


def _workflow(ctx: Ctx, params: dict[str, Any]) -> Workflow:
    robots.expire_waits(ctx.emu)
    token = str(param(params, "EVENT_TOKEN", default="") or "")
    wf = robots.find_by_token(ctx.emu, token) if token else None
    if wf is None or wf.member_id != ctx.portal.member_id:
        raise access_denied()
    if wf.finished:
        raise RestError(404, "The business process is not found.", 400)
    if faults.bizproc_hang(ctx.emu, ctx.portal, "bizproc.event.send"):
        raise RestError(423, "The workflow is hung or being executed", 400)
    return wf


@method("bizproc.event.send", "bizproc")
def event_send(ctx: Ctx, params: dict[str, Any]) -> bool:
    sent_for = robots.find_by_token(ctx.emu, str(param(params, "EVENT_TOKEN", default="") or ""))
    if sent_for is not None:
        sent_for.sends += 1
    wf = _workflow(ctx, params)
    if wf.state != "waiting":
        return True  # a repeated send changes nothing while the workflow exists
    values = param(params, "RETURN_VALUES", default={}) or {}
    message = str(param(params, "LOG_MESSAGE", default="") or "")
    robots.accept_response(ctx.emu, wf, values if isinstance(values, dict) else {}, message)
    return True


@method("bizproc.activity.log", "bizproc")
def activity_log(ctx: Ctx, params: dict[str, Any]) -> bool:
    message = str(param(params, "LOG_MESSAGE", default="") or "")
    wf = _workflow(ctx, params)
    if not message:
        raise RestError("ERROR_EMPTY_LOG_MESSAGE", "Empty log message!", 400)
    wf.log.append({"time": ctx.emu.clock.now(), "message": message})
    return True


@method("bizproc.workflow.start", "bizproc", admin=True)
def workflow_start(ctx: Ctx, params: dict[str, Any]) -> str:
    template = param(params, "TEMPLATE_ID", default="")
    if not template:
        raise RestError("ERROR_WRONG_WORKFLOW_ID", "Empty TEMPLATE_ID", 400)
    doc = param(params, "DOCUMENT_ID", default=None)
    if not doc or len(_as_list(doc)) != 3:
        raise legacy("Wrong DOCUMENT_ID!")
    raise RestError("ERROR_WRONG_WORKFLOW_ID", "Template not found", 400)


# -- bizproc.workflow.instances -------------------------------------------------------------------
# b24restdocs api-reference/bizproc/bizproc-workflow-instances.md: admins only, running workflows
# (finished ones leave the list), 50 per page. Unknown fields and operators (``=`` included) are
# ignored, not refused, the way the server builds its query.
INSTANCE_FIELDS = (
    "ID",
    "MODIFIED",
    "OWNED_UNTIL",
    "MODULE_ID",
    "ENTITY",
    "DOCUMENT_ID",
    "STARTED",
    "STARTED_BY",
    "TEMPLATE_ID",
)
INSTANCE_DATES = ("MODIFIED", "OWNED_UNTIL", "STARTED")
FILTER_KEY = re.compile(r"^([^a-zA-Z]*)(.*)$")
PAGE = 50


def _instance_row(wf: Workflow) -> dict[str, Any]:
    modified = max([wf.started_at, *(float(e["time"]) for e in wf.log)])
    return {
        "ID": wf.id,
        "MODIFIED": modified,
        "OWNED_UNTIL": None,  # set only while a hit executes it
        "MODULE_ID": wf.document_id[0],
        "ENTITY": wf.document_id[1],
        "DOCUMENT_ID": wf.document_id[2],
        "STARTED": wf.started_at,
        "STARTED_BY": str(wf.started_by),
        "TEMPLATE_ID": str(wf.template_id),
    }


def _comparable(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field in INSTANCE_DATES:
        if isinstance(value, int | float):
            return float(value)
        try:
            return datetime.fromisoformat(str(value)).timestamp()
        except ValueError:
            return None
    text = str(value)
    return (
        int(text) if field in ("STARTED_BY", "TEMPLATE_ID") and text.lstrip("-").isdigit() else text
    )


def _matches(row: dict[str, Any], op: str, field: str, value: Any) -> bool:
    have = _comparable(field, row[field])
    if op in ("", "!"):
        wanted = (
            [_comparable(field, v) for v in _as_list(value)]
            if isinstance(value, list | dict)
            else [_comparable(field, value)]
        )
        return (have in wanted) == (op == "")
    want = _comparable(field, value)
    if have is None or want is None or type(have) is not type(want):
        return False
    results: dict[str, bool] = {
        "<": have < want,
        "<=": have <= want,
        ">": have > want,
        ">=": have >= want,
    }
    return results[op]


def _instance_filter(value: Any) -> list[tuple[str, str, Any]]:
    rules: list[tuple[str, str, Any]] = []
    for key, wanted in value.items() if isinstance(value, dict) else []:
        match = FILTER_KEY.match(str(key))
        op, field = (match.group(1), match.group(2)) if match else ("", "")  # case as sent
        if op in ("", "!", "<", "<=", ">", ">=") and field in INSTANCE_FIELDS:
            rules.append((op, field, wanted))
    return rules


def _instance_order(rows: list[dict[str, Any]], value: Any) -> None:
    order = [
        (str(k).upper(), str(v).upper() == "DESC")
        for k, v in (value.items() if isinstance(value, dict) else [])
        if str(k).upper() in INSTANCE_FIELDS
    ] or [("MODIFIED", True)]
    for field, desc in reversed(order):  # stable sorts: the first key decides last
        rows.sort(key=functools.partial(_sort_key, field), reverse=desc)


def _sort_key(field: str, row: dict[str, Any]) -> tuple[bool, Any]:
    """Empty values first (ascending); the value is compared only between non-empty ones."""
    have = _comparable(field, row[field])
    return (have is not None, have if have is not None else 0)


@method("bizproc.workflow.instance.list", "bizproc", admin=True)  # the old name, an alias
@method("bizproc.workflow.instances", "bizproc", admin=True)
def workflow_instances(ctx: Ctx, params: dict[str, Any]) -> ListPage:
    rows = [_instance_row(wf) for wf in robots.running(ctx.emu, ctx.portal)]
    rules = _instance_filter(param(params, "FILTER", default={}))
    rows = [r for r in rows if all(_matches(r, op, f, v) for op, f, v in rules)]
    _instance_order(rows, param(params, "ORDER", default={}))
    wanted = param(params, "SELECT", default=[])
    names = _as_list(wanted) if isinstance(wanted, list | dict) else []
    select = [f for f in dict.fromkeys(str(x).upper() for x in names) if f in INSTANCE_FIELDS]
    select = select or ["ID", "MODIFIED", "OWNED_UNTIL"]
    start = max(_int(param(params, "start", default=0)), 0)
    page = [
        {f: iso(r[f]) if f in INSTANCE_DATES and r[f] is not None else r[f] for f in select}
        for r in rows[start : start + PAGE]
    ]
    after = start + PAGE
    return ListPage(page, total=len(rows), next=after if after < len(rows) else None)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# -- automation triggers (stubs) ------------------------------------------------------------------
def _triggers(ctx: Ctx) -> dict[str, Any]:
    install = ctx.need_install()
    triggers: dict[str, Any] = install.options.setdefault("__triggers__", {})
    return triggers


@method("crm.automation.trigger.add", "crm", admin=True, app_only=True)
def trigger_add(ctx: Ctx, params: dict[str, Any]) -> bool:
    code, name = param(params, "CODE", default=""), param(params, "NAME", default="")
    if not code or not name:
        raise RestError("ERROR_ARGUMENT", "Empty trigger CODE or NAME", 400)
    _triggers(ctx)[str(code)] = {"CODE": str(code), "NAME": str(name)}
    return True


@method("crm.automation.trigger.list", "crm", admin=True, app_only=True)
def trigger_list(ctx: Ctx, params: dict[str, Any]) -> list[dict[str, Any]]:
    return list(_triggers(ctx).values())


@method("crm.automation.trigger.delete", "crm", admin=True, app_only=True)
def trigger_delete(ctx: Ctx, params: dict[str, Any]) -> bool:
    if _triggers(ctx).pop(str(param(params, "CODE", default="")), None) is None:
        raise RestError("ERROR_TRIGGER_NOT_FOUND", "Trigger not found", 400)
    return True


@method("crm.automation.trigger.execute", "crm", admin=True, app_only=True)
def trigger_execute(ctx: Ctx, params: dict[str, Any]) -> bool:
    if str(param(params, "CODE", default="")) not in _triggers(ctx):
        raise RestError("ERROR_TRIGGER_NOT_FOUND", "Trigger not found", 400)
    if str(param(params, "OWNER_TYPE_ID", default="")) == "3":
        raise RestError("ERROR_ARGUMENT", "Contacts have no automation triggers", 400)
    return True
