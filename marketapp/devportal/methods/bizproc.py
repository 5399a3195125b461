"""``bizproc.robot.*``, ``bizproc.event.send``, ``bizproc.activity.log``, stubs."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from marketapp.devportal import faults, robots
from marketapp.devportal.errors import RestError, access_denied, legacy
from marketapp.devportal.registry import Ctx, method, param
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
