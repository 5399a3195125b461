"""Every library scenario previews on the seeded emulator portal in Russian and English; the
preview (what each record would get, step by step, and the totals) is compared with a golden
text file in ``tests/scenarios/golden/`` that a person can read.

After an intended change, regenerate the files and review the diff::

    MARKETAPP_UPDATE_GOLDEN=1 .venv/bin/pytest tests/scenarios/test_preview_golden.py
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from marketapp.bench_preview import PreviewPortal
from marketapp.scenarios.library import library_documents, load_library
from marketapp.scenarios.preview import Selection, preview_scenario, report_text
from tests.scenarios.test_preview import CONSENT, portal, server

pytestmark = pytest.mark.e2e
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MARKETAPP_UPDATE_GOLDEN") == "1"
KEYS = [name.removesuffix(".json") for name, _text in library_documents()]
RECORDS = 6
LAUNCHED = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "assign-and-notify": {
        "en": {"manager": 2, "note": "Call back within a day."},
        "ru": {"manager": 2, "note": "Перезвонить в течение дня."},
    },
    "event-invitation": {
        "en": {
            "event_name": "Spring open day",
            "event_date": "2025-03-20T18:00:00+01:00",
            "venue": "Berlin, Alexanderplatz 1",
            "registration_url": "https://example.com/r",
        },
        "ru": {
            "event_name": "День открытых дверей",
            "event_date": "2025-03-20T18:00:00+01:00",
            "venue": "Москва, Тверская 1",
            "registration_url": "https://example.com/r",
        },
    },  # fmt: skip
    "post-purchase-feedback": {
        "en": {"review_url": "https://example.com/review"},
        "ru": {"review_url": "https://example.com/review"},
    },
    "payment-reminder": {
        "en": {"payment_details": "IBAN DE00 1234"},
        "ru": {"payment_details": "Р/с 4070 2810"},
    },
}

__all__ = ["portal", "server"]


def _preview_text(portal: PreviewPortal, key: str, language: str) -> str:
    defn = next(d for d in load_library(language) if d.key == key)
    entity = defn.entity_types[0]
    rows = portal.emu("GET", f"/portals/{portal.member_id}/crm/{entity.lower()}")
    ids = tuple(int(r["ID"]) for r in rows[:RECORDS])
    with portal.app.app_context():
        preview = portal.preview(
            defn,
            params=PARAMS.get(key, {}).get(language, {}),
            constants={"company_name": "Ромашка" if language == "ru" else "Northwind"},
            launched_at=LAUNCHED,
            language=language,
            channels=CONSENT,
        )
        report = preview_scenario(preview, Selection(entity, ids=ids))
    title = f"{defn.name.get(language)} ({key}, {language}): {entity} {', '.join(map(str, ids))}"
    return report_text(report, f"{title}\nlaunched {LAUNCHED.isoformat()} by user 1")


@pytest.mark.parametrize("language", ["ru", "en"])
def test_library_previews_match_the_golden_files(portal: PreviewPortal, language: str) -> None:
    portal.seed(contacts=8, companies=4, deals=8, leads=6)
    assert len(KEYS) >= 8
    changed = []
    for key in KEYS:
        text = _preview_text(portal, key, language)
        path = GOLDEN / f"{key}.{language}.txt"
        assert "template_error" not in text and "internal_error" not in text, text
        assert "ready" in text, (key, language)  # each scenario acts on some seeded record
        assert "г.." not in text, key  # a long Russian date ends in "г.": no second stop
        if UPDATE:
            GOLDEN.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            changed.append(path.name)
    assert not changed, f"previews differ from {changed}; see the module docstring"
