"""``batch`` (§3.6): up to 50 sequential sub-calls with ``$result[...]`` references and ``halt``."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from marketapp.devportal import phpform
from marketapp.devportal.errors import RestError
from marketapp.devportal.registry import Ctx, param

MAX_COMMANDS = 50
REF = re.compile(r"\$(result|next|total|time|error)((?:\[[^\[\]]*\])+)")
FILE_METHODS = ("disk.file.upload", "disk.folder.uploadfile", "disk.storage.uploadfile")


def run(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Run the commands in order; failures go to ``result_error`` and the answer is still 200."""
    from marketapp.devportal.rest import execute

    cmd = param(params, "cmd", default={}) or {}
    commands = list(enumerate(cmd)) if isinstance(cmd, list) else list(cmd.items())
    if len(commands) > MAX_COMMANDS:
        raise RestError(
            "ERROR_BATCH_LENGTH_EXCEEDED", f"Max batch length exceeded ({MAX_COMMANDS})", 400
        )
    halt = str(param(params, "halt", default="0")).lower() in ("1", "true", "y")
    sections: dict[str, dict[str, Any]] = {
        k: {} for k in ("result", "error", "total", "next", "time")
    }
    for key, command in commands:
        key = str(key)
        name, _, query = str(command).partition("?")
        name = name.strip().removesuffix(".json")
        try:
            if name.lower() == "batch":
                raise RestError(
                    "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
                )
            if name.lower() in FILE_METHODS:
                raise RestError(
                    "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
                )
            body = execute(ctx, name, _sub_params(query, sections))
        except RestError as err:
            sections["error"][key] = err.body()
            if halt:
                break
            continue
        sections["result"][key] = body["result"]
        sections["time"][key] = body["time"]
        if "total" in body:
            sections["total"][key] = body["total"]
        if "next" in body:
            sections["next"][key] = body["next"]
    return {
        "result": _normalise(sections["result"]),
        "result_error": _normalise(sections["error"]),
        "result_total": _normalise(sections["total"]),
        "result_next": _normalise(sections["next"]),
        "result_time": _normalise(sections["time"]),
    }


def _sub_params(query: str, sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pairs = parse_qsl(query, keep_blank_values=True)
    resolved = [(key, _substitute(value, sections)) for key, value in pairs]
    params = phpform.parse(resolved)
    params.pop("auth", None)  # the outer auth applies to every sub-call
    return params


def _lookup(sections: dict[str, dict[str, Any]], section: str, path: str) -> Any:
    """Walk ``[a][0][b]``; a missing level stops at the last one found (observed)."""
    node: Any = sections[section]
    for part in re.findall(r"\[([^\[\]]*)\]", path):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            break
    return node


def _substitute(value: str, sections: dict[str, dict[str, Any]]) -> Any:
    """A value that is exactly a reference takes the raw value; otherwise it is spliced in."""
    whole = REF.fullmatch(value)
    if whole:
        return _lookup(sections, whole.group(1), whole.group(2))

    def splice(match: re.Match[str]) -> str:
        found = _lookup(sections, match.group(1), match.group(2))
        if isinstance(found, list | dict):
            return ",".join(str(v) for v in (found.values() if isinstance(found, dict) else found))
        if isinstance(found, bool):
            return "1" if found else ""
        return "" if found is None else str(found)

    return REF.sub(splice, value)


def _normalise(section: dict[str, Any]) -> Any:
    """Empty maps serialise as ``[]``; keys "0".."n-1" make a JSON list (PHP arrays)."""
    if not section:
        return []
    keys = list(section)
    if keys == [str(i) for i in range(len(keys))]:
        return list(section.values())
    return section
