"""Fault injection per portal: random (seeded) and scripted failures before a REST call runs.

Random rates: ``{"error_500": 0.1, "error_503": 0.05, "error_429": 0, "slow": 0.1,
"slow_seconds": 2, "drop": 0.02, "expire": 0.01}``. Scripted faults hit the next N calls (optionally
of one method): ``{"kind": "503", "count": 2, "method": "crm.contact.get"}``; kinds are
``500 503 429 423 slow drop expire``.
"""

from __future__ import annotations

import time
from typing import Any

from marketapp.devportal.errors import RestError
from marketapp.devportal.state import Emulator, Portal

KINDS = ("500", "503", "429", "423", "slow", "drop", "expire")
MAX_SECONDS = 60.0  # Bitrix24 cuts requests off at 60 s.


class DropConnection(Exception):
    """Close the client's connection without an answer."""


def before_call(emu: Emulator, portal: Portal, method: str) -> None:
    """Apply at most one fault to this call (scripted first, then random)."""
    with emu.lock:
        kind, seconds = _pick(portal, method)
    if kind is None:
        return
    if kind == "slow":
        time.sleep(min(seconds, MAX_SECONDS))
        return
    _raise(emu, portal, kind)


def bizproc_hang(emu: Emulator, portal: Portal, method: str) -> bool:
    """A scripted 423 for ``bizproc.event.send`` (the workflow is being executed)."""
    with emu.lock:
        return _take_scripted(portal, method, {"423"}) is not None


def _pick(portal: Portal, method: str) -> tuple[str | None, float]:
    scripted = _take_scripted(portal, method, set(KINDS) - {"423"})
    if scripted is not None:
        return scripted["kind"], float(scripted.get("seconds", 2))
    cfg = portal.faults
    roll = portal.rng.random()
    for kind, key in (
        ("500", "error_500"),
        ("503", "error_503"),
        ("429", "error_429"),
        ("drop", "drop"),
        ("expire", "expire"),
        ("slow", "slow"),
    ):
        rate = float(cfg.get(key, 0))
        if roll < rate:
            return kind, float(cfg.get("slow_seconds", 2))
        roll -= rate
    return None, 0.0


def _take_scripted(portal: Portal, method: str, kinds: set[str]) -> dict[str, Any] | None:
    for fault in portal.fault_script:
        if str(fault["kind"]) not in kinds:
            continue
        if fault.get("method") and fault["method"].lower() != method.lower():
            continue
        fault["count"] = int(fault.get("count", 1)) - 1
        if fault["count"] <= 0:
            portal.fault_script.remove(fault)
        return {**fault, "kind": str(fault["kind"])}
    return None


def _raise(emu: Emulator, portal: Portal, kind: str) -> None:
    if kind == "500":
        raise RestError("INTERNAL_SERVER_ERROR", "Internal server error", 500)
    if kind == "503":
        raise RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
    if kind == "429":
        raise RestError(
            "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429
        )
    if kind == "drop":
        raise DropConnection()
    if kind == "expire":
        emu.expire_tokens(portal)
        raise RestError("expired_token", "The access token provided has expired.", 401)
