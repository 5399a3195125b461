"""``tasks.task.*``, ``im.notify.*``, ``messageservice.*`` and ``batch``."""

from __future__ import annotations

import re
from typing import Any

from marketapp.devportal import batch as batch_runner
from marketapp.devportal.crm import camel, iso
from marketapp.devportal.errors import RestError
from marketapp.devportal.registry import Ctx, method, param
from marketapp.devportal.state import Sender

SENDER_CODE = re.compile(r"^[a-zA-Z0-9._-]+$")
SMS_STATUSES = ("queued", "sent", "delivered", "undelivered", "failed")


@method("batch")
def batch(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return batch_runner.run(ctx, params)


@method("tasks.task.add", "task")
def task_add(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    fields = param(params, "fields", default={}) or {}
    fields = {str(k).upper(): v for k, v in fields.items()} if isinstance(fields, dict) else {}
    if not str(fields.get("TITLE") or "").strip():
        raise RestError("ERROR_CORE", "Task title is not specified", 400)
    if not fields.get("RESPONSIBLE_ID"):
        raise RestError("ERROR_CORE", "Responsible person is not specified", 400)
    tid = len(ctx.portal.tasks) + 1
    task = {
        "id": str(tid),
        "title": str(fields["TITLE"]),
        "description": str(fields.get("DESCRIPTION") or ""),
        "responsibleId": str(fields["RESPONSIBLE_ID"]),
        "createdBy": str(ctx.user.id),
        "createdDate": iso(ctx.emu.clock.now()),
        "deadline": fields.get("DEADLINE"),
        "ufCrmTask": fields.get("UF_CRM_TASK") or [],
        "status": "2",
        "auditors": [str(a) for a in fields.get("AUDITORS") or []],
        "accomplices": [str(a) for a in fields.get("ACCOMPLICES") or []],
        "xmlId": str(fields.get("XML_ID") or ""),
    }
    ctx.portal.tasks.append(task)
    return {"task": task}


# Task fields tasks.task.get leaves out unless ``select`` names them (docs).
_TASK_HIDDEN = {"ufCrmTask", "ufTaskWebdavFiles", "ufMailMessage"}
_TASK_STATUSES = {"1", "2", "3", "4", "5", "6", "7"}


def _task_error(code: str, text: str) -> RestError:
    return RestError(code, text, 400)


def _task(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any] | None:
    """The task ``taskId`` names, or None when it does not exist or the user may not see it."""
    raw = param(params, "taskId", default=None)
    if raw in (None, ""):
        raise _task_error(
            "100",
            "CTaskItem All parameters in the constructor must have real class type"
            " (internal error)",
        )
    try:
        tid = int(raw)
    except (TypeError, ValueError):
        raise _task_error("0", "wrong task id") from None
    for task in ctx.portal.tasks:
        if task["id"] == str(tid):
            members = {
                task["createdBy"],
                task["responsibleId"],
                *task.get("auditors", []),
                *task.get("accomplices", []),
            }
            return task if ctx.user.admin or str(ctx.user.id) in members else None
    return None


def _task_view(task: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if select is None:
        return {k: v for k, v in task.items() if k not in _TASK_HIDDEN}
    wanted = set(task) - _TASK_HIDDEN if "*" in select else {"id"}
    wanted |= {camel(str(s).upper()) for s in select if s != "*"}
    return {k: v for k, v in task.items() if k in wanted}


@method("tasks.task.get", "task")
def task_get(ctx: Ctx, params: dict[str, Any]) -> Any:
    select = param(params, "select", default=None)
    if select is not None and not (isinstance(select, list) and select):
        raise _task_error(
            "100",
            f"Invalid value {{{select or ''}}} to match with parameter {{select}}. "
            "Should be value of type array. (internal error)",
        )
    task = _task(ctx, params)
    if task is None:
        return []  # docs: an empty array when the task is missing or out of reach
    return {"task": _task_view(task, select)}


@method("tasks.task.list", "task")
def task_list(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Tasks the user can see, filtered by exact field values (``ID``, ``XML_ID``,
    ``RESPONSIBLE_ID``, ``STATUS``); ``{"tasks": [...]}`` as the docs show, 50 a page."""
    raw = param(params, "filter", default={}) or {}
    wanted = {camel(str(k).upper()): v for k, v in raw.items()} if isinstance(raw, dict) else {}
    select = param(params, "select", default=None)
    rows = []
    for task in ctx.portal.tasks:
        visible = _task(ctx, {"taskId": task["id"]})
        if visible is None:
            continue
        if all(str(task.get(k, "")) == str(v) for k, v in wanted.items()):
            rows.append(_task_view(task, select if isinstance(select, list) and select else None))
    return {"tasks": rows[:50]}


@method("tasks.task.update", "task")
def task_update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    task = _task(ctx, params)
    if task is None or not (
        ctx.user.admin or str(ctx.user.id) in (task["createdBy"], task["responsibleId"])
    ):
        raise _task_error("0", "Action on the task is not allowed (internal error)")
    fields = param(params, "fields", default=None)
    if not isinstance(fields, dict) or not fields:
        raise _task_error("100", "Could not find value for parameter {fields} (internal error)")
    fields = {str(k).upper(): v for k, v in fields.items()}
    responsible = fields.get("RESPONSIBLE_ID")
    if responsible is not None and not _user_exists(ctx, responsible):
        raise _task_error(
            "ERROR_CORE", 'The user specified in the "Responsible" field was not found<br>'
        )
    if "STATUS" in fields and str(fields["STATUS"]) not in _TASK_STATUSES:
        raise _task_error("ERROR_CORE", "Invalid status<br>")
    for key, value in fields.items():
        name = camel(key)
        if name in ("id", "createdBy", "createdDate"):
            continue
        task[name] = _task_value(name, value)
    task["changedBy"] = str(ctx.user.id)
    task["changedDate"] = iso(ctx.emu.clock.now())
    return {"task": _task_view(task, ["*"])}


@method("tasks.task.complete", "task")
def task_complete(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Status 5 (completed); docs: error ``0`` "Action on the task is not allowed" when the task
    is missing, out of reach, or the action is not available (a completed task)."""
    task = _task(ctx, params)
    if task is None or task["status"] == "5":
        raise _task_error("0", "Action on the task is not allowed")
    now = iso(ctx.emu.clock.now())
    task.update(status="5", closedBy=str(ctx.user.id), closedDate=now, changedDate=now)
    task["changedBy"] = task["statusChangedBy"] = str(ctx.user.id)
    return {"task": _task_view(task, ["*"])}


def _task_value(name: str, value: Any) -> Any:
    """Tasks answer ids as strings (``auditors: ["503"]``); CRM bindings stay as given."""
    if isinstance(value, list) and name != "ufCrmTask":
        return [str(v) for v in value]
    return str(value) if isinstance(value, int) else value


def _user_exists(ctx: Ctx, user_id: Any) -> bool:
    try:
        return int(user_id) in ctx.portal.users
    except (TypeError, ValueError):
        return False


def _notify(ctx: Ctx, params: dict[str, Any], kind: str) -> int | bool:
    """im.notify.system.add / personal.add: documented checks, then the portal's inbox."""
    user_id = param(params, "USER_ID", default=None)
    message = str(param(params, "MESSAGE", default="") or "").strip()
    try:
        recipient = int(user_id)
    except (TypeError, ValueError):
        recipient = 0
    if recipient <= 0:
        raise RestError("USER_ID_EMPTY", "User ID can't be empty", 400)
    if not message:
        raise RestError("MESSAGE_EMPTY", "Message can't be empty", 400)
    if recipient not in ctx.portal.users:
        return False  # docs: "if the notification is not created, it may return false"
    nid = len(ctx.portal.notifications) + 1
    ctx.portal.notifications.append(
        {
            "id": nid,
            "kind": kind,
            "user_id": recipient,
            "from_user_id": ctx.user.id,
            "message": message,
            "tag": param(params, "TAG", default=None),
            "from_app": ctx.client_key,
            "time": ctx.emu.clock.now(),
        }
    )
    return nid


@method("im.notify.system.add", "im")
def notify_system_add(ctx: Ctx, params: dict[str, Any]) -> int | bool:
    return _notify(ctx, params, "system")


@method("im.notify.personal.add", "im")
def notify_personal_add(ctx: Ctx, params: dict[str, Any]) -> int | bool:
    return _notify(ctx, params, "personal")


def _sender_error(text: str) -> RestError:
    return RestError("ERROR_SENDER_VALIDATION_FAILURE", text, 400)


@method("messageservice.sender.add", "messageservice", admin=True, app_only=True)
def sender_add(ctx: Ctx, params: dict[str, Any]) -> bool:
    install = ctx.need_install()
    code = str(param(params, "CODE", default="") or "")
    if not code:
        raise _sender_error("Empty sender code!")
    if not SENDER_CODE.match(code):
        raise _sender_error("Wrong sender code!")
    if str(param(params, "TYPE", default="")).upper() != "SMS":
        raise _sender_error("Unknown sender message TYPE!")
    handler = str(param(params, "HANDLER", default="") or "")
    if not re.match(r"^https?://", handler):
        raise _sender_error("Empty sender HANDLER!")
    name = param(params, "NAME", default="")
    if not name:
        raise _sender_error("Empty sender NAME!")
    key = (install.app.client_id, code)
    if key in ctx.portal.senders:
        raise RestError("ERROR_SENDER_ALREADY_INSTALLED", "Sender already installed!", 400)
    description = str(param(params, "DESCRIPTION", default="") or "")
    ctx.portal.senders[key] = Sender(install.app.client_id, code, "SMS", handler, name, description)
    return True


@method("messageservice.sender.list", "messageservice", admin=True, app_only=True)
def sender_list(ctx: Ctx, params: dict[str, Any]) -> list[str]:
    install = ctx.need_install()
    return [s.code for s in ctx.portal.senders.values() if s.client_id == install.app.client_id]


@method("messageservice.sender.delete", "messageservice", admin=True, app_only=True)
def sender_delete(ctx: Ctx, params: dict[str, Any]) -> bool:
    install = ctx.need_install()
    key = (install.app.client_id, str(param(params, "CODE", default="")))
    if ctx.portal.senders.pop(key, None) is None:
        raise RestError("ERROR_SENDER_NOT_FOUND", "Sender not found!", 400)
    return True


@method("messageservice.message.status.update", "messageservice", app_only=True)
def message_status_update(ctx: Ctx, params: dict[str, Any]) -> bool:
    install = ctx.need_install()
    code = str(param(params, "CODE", default=""))
    message_id = str(param(params, "MESSAGE_ID", default=""))
    status = str(param(params, "STATUS", default="")).lower()
    for sms in ctx.portal.sms:
        if (
            sms["message_id"] == message_id
            and sms["code"] == code
            and sms["client_id"] == install.app.client_id
        ):
            if status not in SMS_STATUSES:
                raise RestError("ERROR_MESSAGE_STATUS_INCORRECT", "Incorrect message status!", 400)
            sms["status"] = status
            sms["history"].append({"status": status, "time": ctx.emu.clock.now()})
            return True
    raise RestError("ERROR_MESSAGE_NOT_FOUND", "Message not found!", 400)
