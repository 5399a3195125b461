"""``tasks.task.add``, ``im.notify.system.add``, ``messageservice.*`` and ``batch``."""

from __future__ import annotations

import re
from typing import Any

from marketapp.devportal import batch as batch_runner
from marketapp.devportal.crm import iso
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
    }
    ctx.portal.tasks.append(task)
    return {"task": task}


@method("im.notify.system.add", "im")
def notify_system_add(ctx: Ctx, params: dict[str, Any]) -> int:
    user_id = param(params, "USER_ID", default=None)
    message = str(param(params, "MESSAGE", default="") or "")
    if not user_id:
        raise RestError("USER_ID_EMPTY", "Recipient ID not specified", 400)
    if not message.strip():
        raise RestError("MESSAGE_EMPTY", "Message text is empty", 400)
    nid = len(ctx.portal.notifications) + 1
    ctx.portal.notifications.append(
        {
            "id": nid,
            "user_id": int(user_id),
            "message": message,
            "from_app": ctx.client_key,
            "time": ctx.emu.clock.now(),
        }
    )
    return nid


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
