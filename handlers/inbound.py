"""Reading server-to-server POSTs: bracketed form or JSON (bad input becomes a 400)."""

from __future__ import annotations

from typing import Any

from flask import request

from marketapp.bitrix.payloads import request_fields


def inbound_fields() -> dict[str, Any]:
    """Query string plus form or JSON body as nested fields; ``PayloadError`` → 400."""
    return request_fields(request)
