"""Install, installFinish, update, uninstall, page POSTs and event dispatch (§1, §9.2-9.7)."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import urlencode

from marketapp.devportal.state import Emulator, EventHandler, Install, Portal

LIFECYCLE_EVENTS = ("ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL")


def install_app(emu: Emulator, portal: Portal, client_id: str, user_id: int = 1) -> dict[str, Any]:
    """An admin installs the app. UI apps get the installer form, no-UI apps are done."""
    with emu.lock:
        app = emu.apps[client_id]
        if not portal.users[user_id].admin:
            raise PermissionError("only an administrator installs apps")
        install = Install(app=app, application_token=emu.hex32(), version=app.version)
        kept = portal.retained.pop(client_id, None)
        if kept:
            install.options, install.data_store = kept["options"], kept["data_store"]
        portal.installs[client_id] = install
        if app.install_event_url:
            handler = EventHandler(
                emu.ids.next("event_handler"), client_id, "ONAPPINSTALL", app.install_event_url
            )
            portal.event_handlers.append(handler)
            install.installed = True
            _lifecycle_event(emu, portal, install, "ONAPPINSTALL", _install_data(install), user_id)
            return {"installed": True, "application_token": install.application_token}
        form = page_form(
            emu, portal, install, user_id, app.installer_url or app.handler_url, "DEFAULT"
        )
        return {"installed": False, "application_token": install.application_token, "form": form}


def install_finish(emu: Emulator, portal: Portal, client_id: str, user_id: int = 1) -> bool:
    """``BX24.installFinish()``: set installed, deliver ONAPPINSTALL; ``False`` if done."""
    with emu.lock:
        install = emu.install_of(portal, client_id)
        if install.installed:
            return False
        install.installed = True
        _lifecycle_event(emu, portal, install, "ONAPPINSTALL", _install_data(install), user_id)
        return True


def update_app(
    emu: Emulator,
    portal: Portal,
    client_id: str,
    version: int,
    new_token: bool = False,
    user_id: int = 1,
) -> dict[str, Any]:
    """Install a new version: ONAPPUPDATE, then the app's event handlers and robots are removed."""
    with emu.lock:
        install = emu.install_of(portal, client_id)
        previous = install.version
        install.version = version
        emu.apps[client_id].version = version
        if new_token:
            install.application_token = emu.hex32()
        data = {"VERSION": str(version), "PREVIOUS_VERSION": str(previous), "LANGUAGE_ID": "en"}
        _lifecycle_event(emu, portal, install, "ONAPPUPDATE", data, user_id)
        portal.event_handlers = [h for h in portal.event_handlers if h.client_id != client_id]
        portal.robots = {k: r for k, r in portal.robots.items() if r.client_id != client_id}
        return {
            "version": version,
            "previous_version": previous,
            "application_token": install.application_token,
        }


def uninstall_app(emu: Emulator, portal: Portal, client_id: str, clean: bool = False) -> None:
    """Revoke every token, then ONAPPUNINSTALL without tokens; drop handlers, placements, robots.

    The docs: "the application has already been removed from Bitrix24" when the event arrives,
    so a REST call or a refresh with the app's stored tokens fails from then on.
    """
    with emu.lock:
        install = emu.install_of(portal, client_id)
        emu.revoke_tokens(portal, client_id)
        data = {"LANGUAGE_ID": "en", "CLEAN": "1" if clean else "0"}
        _lifecycle_event(emu, portal, install, "ONAPPUNINSTALL", data, None)
        portal.event_handlers = [h for h in portal.event_handlers if h.client_id != client_id]
        portal.placements = [p for p in portal.placements if p.client_id != client_id]
        portal.robots = {k: r for k, r in portal.robots.items() if r.client_id != client_id}
        portal.senders = {k: s for k, s in portal.senders.items() if s.client_id != client_id}
        if not clean:
            portal.retained[client_id] = {
                "options": install.options,
                "data_store": install.data_store,
            }
        del portal.installs[client_id]


def _install_data(install: Install) -> dict[str, Any]:
    return {"VERSION": str(install.version), "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}


def _lifecycle_event(
    emu: Emulator,
    portal: Portal,
    install: Install,
    event: str,
    data: dict[str, Any],
    user_id: int | None,
) -> None:
    # Lifecycle events ignore "installed": ONAPPINSTALL is what announces it.
    for handler in portal.event_handlers:
        if handler.client_id == install.app.client_id and handler.event == event:
            owner = None if event == "ONAPPUNINSTALL" else (handler.auth_type or user_id)
            _deliver(emu, portal, install, handler, data, owner)


def dispatch_event(
    emu: Emulator, portal: Portal, event: str, data: dict[str, Any], user_id: int | None
) -> int:
    """Deliver ``event`` to every installed app's bound handlers; returns the number queued."""
    count = 0
    with emu.lock:
        for handler in list(portal.event_handlers):
            install = portal.installs.get(handler.client_id)
            if handler.event != event.upper() or install is None or not install.installed:
                continue
            if install.payment_required:
                continue  # events stop when the paid period has ended (observed)
            _deliver(emu, portal, install, handler, data, handler.auth_type or user_id)
            count += 1
    return count


def _deliver(
    emu: Emulator,
    portal: Portal,
    install: Install,
    handler: EventHandler,
    data: dict[str, Any],
    user_id: int | None,
) -> None:
    payload = {
        "event": handler.event,
        "event_handler_id": str(handler.id),
        "data": data,
        "ts": str(int(emu.clock.now())),
        "auth": emu.auth_block(portal, install, user_id),
    }
    meta = {
        "member_id": portal.member_id,
        "client_id": install.app.client_id,
        "event": handler.event,
    }
    emu.deliveries.enqueue("event", handler.handler, payload, meta)


def page_form(
    emu: Emulator,
    portal: Portal,
    install: Install,
    user_id: int,
    handler_url: str,
    placement: str,
    options: dict[str, Any] | None = None,
    target: str = "_self",
) -> dict[str, Any]:
    """The §1.3 page POST: query ``DOMAIN, PROTOCOL, LANG, APP_SID`` and the body fields."""
    with emu.lock:
        token = emu.issue_token(portal, install.app.client_id, user_id)
        app_sid = emu.hex32()
        user = portal.users[user_id]
        query = {
            "DOMAIN": emu.portal_domain(portal),
            "PROTOCOL": "1" if emu.config.scheme == "https" else "0",
            "LANG": user.lang,
            "APP_SID": app_sid,
        }
        fields = {
            "AUTH_ID": token.access_token,
            "AUTH_EXPIRES": str(emu.config.token_lifetime),
            "REFRESH_ID": token.refresh_token,
            "SERVER_ENDPOINT": emu.server_endpoint,
            "APPLICATION_TOKEN": install.application_token,
            "APPLICATION_SCOPE": ",".join(install.app.scopes),
            "member_id": portal.member_id,
            "status": install.status,
            "PLACEMENT": placement,
        }
        if options:
            fields["PLACEMENT_OPTIONS"] = json.dumps(options, ensure_ascii=False)
        emu.app_sids[app_sid] = {
            "member_id": portal.member_id,
            "client_id": install.app.client_id,
            "user_id": user_id,
            "placement": placement,
            "options": options or {},
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "expires_in": emu.config.token_lifetime,
        }
    sep = "&" if "?" in handler_url else "?"
    action = f"{handler_url}{sep}{urlencode(query)}"
    return {
        "action": action,
        "query": query,
        "fields": fields,
        "app_sid": app_sid,
        "html": form_html(action, fields, target),
    }


def form_html(action: str, fields: dict[str, str], target: str = "_self") -> str:
    """An HTML page with a hidden form that submits itself at once, as Bitrix24 renders it."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Opening…</title></head><body>'
        f'<form id="b24form" method="post" action="{html.escape(action)}" '
        f'target="{html.escape(target)}">'
        f"{inputs}</form><script>document.getElementById('b24form').submit();</script></body></html>"
    )


def open_placement(
    emu: Emulator,
    portal: Portal,
    client_id: str,
    placement: str,
    user_id: int,
    options: dict[str, Any] | None = None,
    handler: str | None = None,
    target: str = "_self",
) -> dict[str, Any]:
    """A user opens a placement (or the app, ``DEFAULT``): the page form, or why it cannot open."""
    with emu.lock:
        install = emu.install_of(portal, client_id)
        if placement == "DEFAULT":
            if install.installed:
                url = install.app.handler_url
            elif portal.users[user_id].admin:
                url = install.app.installer_url or install.app.handler_url
            else:
                raise PermissionError(
                    "The application is not fully installed. Contact your administrator."
                )
        else:
            if not install.installed:
                raise LookupError("placements are hidden until the install is finished")
            bound = [
                p
                for p in portal.placements
                if p.client_id == client_id and p.placement == placement
            ]
            if handler:
                bound = [p for p in bound if p.handler == handler]
            if not bound:
                raise LookupError(f"no handler bound for {placement}")
            url = bound[0].handler
        return page_form(emu, portal, install, user_id, url, placement, options, target)


def robot_settings_form(
    emu: Emulator, portal: Portal, client_id: str, code: str, user_id: int, document: str
) -> dict[str, Any]:
    """Open a robot's settings in the app (``USE_PLACEMENT=Y``, doc §5.4) with saved values."""
    with emu.lock:
        install = emu.install_of(portal, client_id)
        robot = portal.robots.get((client_id, code))
        fields = robot.fields if robot else {}
        if str(fields.get("USE_PLACEMENT", "N")).upper() != "Y":
            raise LookupError(f"robot {code!r} has no settings placement")
        entity = document.rsplit("_", 1)[0].upper()
        options = {
            "code": code,
            "activity_name": f"A{emu.rng.randint(10000, 99999)}_{emu.rng.randint(1, 9999)}",
            "properties": [
                {"Id": key, **prop} for key, prop in (fields.get("PROPERTIES") or {}).items()
            ],
            "current_values": dict(install.robot_settings.get(code, {})),
            "document_type": ["crm", f"CCrmDocument{entity.capitalize()}", entity],
        }
        handler = str(fields["PLACEMENT_HANDLER"])
    # Bitrix24 does not document the PLACEMENT value here; the app routes by URL and ``code``.
    return page_form(emu, portal, install, user_id, handler, "DEFAULT", options)
