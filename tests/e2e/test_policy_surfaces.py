"""Issue 12's surfaces as an outsider and an ordinary employee probe them, over HTTP.

- ``POST /api/settings`` with hostile ``send_window``/``caps``: user 2 (no admin) always gets
  403; the admin gets 400 (or 413 for a body over the limit), never a 500, and a refused value
  changes nothing (a time with a final newline included).
- ``/u/<token>``: tampered, forged, other-portal, overlong and odd tokens by every method, huge
  bodies: never a 500, never a 200 page, nothing written; the good link applies once.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from marketapp import consent
from marketapp.consent import Link
from marketapp.db import db_session
from marketapp.models import ChannelSettings, Portal, Suppression
from tests.e2e.harness import Installed
from tests.support import session_for

pytestmark = pytest.mark.e2e

WINDOW = {"days": ["mon"], "start": "09:00", "end": "20:00"}
HOSTILE: list[Any] = [
    {"send_window": {"start": "9" * 100_000}},
    {"send_window": {"start": None}},
    {"send_window": {"start": 900}},
    {"send_window": {"start": "09:00\n"}},
    {"send_window": {"end": "20:00\n"}},
    {"send_window": {"start": "２３:00"}},
    {"send_window": {"days": "mon"}},
    {"send_window": {"days": [None]}},
    {"send_window": {"days": ["mon"] * 10_000}},
    {"send_window": {"zone_field": "A" * 100_000}},
    {"send_window": {"zone_field": 5}},
    {"send_window": {"zone": "recipient", "zone_field": "UF_CRM_TZ\n"}},
    {"send_window": {"zone": "recipient", "zone_field": "../../etc"}},
    {"send_window": []},
    {"send_window": 1},
    {"caps": None},
    {"caps": [None]},
    {"caps": [1]},
    {"caps": [{"channel": "sms", "count": 1.5, "period": "day"}]},
    {"caps": [{"channel": "sms", "count": 10**30, "period": "day"}]},
    {"caps": [{"channel": "sms", "count": -1, "period": "day"}]},
    {"caps": [{"channel": ["sms"], "count": 1, "period": "day"}]},
    {"caps": [{"channel": "sms", "count": 1, "period": "day"}] * 100_000},
    {"caps": "x" * 1000},
    [1, 2],
    "caps",
    None,
]


def post(inst: Installed, headers: dict[str, str], body: Any) -> requests.Response:
    return requests.post(f"{inst.app.url}/api/settings", json=body, headers=headers, timeout=30)


def stored(inst: Installed) -> tuple[Any, Any]:
    with inst.app.app.app_context():
        row = db_session().scalars(select(ChannelSettings)).one()
        return row.send_window, row.caps


def test_hostile_window_and_caps_are_refused(installed: Installed) -> None:
    admin = session_for(installed)
    user = session_for(installed, user_id=2)
    assert post(installed, admin, {"send_window": WINDOW}).status_code == 200
    before = stored(installed)
    for body in HOSTILE:
        shown = str(body)[:100]
        assert post(installed, user, body).status_code in (403, 413), shown
        answer = post(installed, admin, body)
        assert answer.status_code in (400, 413), (shown, answer.status_code, answer.text[:300])
        assert stored(installed) == before, shown
    for raw in (b"{" * 100_000, b"[" * 100_000 + b"]" * 100_000):
        headers = {**admin, "Content-Type": "application/json"}
        answer = requests.post(
            f"{installed.app.url}/api/settings", data=raw, headers=headers, timeout=30
        )
        assert answer.status_code == 400


def suppressions(inst: Installed) -> int:
    with inst.app.app.app_context():
        return int(db_session().scalar(select(func.count()).select_from(Suppression)) or 0)


def test_unsubscribe_refuses_every_bad_token_and_applies_a_good_one_once(
    installed: Installed,
) -> None:
    url = installed.app.url
    with installed.app.app.app_context():
        portal = db_session().scalars(select(Portal)).one()
        good = consent.make_token(Link(portal.id, "CONTACT", 5, "sms"), portal.member_id)
        unknown = consent.make_token(Link(portal.id + 1, "CONTACT", 5, "sms"), portal.member_id)
        foreign = consent.make_token(Link(portal.id, "CONTACT", 5, "sms"), "x" * 32)
    bad = [
        good[:-1], good + "A", good.swapcase(), unknown, foreign, "A" * 64, "A" * 65, "A" * 5000,
        "%00", "..%2f..%2fetc", "<script>alert(1)</script>", good + "%0d%0aSet-Cookie:x=1",
        "ЖЖЖЖ", "_" * 30, "-" * 31, "CP" + "_" * 28,
    ]  # fmt: skip
    for token in bad:
        for method in ("GET", "POST", "HEAD"):
            for body in (None, {"token": token}, {"List-Unsubscribe": "One-Click"}):
                answer = requests.request(
                    method, f"{url}/u/{token}", data=body, timeout=10, allow_redirects=False
                )
                assert 400 <= answer.status_code < 500, (token, method, body, answer.status_code)
                assert "<script>alert" not in answer.text
                assert "Set-Cookie" not in answer.headers
    for method in ("PUT", "DELETE", "PATCH"):
        assert requests.request(method, f"{url}/u/{good}", timeout=10).status_code == 405
    huge = b"token=" + b"A" * (3 * 1024 * 1024)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert requests.post(f"{url}/u/{good}", data=huge, headers=form, timeout=30).status_code == 413
    assert (
        requests.post(f"{url}/u/{good}", data={"token": good * 1000}, timeout=30).status_code == 400
    )
    as_file = {"List-Unsubscribe": ("a", b"One-Click")}  # a file part is no form field
    assert requests.post(f"{url}/u/{good}", files=as_file, timeout=30).status_code == 400
    assert suppressions(installed) == 0

    assert requests.get(f"{url}/u/{good}", timeout=10).status_code == 200
    assert suppressions(installed) == 0  # a GET (a link scanner) changes nothing
    one_click = {"List-Unsubscribe": "One-Click"}
    for _twice in range(2):
        answer = requests.post(f"{url}/u/{good}", data=one_click, timeout=10)
        assert answer.status_code == 200
        assert suppressions(installed) == 1
