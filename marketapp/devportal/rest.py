"""The portal REST surface: request decoding, authentication, limits, dispatch and the envelope."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl

from flask import Request, Response

from marketapp.devportal import faults, phpform
from marketapp.devportal.crm import iso
from marketapp.devportal.errors import RestError, access_denied
from marketapp.devportal.registry import METHODS, Ctx, ListPage
from marketapp.devportal.state import Emulator, Portal


def request_params(req: Request) -> dict[str, Any]:
    """Query + form (PHP brackets) + JSON body, merged; later sources win."""
    pairs = list(parse_qsl(req.query_string.decode("latin-1"), keep_blank_values=True))
    params = phpform.parse(pairs)
    if req.mimetype == "application/json":
        body = req.get_json(silent=True)
        if isinstance(body, dict):
            params.update(body)
    else:
        params.update(phpform.parse(req.form.items(multi=True)))
    return params


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def time_block(ctx: Ctx | None, name: str, start: float, processing: float) -> dict[str, Any]:
    """The ``time`` section; ``operating`` fields only while the limiter is on."""
    finish = start + processing
    block: dict[str, Any] = {
        "start": round(start, 4),
        "finish": round(finish, 4),
        "duration": round(finish - start, 4),
        "processing": round(processing, 4),
        "date_start": iso(start),
        "date_finish": iso(finish),
    }
    if ctx is not None and ctx.emu.config.limits_enabled:
        operating, reset_at = ctx.emu.operating.status(_budget_key(ctx, name), finish)
        block["operating_reset_at"] = reset_at
        block["operating"] = operating
    return block


def _budget_key(ctx: Ctx, name: str) -> tuple[str, str, str]:
    return (ctx.portal.member_id, ctx.client_key, name.lower())


def authenticate(emu: Emulator, portal: Portal, auth: Any) -> Ctx:
    """Resolve an ``auth`` access token for ``portal``; raise the documented 401s."""
    if not auth or not isinstance(auth, str):
        raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
    with emu.lock:
        token = emu.tokens.get(auth)
        if token is None or token.member_id != portal.member_id or token.revoked:
            raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        if token.expires_at <= emu.clock.now():
            raise RestError("expired_token", "The access token provided has expired.", 401)
        install = portal.installs.get(token.client_id)
        if install is None:
            raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        return Ctx(emu, portal, portal.users[token.user_id], install, token)


def authenticate_webhook(emu: Emulator, portal: Portal, user_id: int, code: str) -> Ctx:
    with emu.lock:
        hook = portal.webhooks.get(code)
        if hook is None or hook.user_id != user_id:
            raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        return Ctx(emu, portal, portal.users[user_id], None, None, hook)


def execute(ctx: Ctx, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one method (also a batch sub-call) with scope, rights and time-budget checks.

    Returns ``{"result", ["total", "next"], "time"}``; raises ``RestError``.
    """
    spec = METHODS.get(name.lower())
    if spec is None:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    _check_access(ctx, spec.name, spec.scopes, spec.admin, spec.app_only, spec.app_only_error)
    emu = ctx.emu
    key = _budget_key(ctx, spec.name)
    start = emu.clock.now()
    if emu.config.limits_enabled and spec.name != "batch":
        with emu.lock:
            if emu.operating.blocked(key, start, emu.config.operating_limit):
                raise RestError(
                    "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429
                )
    began = time.perf_counter()
    try:
        with emu.lock:
            result = spec.func(ctx, params)
    finally:
        processing = emu.config.method_costs.get(spec.name, time.perf_counter() - began)
        if spec.name != "batch":
            with emu.lock:
                emu.operating.charge(key, start, processing, emu.config.operating_min_recorded)
    body: dict[str, Any] = {}
    if isinstance(result, ListPage):
        body["result"] = result.items
        if result.total is not None:
            body["total"] = result.total
        if result.next is not None:
            body["next"] = result.next
    else:
        body["result"] = result
    body["time"] = time_block(ctx, spec.name, start, processing)
    return body


def _check_access(
    ctx: Ctx, name: str, scopes: tuple[str, ...], admin: bool, app_only: bool, app_only_error: str
) -> None:
    if app_only and ctx.install is None:
        if app_only_error == "WRONG_AUTH_TYPE":
            raise RestError(
                "WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403
            )
        raise access_denied("Application context required")
    if "basic" not in scopes and not set(scopes) & set(ctx.scopes):
        raise RestError(
            "insufficient_scope",
            "The request requires higher privileges than provided by the access token",
            403,
        )
    if admin and not ctx.user.admin:
        raise access_denied()


def log_request(emu: Emulator, entry: dict[str, Any]) -> None:
    with emu.lock:
        entry["id"] = emu.ids.next("request")
        emu.request_log.append(entry)


def handle(
    emu: Emulator, portal: Portal, req: Request, name: str, hook: tuple[int, str] | None
) -> Response:
    """One HTTP request to ``<client_endpoint><name>``: limits, faults, auth, dispatch, log."""
    name = name.removesuffix(".json")
    began = time.perf_counter()
    arrival = emu.clock.now()
    entry: dict[str, Any] = {"time": arrival, "member_id": portal.member_id, "method": name}
    try:
        response = _handle(emu, portal, req, name, hook, entry)
    except faults.DropConnection:
        entry.update(status=0, error="dropped")
        log_request(emu, entry)
        raise
    entry["status"] = response.status_code
    entry["duration_ms"] = round((time.perf_counter() - began) * 1000, 3)
    log_request(emu, entry)
    return response


def _handle(
    emu: Emulator,
    portal: Portal,
    req: Request,
    name: str,
    hook: tuple[int, str] | None,
    entry: dict[str, Any],
) -> Response:
    if emu.config.limits_enabled:
        with emu.lock:
            ok = portal.bucket.hit(emu.clock.now(), emu.config.bucket_counts_rejected)
        if not ok:
            entry["error"] = "QUERY_LIMIT_EXCEEDED"
            return json_response(
                {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, 503
            )
    params = request_params(req)
    auth = params.pop("auth", None)
    try:
        faults.before_call(emu, portal, name)
        ctx = authenticate_webhook(emu, portal, *hook) if hook else authenticate(emu, portal, auth)
        entry["client"] = ctx.client_key
        entry["user_id"] = ctx.user.id
        if name.lower() == "batch":
            entry["commands"] = _batch_methods(params.get("cmd"))
        body = execute(ctx, name, params)
    except RestError as err:
        entry["error"] = err.error
        return json_response(err.body(), err.status)
    return json_response(body)


def _batch_methods(cmd: Any) -> list[str]:
    """The method of each batch command, so the log shows what a batch did (reads or writes)."""
    values = cmd.values() if isinstance(cmd, dict) else cmd if isinstance(cmd, list) else []
    return [str(c).partition("?")[0].strip().removesuffix(".json").lower() for c in values]
