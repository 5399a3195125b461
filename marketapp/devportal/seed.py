"""Deterministic, realistic CRM data for a portal, and the counts a preview must reproduce.

The mix: about a quarter of the people have no phone, a quarter no e-mail, one in twenty only an
invalid number, one in five opted out of e-mail or SMS (``UF_CRM_NO_EMAIL``/``UF_CRM_NO_SMS``);
owners alternate between users 1 and 2 at random. ``stats`` counts them from the records.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from marketapp.devportal.crm import CrmStore
from marketapp.devportal.state import Emulator, Portal

FIRST = [
    "Anna",
    "Boris",
    "Chloe",
    "David",
    "Elena",
    "Farid",
    "Greta",
    "Hugo",
    "Irina",
    "Jonas",
    "Katya",
    "Liam",
    "Maria",
    "Nikolai",
    "Olga",
    "Pavel",
    "Quinn",
    "Rosa",
    "Sergei",
    "Tanya",
]
LAST = [
    "Ivanova",
    "Smith",
    "Müller",
    "Petrov",
    "García",
    "Kowalski",
    "Novak",
    "Rossi",
    "Dubois",
    "Larsen",
    "Sokolov",
    "Berg",
    "Costa",
    "Nguyen",
    "Okafor",
]
COMPANIES = [
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella Foods",
    "Hooli",
    "Stark Logistics",
    "Wayne Retail",
    "Acme Tools",
    "Vandelay Import",
    "Soylent Farms",
]
POSTS = ["CEO", "Buyer", "Office manager", "CTO", "Accountant", ""]
DEAL_STAGES = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "WON", "LOSE"]
LEAD_STATUSES = ["NEW", "IN_PROCESS", "PROCESSED", "CONVERTED", "JUNK"]
PHONE_TYPES = ["WORK", "MOBILE", "HOME", "OTHER"]
EMAIL_TYPES = ["WORK", "HOME", "MAILING", "OTHER"]


# Numbers no dialling plan accepts (RU, DE, US ...): one digit, letters, a lone country code.
INVALID_PHONES = ["1", "+49", "call me", "+1", "n/a"]
SEGMENTS = ["101", "102", "103"]  # crmmeta.USER_FIELDS contact UF_CRM_SEGMENT item ids


def _phones(rng: random.Random) -> list[dict[str, Any]]:
    if rng.random() < 0.05:
        return [{"VALUE": rng.choice(INVALID_PHONES), "VALUE_TYPE": "MOBILE"}]
    count = rng.choice([0, 1, 1, 2, 3])
    return [
        {"VALUE": f"+49{rng.randint(150_000_0000, 179_999_9999)}", "VALUE_TYPE": PHONE_TYPES[i % 4]}
        for i in range(count)
    ]


def _emails(rng: random.Random, first: str, last: str, domain: str) -> list[dict[str, Any]]:
    count = rng.choice([0, 1, 1, 2])
    local = f"{first}.{last}".lower().replace("ü", "ue").replace("í", "i")
    hosts = [domain, "mail.example.org"]
    return [
        {"VALUE": f"{local}{'' if i == 0 else i}@{hosts[i % 2]}", "VALUE_TYPE": EMAIL_TYPES[i % 4]}
        for i in range(count)
    ]


def _opt_outs(rng: random.Random) -> dict[str, str]:
    # About one record in five opted out of e-mail or SMS; the rest carry explicit "N".
    return {
        "UF_CRM_NO_EMAIL": "Y" if rng.random() < 0.2 else "N",
        "UF_CRM_NO_SMS": "Y" if rng.random() < 0.2 else "N",
    }


def _birthdate(rng: random.Random, now: float) -> str:
    """A birthday for four contacts in five; some fall within the coming week."""
    if rng.random() < 0.2:
        return ""
    today = datetime.fromtimestamp(now, UTC).date()
    day = today + timedelta(days=rng.randint(0, 364))
    year = today.year - rng.randint(20, 65)
    try:
        day = day.replace(year=year)
    except ValueError:  # 29 February in a common year
        day = day.replace(year=year, day=28)
    return f"{day.isoformat()}T00:00:00+00:00"


def _due(rng: random.Random, now: float) -> str:
    when = datetime.fromtimestamp(now, UTC) + timedelta(days=rng.randint(-10, 30))
    return f"{when.date().isoformat()}T00:00:00+00:00"


def seed_portal(
    emu: Emulator,
    portal: Portal,
    n: int,
    seed: int | None = None,
    counts: dict[str, int] | None = None,
) -> dict[str, int]:
    """Add ``n`` contacts and ``n // 2`` companies, deals and leads; same seed → same data.

    ``counts`` overrides per entity (``{"contacts": 10000, "deals": 0}``).
    """
    rng = random.Random(seed if seed is not None else emu.config.seed * 7919 + portal.index)
    wanted = {"contacts": n, "companies": max(n // 2, 1), "deals": max(n // 2, 1)}
    wanted["leads"] = wanted["deals"]
    wanted.update(counts or {})
    now = emu.clock.now()
    with emu.lock:
        companies = [_company(portal.crm, rng, i, now) for i in range(wanted["companies"])]
        contacts = [_contact(portal.crm, rng, companies, now) for _ in range(wanted["contacts"])]
        for i in range(wanted["deals"]):
            _deal(portal.crm, rng, i, contacts, companies, now)
        for _ in range(wanted["leads"]):
            _lead(portal.crm, rng, now)
    return {name: len(records) for name, records in portal.crm.records.items()}


def _company(crm: CrmStore, rng: random.Random, i: int, now: float) -> int:
    suffix = "" if i < len(COMPANIES) else f" {i // len(COMPANIES) + 1}"
    name = f"{COMPANIES[i % len(COMPANIES)]}{suffix}"
    domain = name.lower().replace(" ", "") + ".example.com"
    fields: dict[str, Any] = {
        "TITLE": name,
        "COMPANY_TYPE": "CUSTOMER",
        "INDUSTRY": "IT",
        "PHONE": _phones(rng),
        "EMAIL": [{"VALUE": f"info@{domain}", "VALUE_TYPE": "WORK"}] if rng.random() < 0.8 else [],
        "WEB": [{"VALUE": f"https://{domain}", "VALUE_TYPE": "WORK"}],
        **_opt_outs(rng),
    }
    return crm.add("company", fields, rng.choice([1, 2]), now)


def _contact(crm: CrmStore, rng: random.Random, companies: list[int], now: float) -> int:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    company = rng.choice(companies + [0])
    domain = "example.com" if not company else f"c{company}.example.com"
    fields = {
        "NAME": first,
        "LAST_NAME": last,
        "POST": rng.choice(POSTS),
        "COMPANY_ID": company or None,
        "TYPE_ID": "CLIENT",
        "SOURCE_ID": rng.choice(["WEB", "CALL", "EMAIL"]),
        "BIRTHDATE": _birthdate(rng, now),
        "PHONE": _phones(rng),
        "EMAIL": _emails(rng, first, last, domain),
        "UF_CRM_SEGMENT": rng.choice(SEGMENTS),
        **_opt_outs(rng),
    }
    return crm.add("contact", fields, rng.choice([1, 2]), now)


def _deal(
    crm: CrmStore, rng: random.Random, i: int, contacts: list[int], companies: list[int], now: float
) -> int:
    fields = {
        "TITLE": f"Deal #{i + 1}",
        "STAGE_ID": rng.choice(DEAL_STAGES),
        "CATEGORY_ID": 0,
        "OPPORTUNITY": f"{rng.randint(5, 500) * 100}.00",
        "CURRENCY_ID": "EUR",
        "CONTACT_ID": rng.choice(contacts) if contacts else None,
        "COMPANY_ID": rng.choice(companies) if companies else None,
        "UF_CRM_PAYMENT_DUE": _due(rng, now),
    }
    return crm.add("deal", fields, rng.choice([1, 2]), now)


def _lead(crm: CrmStore, rng: random.Random, now: float) -> int:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    fields = {
        "TITLE": f"Lead from {first} {last}",
        "NAME": first,
        "LAST_NAME": last,
        "STATUS_ID": rng.choice(LEAD_STATUSES),
        "SOURCE_ID": "WEB",
        "PHONE": _phones(rng),
        "EMAIL": _emails(rng, first, last, "example.net"),
        **_opt_outs(rng),
    }
    return crm.add("lead", fields, rng.choice([1, 2]), now)


# -- what a preview should find -------------------------------------------------------------------
def valid_phone(value: str) -> bool:
    """Dialable enough: 7 to 15 digits, only phone punctuation besides (no letters)."""
    digits = re.sub(r"\D", "", value)
    return 7 <= len(digits) <= 15 and re.fullmatch(r"[+\d\s()./-]+", value) is not None


def stats(crm: CrmStore, entity: str, assigned_by: int | None = None) -> dict[str, Any]:
    """Counts per reachability; ``email``/``sms`` follow the preview's order of checks.

    ``email``: no address, then opted out, else sendable. ``sms``: no phone, then no valid
    phone, then opted out, else sendable. ``assigned_by`` counts what that user owns.
    """
    rows = [
        r
        for r in crm.records[entity].values()
        if assigned_by is None or r.get("ASSIGNED_BY_ID") == assigned_by
    ]
    out: dict[str, Any] = {"total": len(rows), "by_assignee": {}}
    flat = dict.fromkeys(
        ["without_phone", "without_email", "invalid_phone", "opted_out_email", "opted_out_sms"], 0
    )
    email = dict.fromkeys(["no_email", "opted_out", "sendable"], 0)
    sms = dict.fromkeys(["no_phone", "invalid_phone", "opted_out", "sendable"], 0)
    for r in rows:
        owner = str(r.get("ASSIGNED_BY_ID"))
        out["by_assignee"][owner] = out["by_assignee"].get(owner, 0) + 1
        phones = [p["VALUE"] for p in r.get("PHONE", [])]
        has_valid = any(valid_phone(p) for p in phones)
        no_email, no_sms = r.get("UF_CRM_NO_EMAIL") == "Y", r.get("UF_CRM_NO_SMS") == "Y"
        flat["without_phone"] += not phones
        flat["without_email"] += not r.get("EMAIL")
        flat["invalid_phone"] += bool(phones) and not has_valid
        flat["opted_out_email"] += no_email
        flat["opted_out_sms"] += no_sms
        email_key = "no_email" if not r.get("EMAIL") else "opted_out" if no_email else "sendable"
        email[email_key] += 1
        sms_key = (
            "no_phone"
            if not phones
            else "invalid_phone"
            if not has_valid
            else "opted_out"
            if no_sms
            else "sendable"
        )
        sms[sms_key] += 1
    return {**out, **flat, "email": email, "sms": sms}
