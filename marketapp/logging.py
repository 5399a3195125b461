"""Structured logging (one JSON object per line) that never prints secrets."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

SECRET_KEYS = re.compile(
    r"(access_token|refresh_token|application_token|client_secret|auth_id|refresh_id|"
    r"password|secret|token|auth\[[a-z_]*token\]|authorization)",
    re.IGNORECASE,
)
# key=value or "key": "value" pairs whose key names a secret, inside free text or URLs. The
# key's parts are bounded: unbounded, a long word (200,000 ``x``) took minutes to scan.
_INLINE = re.compile(
    r"(?P<key>[\w\[\]]{0,64}(?:token|secret|auth_id|refresh_id|password|auth)[\w\[\]]{0,64})"
    r"(?P<sep>\"?\s*[:=]\s*\"?)(?P<val>[^\s&\"',}]+)",
    re.IGNORECASE,
)
REDACTED = "***"
# One entry stays readable and cheap: a deep recursion's traceback ran to 167 KB. The head
# says where it started, the tail what finally failed.
MAX_TRACEBACK = 8_000
MAX_MESSAGE = 4_000


def bounded(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and tail."""
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    return f"{text[:head]}\n… {len(text) - head - tail} characters left out …\n{text[-tail:]}"


def redact(value: Any) -> Any:
    """Return ``value`` with every secret-looking entry masked (dicts, lists and strings)."""
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEYS.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _INLINE.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", value)
    return value


class JsonFormatter(logging.Formatter):
    _skip = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": bounded(redact(record.getMessage()), MAX_MESSAGE),
        }
        extra = {k: v for k, v in record.__dict__.items() if k not in self._skip}
        entry.update(redact(extra))
        if record.exc_info:
            entry["exc"] = bounded(redact(self.formatException(record.exc_info)), MAX_TRACEBACK)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str) -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
