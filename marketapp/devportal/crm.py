"""The CRM store: leads, deals, contacts, companies, activities and timeline comments.

Records are kept in Bitrix24's internal UPPER_CASE form; ``legacy_view`` renders the
``crm.contact.*`` shape (numbers as strings, empty multifields absent) and ``item_view`` the
``crm.item.*`` camelCase shape with ``fm``.
"""

from __future__ import annotations

import bisect
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from marketapp.devportal import crmmeta

ENTITY_TYPES: dict[str, int] = {"lead": 1, "deal": 2, "contact": 3, "company": 4}
TYPE_NAMES: dict[int, str] = {v: k for k, v in ENTITY_TYPES.items()}
DOC_CLASSES: dict[str, str] = {
    "lead": "CCrmDocumentLead",
    "deal": "CCrmDocumentDeal",
    "contact": "CCrmDocumentContact",
    "company": "CCrmDocumentCompany",
}
MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM")
VALUE_TYPES: dict[str, tuple[str, ...]] = {
    "PHONE": ("WORK", "MOBILE", "FAX", "HOME", "PAGER", "MAILING", "OTHER"),
    "EMAIL": ("WORK", "HOME", "MAILING", "OTHER"),
    "WEB": ("WORK", "HOME", "VK", "LIVEJOURNAL", "TWITTER", "OTHER"),
    "IM": (
        "TELEGRAM",
        "VK",
        "SKYPE",
        "VIBER",
        "BITRIX24",
        "OPENLINE",
        "IMOL",
        "ICQ",
        "MSN",
        "JABBER",
        "OTHER",
    ),
}
FIELDS: dict[str, tuple[str, ...]] = {
    "contact": (
        "NAME",
        "SECOND_NAME",
        "LAST_NAME",
        "BIRTHDATE",
        "POST",
        "TYPE_ID",
        "SOURCE_ID",
        "COMPANY_ID",
        "COMMENTS",
    ),
    "company": ("TITLE", "COMPANY_TYPE", "INDUSTRY", "REVENUE", "CURRENCY_ID", "COMMENTS"),
    "deal": (
        "TITLE",
        "STAGE_ID",
        "CATEGORY_ID",
        "OPPORTUNITY",
        "CURRENCY_ID",
        "CONTACT_ID",
        "COMPANY_ID",
        "CLOSEDATE",
        "COMMENTS",
    ),
    "lead": (
        "TITLE",
        "NAME",
        "LAST_NAME",
        "STATUS_ID",
        "SOURCE_ID",
        "OPPORTUNITY",
        "CURRENCY_ID",
        "COMPANY_TITLE",
        "COMMENTS",
    ),
}
COMMON = (
    "ID",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "OPENED",
)
HAS_MULTI = {"contact", "company", "lead"}
NUMERIC = {
    "ID",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "COMPANY_ID",
    "CONTACT_ID",
    "CATEGORY_ID",
}
CAMEL: dict[str, str] = {
    "ASSIGNED_BY_ID": "assignedById",
    "CREATED_BY_ID": "createdBy",
    "MODIFY_BY_ID": "updatedBy",
    "DATE_CREATE": "createdTime",
    "DATE_MODIFY": "updatedTime",
    "STATUS_ID": "stageId",
    "CONTACT_IDS": "contactIds",
}


def iso(ts: float) -> str:
    """Bitrix24 date format ``YYYY-MM-DDThh:mm:ss+00:00``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def camel(name: str) -> str:
    """``LAST_NAME`` → ``lastName``; ``UF_CRM_1612`` → ``ufCrm_1612`` (as crm.item names UFs)."""
    if name in CAMEL:
        return CAMEL[name]
    parts = name.lower().split("_")
    out = parts[0]
    for part in parts[1:]:
        out += f"_{part}" if part[:1].isdigit() else part.capitalize()
    return out


@dataclass
class CrmStore:
    records: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in ENTITY_TYPES}
    )
    activities: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: dict[str, int] = field(default_factory=dict)
    # Custom (UF_*) fields per entity: name -> {"type", "label", ["items"]} (crmmeta.USER_FIELDS).
    user_fields: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=crmmeta.default_user_fields
    )

    def new_id(self, kind: str) -> int:
        value = self.next_id.get(kind, 1)
        self.next_id[kind] = value + 1
        return value

    def add(self, entity: str, fields: dict[str, Any], user_id: int, now: float) -> int:
        """Create a record from UPPER_CASE ``fields`` (multifields as lists of dicts)."""
        rid = self.new_id(entity)
        record: dict[str, Any] = {
            "ID": rid,
            "ASSIGNED_BY_ID": user_id,
            "CREATED_BY_ID": user_id,
            "MODIFY_BY_ID": user_id,
            "DATE_CREATE": iso(now),
            "DATE_MODIFY": iso(now),
            "OPENED": "Y",
        }
        for name in MULTIFIELDS:
            record[name] = []
        for name, spec in self.user_fields[entity].items():
            # Every record carries every custom field, as Bitrix24 does (booleans default "N").
            record[name] = "N" if spec["type"] == "boolean" else None
        self.records[entity][rid] = record
        self.apply_legacy(entity, record, fields)
        return rid

    def apply_legacy(self, entity: str, record: dict[str, Any], fields: dict[str, Any]) -> None:
        """Legacy update rules: scalars overwrite; multifields: with ID edit/delete, else add."""
        for key, value in fields.items():
            key = key.upper()
            if key in MULTIFIELDS:
                if entity in HAS_MULTI:
                    self._legacy_multi(record, key, value)
            elif key != "ID":
                if key.startswith("UF_") and key not in self.user_fields[entity]:
                    self.user_fields[entity][key] = {"type": "string", "label": key}
                record[key] = _normalise_scalar(key, value)

    def _legacy_multi(self, record: dict[str, Any], kind: str, items: Any) -> None:
        values = items.values() if isinstance(items, dict) else items or []
        for item in values:
            if not isinstance(item, dict):
                continue
            item = {str(k).upper(): v for k, v in item.items()}
            existing = _find_mf(record[kind], item.get("ID"))
            if existing is not None:
                if item.get("DELETE") == "Y" or item.get("VALUE", existing["VALUE"]) == "":
                    record[kind].remove(existing)
                else:
                    existing["VALUE"] = str(item.get("VALUE", existing["VALUE"]))
                    existing["VALUE_TYPE"] = item.get("VALUE_TYPE", existing["VALUE_TYPE"])
            elif item.get("VALUE"):
                record[kind].append(self._mf(kind, str(item["VALUE"]), item.get("VALUE_TYPE")))

    def _mf(self, kind: str, value: str, value_type: Any) -> dict[str, Any]:
        vtype = str(value_type or VALUE_TYPES[kind][0]).upper()
        return {"ID": self.new_id("fm"), "VALUE_TYPE": vtype, "VALUE": value, "TYPE_ID": kind}

    def apply_fm(self, record: dict[str, Any], fm: Any) -> None:
        """``crm.item.update`` ``fm`` rules: ``n0`` adds, an id edits, "" deletes."""
        entries = fm.items() if isinstance(fm, dict) else ((str(i.get("id", "")), i) for i in fm)
        for key, item in entries:
            if not isinstance(item, dict):
                continue
            kind = str(item.get("typeId", "")).upper()
            existing = None
            for name in MULTIFIELDS:
                existing = existing or _find_mf(record[name], key)
            if existing is not None:
                if item.get("value", existing["VALUE"]) == "":
                    record[existing["TYPE_ID"]].remove(existing)
                else:
                    existing["VALUE"] = str(item.get("value", existing["VALUE"]))
                    existing["VALUE_TYPE"] = item.get("valueType", existing["VALUE_TYPE"])
            elif kind in MULTIFIELDS and item.get("value"):
                record[kind].append(self._mf(kind, str(item["value"]), item.get("valueType")))


def _find_mf(items: list[dict[str, Any]], mf_id: Any) -> dict[str, Any] | None:
    if mf_id in (None, ""):
        return None
    for item in items:
        if str(item["ID"]) == str(mf_id):
            return item
    return None


def _normalise_scalar(key: str, value: Any) -> Any:
    if key in NUMERIC and value not in (None, ""):
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    return value


def _legacy_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return [_legacy_value(v) for v in value]
    return value


def scalar_names(entity: str, record: dict[str, Any]) -> list[str]:
    names = list(COMMON) + list(FIELDS[entity])
    names += sorted(k for k in record if k.startswith("UF_"))
    if entity in HAS_MULTI:
        names += ["HAS_PHONE", "HAS_EMAIL"]
    return names


def legacy_view(
    entity: str, record: dict[str, Any], select: list[str] | None = None
) -> dict[str, Any]:
    """The legacy UPPER_CASE shape; without ``select`` every field plus non-empty multifields."""
    full = _full_legacy(entity, record)
    if select is None:
        return {k: v for k, v in full.items() if k not in MULTIFIELDS or v}
    wanted: list[str] = ["ID"]
    for name in (s.upper() for s in select):
        if name == "*":
            wanted += [n for n in scalar_names(entity, record) if not n.startswith("UF_")]
        elif name == "UF_*":
            wanted += [n for n in scalar_names(entity, record) if n.startswith("UF_")]
        else:
            wanted.append(name)
    out: dict[str, Any] = {}
    for name in wanted:
        if name in MULTIFIELDS:
            if full.get(name):
                out[name] = full[name]
        elif name in full:
            out[name] = full[name]
    return out


def _full_legacy(entity: str, record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in scalar_names(entity, record):
        out[name] = _legacy_value(record.get(name))
    if entity in HAS_MULTI:
        out["HAS_PHONE"] = "Y" if record["PHONE"] else "N"
        out["HAS_EMAIL"] = "Y" if record["EMAIL"] else "N"
        for name in MULTIFIELDS:
            out[name] = [_legacy_value(dict(item)) for item in record[name]]
    return out


def item_view(
    entity: str, record: dict[str, Any], select: list[str] | None = None
) -> dict[str, Any]:
    """The ``crm.item.*`` camelCase shape, numbers as numbers, multifields in ``fm``."""
    out: dict[str, Any] = {"entityTypeId": ENTITY_TYPES[entity]}
    for name in scalar_names(entity, record):
        value = record.get(name)
        if name in ("HAS_PHONE", "HAS_EMAIL"):
            value = "Y" if record[name.removeprefix("HAS_")] else "N"
        out[camel(name)] = value
    if entity == "deal":
        out["contactIds"] = [record["CONTACT_ID"]] if record.get("CONTACT_ID") else []
    fm = [
        {"id": i["ID"], "typeId": i["TYPE_ID"], "valueType": i["VALUE_TYPE"], "value": i["VALUE"]}
        for name in MULTIFIELDS
        for i in record.get(name, [])
    ]
    if select is None or "*" in select:
        if entity in HAS_MULTI:
            out["fm"] = fm
        return out
    keep = {"id", *select}
    return {k: v for k, v in out.items() if k in keep}


def from_camel(entity: str, key: str, record: dict[str, Any]) -> str:
    """Map a camelCase ``crm.item`` field name back to the stored UPPER_CASE one."""
    for name in [*scalar_names(entity, record), *MULTIFIELDS, "CONTACT_IDS"]:
        if camel(name) == key:
            return name
    return key.upper()


# -- filters --------------------------------------------------------------------------------------
_PREFIXES = ("!=%", "!%", ">=", "<=", "!@", "=%", "%=", "!=", ">", "<", "@", "%", "=", "!")


def split_key(key: str) -> tuple[str, str]:
    """``">=DATE_CREATE"`` → (">=", "DATE_CREATE")."""
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return prefix, key[len(prefix) :]
    return "", key


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _cmp(a: Any, b: Any) -> int:
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    sa, sb = str(a or "").lower(), str(b or "").lower()
    return (sa > sb) - (sa < sb)


def _like(value: Any, pattern: str) -> bool:
    glob = str(pattern).lower().replace("%", "*").replace("_", "?")
    return fnmatch.fnmatchcase(str(value or "").lower(), glob)


def _test_one(op: str, actual: Any, expected: Any) -> bool:
    candidates = actual if isinstance(actual, list) else [actual]
    wanted = (
        expected
        if isinstance(expected, list)
        else list(expected.values())
        if isinstance(expected, dict)
        else None
    )
    if op in ("@", "!@"):
        pool = wanted if wanted is not None else [expected]
        hit = any(_cmp(c, w) == 0 for c in candidates for w in pool)
        return hit if op == "@" else not hit
    if wanted is not None and op in ("", "="):
        return any(_cmp(c, w) == 0 for c in candidates for w in wanted)
    if op in ("", "="):
        return any(_cmp(c, expected) == 0 for c in candidates)
    if op in ("!", "!="):
        return all(_cmp(c, expected) != 0 for c in candidates)
    if op in (">", ">=", "<", "<="):
        results = {
            ">": lambda r: r > 0,
            ">=": lambda r: r >= 0,
            "<": lambda r: r < 0,
            "<=": lambda r: r <= 0,
        }
        return any(c not in (None, "") and results[op](_cmp(c, expected)) for c in candidates)
    if op == "%":
        return any(str(expected).lower() in str(c or "").lower() for c in candidates)
    if op in ("=%", "%="):
        return any(_like(c, str(expected)) for c in candidates)
    if op == "!%":
        return not any(str(expected).lower() in str(c or "").lower() for c in candidates)
    if op == "!=%":
        return not any(_like(c, str(expected)) for c in candidates)
    return False


def matches(get: Callable[[str], Any], flt: dict[str, Any]) -> bool:
    """Apply a Bitrix24 filter (prefixes, nested groups with ``logic``) to one record."""
    logic = str(flt.get("logic", flt.get("LOGIC", "AND"))).upper()
    results: list[bool] = []
    for key, expected in flt.items():
        if key.upper() == "LOGIC":
            continue
        if re.fullmatch(r"\d+", str(key)) and isinstance(expected, dict):
            results.append(matches(get, expected))
            continue
        op, name = split_key(str(key))
        results.append(_test_one(op, get(name), expected))
    return any(results) if logic == "OR" else all(results)


def filter_fields(flt: dict[str, Any]) -> list[str]:
    """Every field name a filter tests (prefixes stripped, nested groups walked)."""
    names: list[str] = []
    for key, value in flt.items():
        if str(key).upper() == "LOGIC":
            continue
        if re.fullmatch(r"\d+", str(key)) and isinstance(value, dict):
            names += filter_fields(value)
            continue
        names.append(split_key(str(key))[1])
    return names


def candidates(records: dict[int, dict[str, Any]], flt: dict[str, Any]) -> list[dict[str, Any]]:
    """Records that may match: only the listed ones for a top-level ``@ID``/``ID`` (AND) filter.

    A shortcut, not a filter: the caller still applies ``matches``. It keeps 50 lookups of 50
    ids each from scanning every record 50 times.
    """
    if str(flt.get("logic", flt.get("LOGIC", "AND"))).upper() != "OR":
        for key in ("@ID", "@id", "ID", "id", "=ID", "=id"):
            if key in flt:
                raw = flt[key]
                values = list(raw.values()) if isinstance(raw, dict) else raw
                values = values if isinstance(values, list | tuple) else [values]
                try:
                    ids = sorted({int(v) for v in values})
                except (TypeError, ValueError):
                    break
                return [records[i] for i in ids if i in records]
        for key in (">ID", ">id", ">=ID", ">=id"):
            if key in flt:
                try:
                    low = int(flt[key])
                except (TypeError, ValueError):
                    break
                # From the first id past the cursor on, in ID order (a cursor page reads 50).
                keys = sorted(records)
                at = (
                    bisect.bisect_right(keys, low)
                    if key[1] != "="
                    else bisect.bisect_left(keys, low)
                )
                return list(map(records.__getitem__, keys[at:]))
    return list(records.values())


def legacy_getter(entity: str, record: dict[str, Any]) -> Callable[[str], Any]:
    def get(name: str) -> Any:
        name = name.upper()
        if name in MULTIFIELDS:
            return [i["VALUE"] for i in record.get(name, [])]
        if name in ("HAS_PHONE", "HAS_EMAIL"):
            return "Y" if record.get(name.removeprefix("HAS_")) else "N"
        return record.get(name)

    return get


def item_getter(entity: str, record: dict[str, Any]) -> Callable[[str], Any]:
    legacy = legacy_getter(entity, record)
    return lambda name: legacy(from_camel(entity, name, record))


def sort_records(
    rows: list[dict[str, Any]], order: dict[str, Any], get_key: Callable[[dict[str, Any], str], Any]
) -> list[dict[str, Any]]:
    """Stable multi-key sort; default ``ID ASC``."""
    keys = list(order.items()) or [("ID", "ASC")]
    for name, direction in reversed(keys):
        desc = str(direction).upper() == "DESC"
        rows.sort(key=_sorter(get_key, name), reverse=desc)
    return rows


def _sorter(
    get_key: Callable[[dict[str, Any], str], Any], name: str
) -> Callable[[dict[str, Any]], tuple[int, float, str]]:
    return lambda row: _sort_key(get_key(row, name))


def _sort_key(value: Any) -> tuple[int, float, str]:
    number = _num(value)
    if number is not None:
        return (0, number, "")
    return (1, 0.0, str(value or "").lower())
