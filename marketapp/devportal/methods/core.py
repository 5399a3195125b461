"""``app.info``, ``user.current``, ``profile``, ``event.*`` and ``placement.*``."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any

from marketapp.devportal import crm
from marketapp.devportal.errors import RestError, app_context_required
from marketapp.devportal.registry import Ctx, ListPage, method, param
from marketapp.devportal.state import EventHandler, PlacementHandler, User

KNOWN_EVENTS = {
    "ONAPPINSTALL",
    "ONAPPUPDATE",
    "ONAPPUNINSTALL",
    "ONAPPPAYMENT",
    "ONAPPTEST",
    *(
        f"ONCRM{e}{a}"
        for e in ("CONTACT", "COMPANY", "DEAL", "LEAD", "ACTIVITY")
        for a in ("ADD", "UPDATE", "DELETE")
    ),
    "ONCRMTIMELINECOMMENTADD",
    "ONTASKADD",
    "ONTASKUPDATE",
    "ONUSERADD",
}
CRM_PLACEMENT = re.compile(
    r"^CRM_(LEAD|DEAL|CONTACT|COMPANY|QUOTE|SMART_INVOICE|DYNAMIC_\d+)_"
    r"(LIST_MENU|LIST_TOOLBAR|DETAIL_TOOLBAR|DETAIL_TAB|DETAIL_ACTIVITY|ROBOT_DESIGNER_TOOLBAR)$"
)
OTHER_PLACEMENTS = {
    "LEFT_MENU",
    "REST_APP_URI",
    "PAGE_BACKGROUND_WORKER",
    "USER_PROFILE_MENU",
    "USER_PROFILE_TOOLBAR",
    "TASK_VIEW_TAB",
    "TASK_VIEW_SIDEBAR",
    "CALENDAR_GRIDVIEW",
    "IM_NAVIGATION",
    "IM_CONTEXT_MENU",
    "IM_TEXTAREA",
    "IM_SIDEBAR",
    "IM_SMILES_SELECTOR",
    "CONTACT_CENTER",
}
# CRM list placements ignore OPTIONS (placement.get shows []).
OPTION_PLACEMENTS = re.compile(r"^(IM_|PAGE_BACKGROUND_WORKER$|CRM_.*_DETAIL_ACTIVITY$)")


@method("app.info")
def app_info(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    install = ctx.install
    if install is None:
        raise app_context_required()
    return {
        "ID": str(zlib.crc32(install.app.client_id.encode()) % 1000),
        "CODE": install.app.code,
        "VERSION": install.version,
        "STATUS": install.status,
        "INSTALLED": install.installed,
        "PAYMENT_EXPIRED": "Y" if install.payment_required else "N",
        "DAYS": None,
        "LANGUAGE_ID": "en",
        "LICENSE": "en_project",
        "LICENSE_TYPE": "project",
        "LICENSE_FAMILY": "project",
    }


def _user(ctx: Ctx) -> dict[str, Any]:
    user = ctx.user
    return {
        "ID": str(user.id),
        "ACTIVE": True,
        "NAME": user.name,
        "LAST_NAME": user.last_name,
        "EMAIL": user.email,
        "PERSONAL_GENDER": "",
        "TIME_ZONE": "",
        "TIME_ZONE_OFFSET": 0,
    }


@method("user.current", ("user", "user_brief", "user_basic"))
def user_current(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return _user(ctx)


# user.get: fields hidden from the ``user_brief`` scope (no contact details; docs, user/index.md).
_CONTACT_FIELDS = {"EMAIL", "PERSONAL_MOBILE", "WORK_PHONE", "PERSONAL_PHONE"}
_USER_PARAMS = {"sort", "order", "filter", "admin_mode", "select", "image_resize", "start"}


def _user_row(user: User) -> dict[str, Any]:
    return {
        "ID": str(user.id),
        "ACTIVE": user.active,
        "NAME": user.name,
        "LAST_NAME": user.last_name,
        "SECOND_NAME": "",
        "EMAIL": user.email,
        "IS_ONLINE": "N",
        "TIME_ZONE": "",
        "PERSONAL_GENDER": "",
        "PERSONAL_BIRTHDAY": "",
        "PERSONAL_MOBILE": "",
        "WORK_PHONE": "",
        "WORK_POSITION": user.position,
        "UF_DEPARTMENT": [1],
        "USER_TYPE": "employee",
    }


def _user_filter(params: dict[str, Any]) -> dict[str, Any]:
    """``FILTER`` plus the old style: user fields passed as top-level parameters."""
    flt = param(params, "FILTER", default=None)
    flt = dict(flt) if isinstance(flt, dict) else {}
    for key, value in params.items():
        if str(key).lower() not in _USER_PARAMS:
            flt.setdefault(str(key), value)
    for key, value in list(flt.items()):
        if crm.split_key(str(key))[1].upper() == "ACTIVE":
            # ACTIVE=true keeps the active ones; Y/N/1/0 work too.
            flt[key] = str(value).lower() in ("true", "y", "1")
    return flt


def _getter(row: dict[str, Any]) -> Callable[[str], Any]:
    return lambda name: row.get(name.upper())


@method("user.get", ("user", "user_brief", "user_basic"))
def user_get(ctx: Ctx, params: dict[str, Any]) -> ListPage:
    """Every user (terminated ones too unless ``ACTIVE``), sorted by ``sort``/``order``, 50 a page.

    Administrators and users see the same list (``ADMIN_MODE`` changes nothing here: every
    emulated user is an employee); ``user_brief`` alone hides contact details.
    """
    flt = _user_filter(params)
    rows = [_user_row(u) for u in ctx.portal.users.values()]
    rows = [r for r in rows if crm.matches(_getter(r), flt)]
    sort = str(param(params, "sort", default="ID") or "ID").upper()
    direction = str(param(params, "order", default="ASC") or "ASC").upper()
    rows = crm.sort_records(rows, {sort: direction}, lambda r, n: r.get(n))
    brief_only = not {"user", "user_basic"} & set(ctx.scopes)
    for row in rows if brief_only else []:
        for name in _CONTACT_FIELDS:
            row.pop(name, None)
    try:
        start = max(int(param(params, "start", default=0) or 0), 0)
    except (TypeError, ValueError):
        start = 0
    end = start + 50
    return ListPage(rows[start:end], total=len(rows), next=end if end < len(rows) else None)


@method("profile")
def profile(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    data = _user(ctx)
    return {
        "ID": data["ID"],
        "ADMIN": ctx.user.admin,
        "NAME": data["NAME"],
        "LAST_NAME": data["LAST_NAME"],
        "PERSONAL_GENDER": "",
        "PERSONAL_PHOTO": "",
        "TIME_ZONE": "",
        "TIME_ZONE_OFFSET": 0,
    }


# -- events ---------------------------------------------------------------------------------------
@method("event.bind", admin=True, app_only=True)
def event_bind(ctx: Ctx, params: dict[str, Any]) -> bool:
    install = ctx.need_install()
    event = str(param(params, "event", default="")).upper()
    handler = str(param(params, "handler", default=""))
    if event not in KNOWN_EVENTS:
        raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found", 400)
    if not re.match(r"^https?://", handler):
        raise RestError("ERROR_HANDLER_URL", "Wrong handler URL", 400)
    client_id = install.app.client_id
    for h in ctx.portal.event_handlers:
        if h.client_id == client_id and h.event == event and h.handler == handler:
            raise RestError("ERROR_HANDLER_ALREADY_EXIST", "Handler already binded", 400)
    auth_type = int(param(params, "auth_type", default=0) or 0)
    event_type = str(param(params, "event_type", default="online") or "online")
    hid = ctx.emu.ids.next("event_handler")
    ctx.portal.event_handlers.append(
        EventHandler(hid, client_id, event, handler, auth_type, event_type)
    )
    return True


@method("event.unbind", admin=True, app_only=True)
def event_unbind(ctx: Ctx, params: dict[str, Any]) -> dict[str, int]:
    install = ctx.need_install()
    event = str(param(params, "event", default="")).upper()
    handler = str(param(params, "handler", default=""))
    if not event:
        raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found", 400)
    keep, count = [], 0
    for h in ctx.portal.event_handlers:
        mine = h.client_id == install.app.client_id and h.event == event
        if mine and (not handler or h.handler == handler):
            count += 1
        else:
            keep.append(h)
    ctx.portal.event_handlers = keep
    return {"count": count}


@method("event.get", admin=True, app_only=True)
def event_get(ctx: Ctx, params: dict[str, Any]) -> list[dict[str, Any]]:
    install = ctx.need_install()
    return [
        {
            "event": h.event,
            "handler": h.handler,
            "auth_type": str(h.auth_type),
            "offline": 1 if h.event_type == "offline" else 0,
        }
        for h in ctx.portal.event_handlers
        if h.client_id == install.app.client_id
    ]


# -- placements -----------------------------------------------------------------------------------
def _known_placement(ctx: Ctx, code: str) -> bool:
    if CRM_PLACEMENT.match(code):
        return "crm" in ctx.scopes
    return code in OTHER_PLACEMENTS


@method("placement.bind", "placement", admin=True, app_only=True, app_only_error="WRONG_AUTH_TYPE")
def placement_bind(ctx: Ctx, params: dict[str, Any]) -> bool:
    install = ctx.need_install()
    code = str(param(params, "PLACEMENT", default="")).upper()
    handler = str(param(params, "HANDLER", default=""))
    if not code:
        raise RestError(
            "ERROR_ARGUMENT", "Argument 'PLACEMENT' is null or empty", 200, argument="PLACEMENT"
        )
    if not _known_placement(ctx, code):
        raise RestError("ERROR_PLACEMENT_NOT_FOUND", "Placement not found", 400)
    if not handler:
        raise RestError("EMPTY_ERROR_HANDLER_URL", "Empty handler URL", 400)
    if not re.match(r"^https?://", handler):
        raise RestError("ERROR_ARGUMENT", "Wrong handler URL", 200, argument="HANDLER")
    client_id = install.app.client_id
    mine = [p for p in ctx.portal.placements if p.client_id == client_id and p.placement == code]
    if code == "PAGE_BACKGROUND_WORKER" and mine:
        raise RestError("ERROR_PLACEMENT_MAX_COUNT", "Placement max count reached", 200)
    if any(p.handler == handler for p in mine):
        raise RestError(
            "ERROR_CORE", "Unable to set placement handler: Handler already binded", 400
        )
    options = param(params, "OPTIONS", default={}) or {}
    lang_all = param(params, "LANG_ALL", default={}) or {}
    ctx.portal.placements.append(
        PlacementHandler(
            id=ctx.emu.ids.next("placement"),
            client_id=client_id,
            placement=code,
            handler=handler,
            title=str(param(params, "TITLE", default="") or _lang_title(lang_all)),
            description=str(param(params, "DESCRIPTION", default="")),
            group_name=str(param(params, "GROUP_NAME", default="")),
            lang_all=lang_all if isinstance(lang_all, dict) else {},
            options=options if OPTION_PLACEMENTS.match(code) and isinstance(options, dict) else {},
            user_id=int(param(params, "USER_ID", default=0) or 0),
        )
    )
    return True


def _lang_title(lang_all: Any) -> str:
    if isinstance(lang_all, dict):
        for lang in ("en", *lang_all):
            entry = lang_all.get(lang)
            if isinstance(entry, dict) and entry.get("TITLE"):
                return str(entry["TITLE"])
    return ""


@method(
    "placement.unbind", "placement", admin=True, app_only=True, app_only_error="WRONG_AUTH_TYPE"
)
def placement_unbind(ctx: Ctx, params: dict[str, Any]) -> dict[str, int]:
    install = ctx.need_install()
    code = str(param(params, "PLACEMENT", default="")).upper()
    handler = str(param(params, "HANDLER", default=""))
    if not code:
        raise RestError(
            "ERROR_ARGUMENT", "Argument 'PLACEMENT' is null or empty", 200, argument="PLACEMENT"
        )
    keep, count = [], 0
    for p in ctx.portal.placements:
        if (
            p.client_id == install.app.client_id
            and p.placement == code
            and (not handler or p.handler == handler)
        ):
            count += 1
        else:
            keep.append(p)
    ctx.portal.placements = keep
    return {"count": count}


@method("placement.get", "placement", admin=True, app_only=True, app_only_error="WRONG_AUTH_TYPE")
def placement_get(ctx: Ctx, params: dict[str, Any]) -> list[dict[str, Any]]:
    install = ctx.need_install()
    return [
        {
            "placement": p.placement,
            "userId": p.user_id,
            "handler": p.handler,
            "options": p.options or [],
            "title": p.title,
            "description": p.description,
            "groupName": p.group_name,
            "langAll": p.lang_all or [],
        }
        for p in ctx.portal.placements
        if p.client_id == install.app.client_id
    ]


@method("placement.list", "placement", app_only=True, app_only_error="WRONG_AUTH_TYPE")
def placement_list(ctx: Ctx, params: dict[str, Any]) -> list[str]:
    crm = [
        f"CRM_{e}_{k}"
        for e in ("LEAD", "DEAL", "CONTACT", "COMPANY", "QUOTE", "SMART_INVOICE")
        for k in ("LIST_MENU", "LIST_TOOLBAR", "DETAIL_TOOLBAR", "DETAIL_TAB", "DETAIL_ACTIVITY")
    ]
    return sorted(OTHER_PLACEMENTS) + (crm if "crm" in ctx.scopes else [])
