"""A user or workflow sends an SMS through the app's provider (§7.6, §9.30)."""

from __future__ import annotations

from typing import Any

from marketapp.devportal.state import Emulator, Portal


def send_sms(
    emu: Emulator,
    portal: Portal,
    client_id: str,
    code: str,
    phone: str,
    text: str,
    user_id: int | None = 1,
    bindings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Queue the provider ``HANDLER`` POST and record the message (status ``queued``)."""
    with emu.lock:
        sender = portal.senders.get((client_id, code))
        if sender is None:
            raise LookupError(f"sender {code!r} is not registered")
        install = emu.install_of(portal, client_id)
        message_id = emu.hex32()
        now = emu.clock.now()
        payload = {
            "type": "SMS",
            "code": code,
            "message_id": message_id,
            "message_to": phone,
            "message_body": text,
            "ts": str(int(now)),
            "auth": emu.auth_block(portal, install, user_id),
            "module_id": "crm",
            "bindings": bindings or [],
            "properties": {"phone_number": phone, "message_text": text},
        }
        record = {
            "message_id": message_id,
            "code": code,
            "client_id": client_id,
            "to": phone,
            "text": text,
            "status": "queued",
            "time": now,
            "history": [],
        }
        portal.sms.append(record)
        emu.deliveries.enqueue(
            "sms",
            sender.handler,
            payload,
            {"member_id": portal.member_id, "message_id": message_id},
        )
        return record
