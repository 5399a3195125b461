"""Deterministic, realistic CRM data: contacts, companies, deals and leads for a portal."""

from __future__ import annotations

import random
from typing import Any

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


def _phones(rng: random.Random) -> list[dict[str, Any]]:
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


def seed_portal(emu: Emulator, portal: Portal, n: int, seed: int | None = None) -> dict[str, int]:
    """Add ``n`` contacts and ``n // 2`` companies, deals and leads; same seed → same data."""
    rng = random.Random(seed if seed is not None else emu.config.seed * 7919 + portal.index)
    crm = portal.crm
    now = emu.clock.now()
    with emu.lock:
        companies = []
        for i in range(max(n // 2, 1)):
            suffix = "" if i < len(COMPANIES) else f" {i // len(COMPANIES) + 1}"
            name = f"{COMPANIES[i % len(COMPANIES)]}{suffix}"
            domain = name.lower().replace(" ", "") + ".example.com"
            fields: dict[str, Any] = {
                "TITLE": name,
                "COMPANY_TYPE": "CUSTOMER",
                "INDUSTRY": "IT",
                "PHONE": _phones(rng),
                "EMAIL": [{"VALUE": f"info@{domain}", "VALUE_TYPE": "WORK"}]
                if rng.random() < 0.8
                else [],
                "WEB": [{"VALUE": f"https://{domain}", "VALUE_TYPE": "WORK"}],
                **_opt_outs(rng),
            }
            companies.append(crm.add("company", fields, rng.choice([1, 2]), now))
        contacts = []
        for _ in range(n):
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
                "PHONE": _phones(rng),
                "EMAIL": _emails(rng, first, last, domain),
                **_opt_outs(rng),
            }
            contacts.append(crm.add("contact", fields, rng.choice([1, 2]), now))
        for i in range(max(n // 2, 1)):
            fields = {
                "TITLE": f"Deal #{i + 1}",
                "STAGE_ID": rng.choice(DEAL_STAGES),
                "CATEGORY_ID": 0,
                "OPPORTUNITY": f"{rng.randint(5, 500) * 100}.00",
                "CURRENCY_ID": "EUR",
                "CONTACT_ID": rng.choice(contacts) if contacts else None,
                "COMPANY_ID": rng.choice(companies),
            }
            crm.add("deal", fields, rng.choice([1, 2]), now)
        for _ in range(max(n // 2, 1)):
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
            crm.add("lead", fields, rng.choice([1, 2]), now)
    return {name: len(records) for name, records in crm.records.items()}
