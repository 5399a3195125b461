"""PHP-style bracket encoding (``a[b][0]=v``), the way Bitrix24 sends and accepts form data."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\]]*\])*)$")


def _path(key: str) -> list[str]:
    match = _KEY.match(key)
    if not match:
        return [key]
    rest = re.findall(r"\[([^\]]*)\]", match.group(2))
    return [match.group(1), *rest]


def parse(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Turn ``(key, value)`` pairs with bracket keys into nested dicts (``[]`` appends).

    Values are kept as given, so callers may splice non-string values (batch references).
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _path(key)
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return root


def flatten(obj: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Encode a nested mapping as bracket pairs; every value becomes a string (None → "")."""
    pairs: list[tuple[str, str]] = []
    for key, value in obj.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        pairs.extend(_flatten_value(name, value))
    return pairs


def _flatten_value(name: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return flatten(value, name)
    if isinstance(value, list | tuple):
        return flatten({str(i): v for i, v in enumerate(value)}, name)
    if value is None:
        return [(name, "")]
    if isinstance(value, bool):
        return [(name, "Y" if value else "N")]
    return [(name, str(value))]


def as_list(value: Any) -> list[Any]:
    """A PHP array decoded as a dict with keys "0".."n" (or a JSON list) → list."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    if value in (None, ""):
        return []
    return [value]
