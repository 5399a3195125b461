"""The CRM shell on each portal host: lists, record pages, app page, slider, BX24.js bridge.

The shell acts as "the Bitrix24 UI" for people and browser tests: placements open in an iframe
slider through the auto-submitting §1.3 form; pages talk to it through ``/bx24.js`` (postMessage).
The current user is ``?user=N`` (default 1, the admin).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request

from marketapp.devportal import crm, lifecycle, robots
from marketapp.devportal.state import Emulator, Portal

bp = Blueprint("devportal_shell", __name__, template_folder="templates")
STATIC = Path(__file__).parent / "static"


def _ctx() -> tuple[Emulator, Portal]:
    emu: Emulator = current_app.extensions["devportal"]
    portal = emu.portal_by_host(request.host)
    if portal is None:
        abort(404)
    return emu, portal


def _user() -> int:
    return int(request.args.get("user", 1))


def _items(emu: Emulator, portal: Portal, code: str) -> list[dict[str, Any]]:
    """Placement handlers for ``code`` of installed apps only (hidden until installFinish)."""
    out = []
    for p in portal.placements:
        install = portal.installs.get(p.client_id)
        if p.placement == code and install is not None and install.installed:
            out.append(
                {
                    "id": p.id,
                    "client_id": p.client_id,
                    "title": p.title or install.app.code,
                    "placement": code,
                }
            )
    return out


@bp.get("/")
def home() -> Response:
    _ctx()
    return redirect(f"/crm/contact/list/?user={_user()}")  # type: ignore[return-value]


@bp.get("/crm/<entity>/list/")
def entity_list(entity: str) -> str:
    emu, portal = _ctx()
    if entity not in crm.ENTITY_TYPES:
        abort(404)
    with emu.lock:
        rows = [crm.legacy_view(entity, r) for r in list(portal.crm.records[entity].values())[:50]]
        up = entity.upper()
        return render_template(
            "shell_list.html",
            entity=entity,
            rows=rows,
            user=_user(),
            entities=list(crm.ENTITY_TYPES),
            toolbar=_items(emu, portal, f"CRM_{up}_LIST_TOOLBAR"),
            menu=_items(emu, portal, f"CRM_{up}_LIST_MENU"),
            apps=_apps(portal),
            domain=emu.portal_domain(portal),
        )


@bp.get("/crm/<entity>/details/<int:rid>/")
def entity_details(entity: str, rid: int) -> str:
    emu, portal = _ctx()
    with emu.lock:
        record = portal.crm.records.get(entity, {}).get(rid)
        if record is None:
            abort(404)
        robot_list = [
            {
                "client_id": r.client_id,
                "code": r.code,
                "settings": str(r.fields.get("USE_PLACEMENT", "N")).upper() == "Y",
            }
            for r in portal.robots.values()
        ]
        return render_template(
            "shell_details.html",
            entity=entity,
            record=crm.legacy_view(entity, record),
            user=_user(),
            toolbar=_items(emu, portal, f"CRM_{entity.upper()}_DETAIL_TOOLBAR"),
            robots=robot_list,
            apps=_apps(portal),
            entities=list(crm.ENTITY_TYPES),
            domain=emu.portal_domain(portal),
        )


def _apps(portal: Portal) -> list[dict[str, Any]]:
    return [
        {"client_id": cid, "code": i.app.code, "installed": i.installed}
        for cid, i in portal.installs.items()
    ]


@bp.get("/marketplace/app/<client_id>/")
def app_page(client_id: str) -> str:
    emu, portal = _ctx()
    return render_template(
        "shell_app.html",
        client_id=client_id,
        user=_user(),
        apps=_apps(portal),
        entities=list(crm.ENTITY_TYPES),
        domain=emu.portal_domain(portal),
    )


@bp.get("/_shell/frame")
def frame() -> Response:
    """The slider content: the auto-submitting page POST into the app (§1.3)."""
    emu, portal = _ctx()
    args = request.args
    options = json.loads(args.get("options") or "{}")
    handler = None
    if args.get("placement_id"):
        handler = next(
            (p.handler for p in portal.placements if str(p.id) == args["placement_id"]), None
        )
    try:
        if args.get("robot"):
            form = lifecycle.robot_settings_form(
                emu, portal, args["client_id"], args["robot"], _user(), args.get("document", "")
            )
        else:
            form = lifecycle.open_placement(
                emu,
                portal,
                args["client_id"],
                args.get("placement", "DEFAULT"),
                _user(),
                options,
                handler,
            )
    except (PermissionError, LookupError, KeyError) as exc:
        return Response(f"<!doctype html><p class='error'>{exc}</p>", mimetype="text/html")
    return Response(form["html"], mimetype="text/html")


@bp.get("/_shell/sid/<sid>")
def sid_info(sid: str) -> Response:
    """What BX24.js learns at init for a rendered page: placement, options and auth."""
    emu, portal = _ctx()
    with emu.lock:
        info = emu.app_sids.get(sid)
        if info is None or info["member_id"] != portal.member_id:
            abort(404)
        install = portal.installs.get(info["client_id"])
        saved = (
            install.robot_settings.get(str(info["options"].get("code", ""))) if install else None
        )
        options = dict(info["options"])
        if saved:
            options["current_values"] = saved
        body = {
            "placement": info["placement"],
            "options": options,
            "client_id": info["client_id"],
            "user_id": info["user_id"],
            "auth": {
                "access_token": info["access_token"],
                "refresh_token": info["refresh_token"],
                "expires_in": info["expires_in"],
                "domain": emu.portal_domain(portal),
                "member_id": portal.member_id,
            },
        }
    return Response(json.dumps(body), mimetype="application/json")


@bp.post("/_shell/ui")
def ui_event() -> Response:
    """BX24 commands the shell records (and acts on: installFinish, setPropertyValue)."""
    emu, portal = _ctx()
    data = request.get_json(force=True)
    info = emu.app_sids.get(str(data.get("app_sid")))
    if info is None:
        abort(404)
    with emu.lock:
        emu.ui_events.append(
            {
                "member_id": portal.member_id,
                "client_id": info["client_id"],
                "placement": info["placement"],
                "command": data.get("command"),
                "params": data.get("params"),
                "time": emu.clock.now(),
            }
        )
    if data.get("command") == "installFinish":
        lifecycle.install_finish(emu, portal, info["client_id"], info["user_id"])
    if data.get("command") == "setPropertyValue":
        install = emu.install_of(portal, info["client_id"])
        code = str(info["options"].get("code", ""))
        with emu.lock:
            install.robot_settings.setdefault(code, {}).update(data.get("params") or {})
    return Response("{}", mimetype="application/json")


@bp.post("/_shell/run-robot")
def run_robot() -> Response:
    emu, portal = _ctx()
    data = request.get_json(force=True)
    properties = data.get("properties")
    if properties is None:  # as the automation rule would: the values saved in its settings
        with emu.lock:
            saved = emu.install_of(portal, data["client_id"]).robot_settings.get(data["code"])
            properties = dict(saved) if saved else None
    wf = robots.run_robot(
        emu, portal, data["client_id"], data["code"], data["document_id"], properties
    )
    return Response(json.dumps({"workflow_id": wf.id}), mimetype="application/json")


@bp.get("/_shell/select-crm")
def select_crm_data() -> Response:
    """Records for the selectCRM dialog, ids prefixed as BX24.selectCRM returns them."""
    emu, portal = _ctx()
    prefixes = {"lead": "L", "contact": "C", "company": "CO", "deal": "D"}
    out: dict[str, list[dict[str, str]]] = {}
    with emu.lock:
        for entity, prefix in prefixes.items():
            out[entity] = [
                {"id": f"{prefix}_{r['ID']}", "title": _title(r)}
                for r in list(portal.crm.records[entity].values())[:50]
            ]
    return Response(json.dumps(out), mimetype="application/json")


@bp.get("/_shell/select-users")
def select_users_data() -> Response:
    """Active employees for BX24.selectUser(s), in the shape the dialog answers with."""
    emu, portal = _ctx()
    with emu.lock:
        users = [
            {
                "id": str(u.id),
                "name": f"{u.name} {u.last_name}".strip(),
                "photo": "",
                "position": u.position,
                "url": f"/company/personal/user/{u.id}/",
                "sub": False,
                "supervisor": False,
            }
            for u in portal.users.values()
            if u.active
        ]
    return Response(json.dumps(users), mimetype="application/json")


def _title(record: dict[str, Any]) -> str:
    name = " ".join(str(record.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
    return str(record.get("TITLE") or name)


@bp.get("/bx24.js")
def bx24_js() -> Response:
    return Response(
        (STATIC / "bx24.js").read_text(),
        mimetype="application/javascript",
        headers={"Access-Control-Allow-Origin": "*"},
    )


@bp.get("/_shell/shell.js")
def shell_js() -> Response:
    return Response((STATIC / "shell.js").read_text(), mimetype="application/javascript")
