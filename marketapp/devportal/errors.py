"""The Bitrix24 error envelope ``{"error": ..., "error_description": ...}`` as an exception."""

from __future__ import annotations

from typing import Any


class RestError(Exception):
    """A REST error; ``error`` may be "" (legacy CRM) or a number (``bizproc.event.send``)."""

    def __init__(self, error: str | int, description: str, status: int = 400, **extra: Any) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description, **self.extra}


def legacy(description: str) -> RestError:
    """Legacy CRM methods answer 400 with an empty ``error`` code."""
    return RestError("", description, 400)


def access_denied(description: str = "Access denied!") -> RestError:
    return RestError("ACCESS_DENIED", description, 403)


def app_context_required() -> RestError:
    return RestError("ACCESS_DENIED", "Application context required", 403)
