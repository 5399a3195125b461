"""The inspection and control API under ``/_emulator/`` (JSON; not part of the Bitrix24 surface)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, current_app, request

from marketapp.devportal import lifecycle, robots, seed, sms
from marketapp.devportal.clock import FakeClock
from marketapp.devportal.rest import json_response
from marketapp.devportal.state import Emulator, Portal, User, Webhook

bp = Blueprint("devportal_inspect", __name__, url_prefix="/_emulator")


def _emu() -> Emulator:
    emu: Emulator = current_app.extensions["devportal"]
    return emu


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if isinstance(data, dict):
        return data
    return {k: v for k, v in request.values.items()}


def _portal(member: str) -> Portal:
    return _emu().portal(member)


@bp.errorhandler(KeyError)
@bp.errorhandler(LookupError)
def _not_found(exc: Exception) -> Response:
    return json_response({"error": "not_found", "detail": str(exc)}, 404)


@bp.errorhandler(PermissionError)
@bp.errorhandler(ValueError)
def _refused(exc: Exception) -> Response:
    return json_response({"error": "refused", "detail": str(exc)}, 400)


def portal_summary(emu: Emulator, portal: Portal) -> dict[str, Any]:
    """What a test needs to talk to a portal."""
    return {
        "number": portal.index + 1,
        "member_id": portal.member_id,
        "domain": emu.portal_domain(portal),
        "client_endpoint": emu.client_endpoint(portal),
        "shell_url": f"{emu.config.scheme}://{emu.portal_domain(portal)}/",
        "plan": portal.plan,
        "users": [asdict(u) for u in portal.users.values()],
        "installs": {
            cid: {
                "installed": i.installed,
                "version": i.version,
                "application_token": i.application_token,
                "status": i.status,
                "payment_required": i.payment_required,
            }
            for cid, i in portal.installs.items()
        },
    }


@bp.get("/state")
def state() -> Response:
    emu = _emu()
    with emu.lock:
        return json_response(
            {
                "server_endpoint": emu.server_endpoint,
                "config": emu.config.as_dict(),
                "now": emu.clock.now(),
                "apps": [asdict(a) for a in emu.apps.values()],
                "portals": [portal_summary(emu, p) for p in emu.portals],
            }
        )


@bp.post("/reset")
def reset() -> Response:
    _emu().reset()
    return json_response({"ok": True})


@bp.post("/config")
def config() -> Response:
    emu = _emu()
    try:
        with emu.lock:
            emu.config.update(_body())
    except KeyError as exc:
        return json_response({"error": "unknown_setting", "detail": str(exc)}, 400)
    return json_response(emu.config.as_dict())


@bp.post("/clock")
def clock() -> Response:
    """``{"advance": 3600}`` or ``{"set": 1700000000}`` (needs the fake clock)."""
    emu = _emu()
    if not isinstance(emu.clock, FakeClock):
        return json_response(
            {"error": "refused", "detail": "the emulator runs on the real clock"}, 400
        )
    body = _body()
    if "set" in body:
        emu.clock.set(float(body["set"]))
    if "advance" in body:
        emu.clock.advance(float(body["advance"]))
    if "step" in body:
        emu.clock.step = float(body["step"])
    return json_response({"now": emu.clock.now()})


@bp.post("/apps")
def register_app() -> Response:
    app = _emu().register_app(**_body())
    return json_response(asdict(app), 201)


@bp.post("/portals")
def add_portal() -> Response:
    emu = _emu()
    portal = emu.add_portal(str(_body().get("plan", "standard")))
    return json_response(portal_summary(emu, portal), 201)


@bp.get("/portals/<member>")
def get_portal(member: str) -> Response:
    emu = _emu()
    with emu.lock:
        return json_response(portal_summary(emu, _portal(member)))


@bp.post("/portals/<member>/install")
def install(member: str) -> Response:
    body = _body()
    result = lifecycle.install_app(
        _emu(), _portal(member), body["client_id"], int(body.get("user_id", 1))
    )
    return json_response(result)


@bp.post("/portals/<member>/install-finish")
def install_finish(member: str) -> Response:
    body = _body()
    done = lifecycle.install_finish(
        _emu(), _portal(member), body["client_id"], int(body.get("user_id", 1))
    )
    return json_response({"finished": done})


@bp.post("/portals/<member>/update")
def update(member: str) -> Response:
    body = _body()
    result = lifecycle.update_app(
        _emu(),
        _portal(member),
        body["client_id"],
        int(body["version"]),
        bool(body.get("new_application_token")),
    )
    return json_response(result)


@bp.post("/portals/<member>/uninstall")
def uninstall(member: str) -> Response:
    body = _body()
    lifecycle.uninstall_app(
        _emu(),
        _portal(member),
        body["client_id"],
        str(body.get("clean", "0")) in ("1", "true", "True"),
    )
    return json_response({"ok": True})


@bp.post("/portals/<member>/tokens")
def tokens(member: str) -> Response:
    """Mint a token pair for a user (as if taken from a page POST)."""
    from marketapp.devportal.oauth import token_body

    emu, portal = _emu(), _portal(member)
    body = _body()
    token = emu.issue_token(portal, body["client_id"], int(body.get("user_id", 1)))
    emu.install_of(portal, body["client_id"])
    return json_response(token_body(emu, portal, token))


@bp.post("/portals/<member>/auth-code")
def auth_code(member: str) -> Response:
    emu, portal = _emu(), _portal(member)
    body = _body()
    token = emu.issue_token(portal, body["client_id"], int(body.get("user_id", 1)))
    code = emu.alnum(40)
    with emu.lock:
        emu.auth_codes[code] = (token, emu.clock.now() + 30)
    return json_response({"code": code})


@bp.post("/portals/<member>/webhooks")
def webhook(member: str) -> Response:
    emu, portal = _emu(), _portal(member)
    body = _body()
    hook = Webhook(emu.alnum(16), int(body.get("user_id", 1)), list(body.get("scopes", ["crm"])))
    with emu.lock:
        portal.webhooks[hook.code] = hook
    url = f"{emu.client_endpoint(portal)}{hook.user_id}/{hook.code}/"
    return json_response({"code": hook.code, "user_id": hook.user_id, "url": url})


@bp.post("/portals/<member>/open")
def open_placement(member: str) -> Response:
    """Open a placement (or ``DEFAULT``) as a user (``?format=html``: the page)."""
    body = _body()
    form = lifecycle.open_placement(
        _emu(),
        _portal(member),
        body["client_id"],
        str(body.get("placement", "DEFAULT")),
        int(body.get("user_id", 1)),
        body.get("options") or None,
        body.get("handler"),
    )
    if request.args.get("format") == "html":
        return Response(form["html"], mimetype="text/html")
    return json_response(form)


@bp.post("/portals/<member>/robots/run")
def run_robot(member: str) -> Response:
    body = _body()
    wf = robots.run_robot(
        _emu(),
        _portal(member),
        body["client_id"],
        body["code"],
        body["document_id"],
        body.get("properties"),
        body.get("run_as"),
        int(body.get("timeout_duration", 0)),
    )
    return json_response(asdict(wf))


@bp.post("/portals/<member>/automation")
def add_automation(member: str) -> Response:
    """An automation rule: run robot ``code`` when an ``entity`` record enters ``stage``."""
    emu, portal = _emu(), _portal(member)
    rule = _body()
    with emu.lock:
        portal.automation.append(rule)
    return json_response(rule, 201)


@bp.get("/workflows")
def workflows() -> Response:
    emu = _emu()
    robots.expire_waits(emu)
    with emu.lock:
        return json_response([asdict(w) for w in emu.workflows.values()])


@bp.post("/workflows/<wid>/finish")
def finish_workflow(wid: str) -> Response:
    emu = _emu()
    with emu.lock:
        emu.workflows[wid].finished = True
    return json_response({"ok": True})


@bp.post("/portals/<member>/sms")
def send_sms(member: str) -> Response:
    body = _body()
    record = sms.send_sms(
        _emu(),
        _portal(member),
        body["client_id"],
        body["code"],
        body["phone"],
        body["text"],
        body.get("user_id", 1),
        body.get("bindings"),
    )
    return json_response(record)


@bp.post("/portals/<member>/events")
def fire_event(member: str) -> Response:
    body = _body()
    count = lifecycle.dispatch_event(
        _emu(), _portal(member), body["event"], body.get("data", {}), body.get("user_id")
    )
    return json_response({"queued": count})


@bp.post("/portals/<member>/faults")
def set_faults(member: str) -> Response:
    """``{"rates": {}, "script": [], "expire_tokens": true, "payment_required": {id: bool}}``."""
    emu, portal = _emu(), _portal(member)
    body = _body()
    with emu.lock:
        if "rates" in body:
            portal.faults = dict(body["rates"])
        if "script" in body:
            portal.fault_script.extend(dict(f) for f in body["script"])
        if body.get("expire_tokens"):
            emu.expire_tokens(portal)
        for client_id, flag in (body.get("payment_required") or {}).items():
            emu.install_of(portal, client_id).payment_required = bool(flag)
        return json_response({"rates": portal.faults, "script": portal.fault_script})


@bp.post("/portals/<member>/seed")
def seed_portal(member: str) -> Response:
    """``{"n": 20}``: n contacts, n/2 of the rest; or per entity: ``{"contacts": 10000}``."""
    body = _body()
    counts: dict[str, int] = {
        k: int(body[k]) for k in ("contacts", "companies", "deals", "leads") if k in body
    }
    if any(v < 0 or v > 200_000 for v in counts.values()):
        raise ValueError("seed counts must be between 0 and 200000")
    n = int(body.get("n", 0 if counts else 20))
    result = seed.seed_portal(_emu(), _portal(member), n, int(body.get("seed", 0)) or None, counts)
    return json_response(result)


@bp.get("/portals/<member>/crm/<entity>/stats")
def crm_stats(member: str, entity: str) -> Response:
    """What a preview should count: no phone/e-mail, invalid phones, opt-outs (by owner)."""
    emu = _emu()
    owner = request.args.get("assigned_by_id")
    with emu.lock:
        return json_response(seed.stats(_portal(member).crm, entity, int(owner) if owner else None))


@bp.post("/portals/<member>/permissions")
def permissions(member: str) -> Response:
    """CRM read rights: ``{"records": {"2": "own"}}`` ("own", "none"; "all" lifts the limit)."""
    emu, portal = _emu(), _portal(member)
    records = _body().get("records") or {}
    if not isinstance(records, dict):
        raise ValueError("records must be an object of user id -> own|none|all")
    with emu.lock:
        for user_id, level in records.items():
            if level not in ("own", "none", "all"):
                raise ValueError(f"unknown access level {level!r}")
            if int(user_id) not in portal.users:
                raise KeyError(f"no user {user_id}")
            if level == "all":
                portal.record_access.pop(int(user_id), None)
            else:
                portal.record_access[int(user_id)] = level
        return json_response({"records": {str(k): v for k, v in portal.record_access.items()}})


@bp.post("/portals/<member>/users")
def add_user(member: str) -> Response:
    """Add an employee: ``{"name", "last_name", "email", "admin", "active", "position"}``."""
    emu, portal = _emu(), _portal(member)
    body = _body()
    with emu.lock:
        uid = max(portal.users) + 1
        user = User(
            uid,
            str(body.get("name", f"User{uid}")),
            str(body.get("last_name", "")),
            str(body.get("email", f"user{uid}@example.com")),
            bool(body.get("admin", False)),
            active=bool(body.get("active", True)),
            position=str(body.get("position", "")),
        )
        portal.users[uid] = user
    return json_response(asdict(user), 201)


def _portal_list(member: str, attr: str) -> Response:
    emu = _emu()
    with emu.lock:
        return json_response(list(getattr(_portal(member), attr)))


@bp.get("/portals/<member>/outbox")
def outbox(member: str) -> Response:
    return _portal_list(member, "outbox")


@bp.get("/portals/<member>/sms")
def sms_log(member: str) -> Response:
    return _portal_list(member, "sms")


@bp.get("/portals/<member>/notifications")
def notifications(member: str) -> Response:
    return _portal_list(member, "notifications")


@bp.get("/portals/<member>/tasks")
def tasks(member: str) -> Response:
    return _portal_list(member, "tasks")


@bp.get("/portals/<member>/timeline")
def timeline(member: str) -> Response:
    """Comments and activities, optionally for one record (``?entity=contact&id=42``)."""
    emu, portal = _emu(), _portal(member)
    entity, rid = request.args.get("entity"), request.args.get("id")
    with emu.lock:
        comments = [
            c
            for c in portal.crm.comments.values()
            if (not entity or c["ENTITY_TYPE"] == entity)
            and (not rid or str(c["ENTITY_ID"]) == rid)
        ]
        return json_response(
            {"comments": comments, "activities": list(portal.crm.activities.values())}
        )


@bp.get("/portals/<member>/activities")
def activities(member: str) -> Response:
    emu = _emu()
    with emu.lock:
        return json_response(list(_portal(member).crm.activities.values()))


@bp.get("/portals/<member>/crm/<entity>")
def crm_records(member: str, entity: str) -> Response:
    emu = _emu()
    with emu.lock:
        return json_response(list(_portal(member).crm.records[entity].values()))


@bp.get("/portals/<member>/registrations")
def registrations(member: str) -> Response:
    """Event handlers, placements, robots and senders currently registered on the portal."""
    emu, portal = _emu(), _portal(member)
    with emu.lock:
        return json_response(
            {
                "events": [asdict(h) for h in portal.event_handlers],
                "placements": [asdict(p) for p in portal.placements],
                "robots": [asdict(r) for r in portal.robots.values()],
                "senders": [asdict(s) for s in portal.senders.values()],
            }
        )


@bp.get("/portals/<member>/limiter")
def limiter(member: str) -> Response:
    emu, portal = _emu(), _portal(member)
    with emu.lock:
        now = emu.clock.now()
        budgets = [b for b in emu.operating.state(now) if b["member_id"] == portal.member_id]
        return json_response(
            {
                "enabled": emu.config.limits_enabled,
                "bucket": portal.bucket.state(),
                "operating": budgets,
            }
        )


@bp.post("/portals/<member>/limiter/reset")
def limiter_reset(member: str) -> Response:
    emu = _emu()
    with emu.lock:
        _portal(member).bucket.clear()
    return json_response({"ok": True})


@bp.get("/requests")
def requests_log() -> Response:
    emu = _emu()
    with emu.lock:
        entries = list(emu.request_log)
    member = request.args.get("member_id")
    return json_response([e for e in entries if not member or e["member_id"] == member])


@bp.get("/deliveries")
def deliveries() -> Response:
    """The delivery log; ``?wait=1`` first waits until the queue is idle."""
    emu = _emu()
    if request.args.get("wait"):
        emu.deliveries.wait_idle(float(request.args.get("timeout", 10)))
    return json_response(
        [
            {k: v for k, v in d.items() if k != "form"} | {"form": d["form"]}
            for d in emu.deliveries.log
        ]
    )


@bp.get("/ui-events")
def ui_events() -> Response:
    """What pages did through BX24.js (installFinish, resizeWindow, closeApplication, ...)."""
    emu = _emu()
    with emu.lock:
        return json_response(list(emu.ui_events))
