"""Accepting robot calls: a duplicate delivered at the same moment is a no-op, never a 500."""

import threading

from flask import Flask
from sqlalchemy import func, select

from marketapp.bitrix.payloads import parse_robot_call
from marketapp.db import db_session
from marketapp.models import Portal, RobotCall
from marketapp.robots import accept_call
from tests.support import add_portal

CALL = {
    "workflow_id": "66f0a1b2c3d4e5.12345678",
    "code": "send_sms",
    "document_id": ["crm", "CCrmDocumentContact", "CONTACT_42"],
    "document_type": ["crm", "CCrmDocumentContact", "CONTACT"],
    "event_token": "66f0a1b2c3d4e5.12345678|A1_1_2_3|abc.def",
    "properties": {"text": "Hello"},
    "ts": "1700000000",
    "auth": {
        "member_id": "a" * 32,
        "application_token": "plain-app-token-789",
        "domain": "portal.bitrix24.com",
        "client_endpoint": "https://portal.bitrix24.com/rest/",
        "server_endpoint": "https://oauth.bitrix.info/rest/",
    },
}


def test_simultaneous_duplicates_store_one_call(app: Flask) -> None:
    with app.app_context():
        add_portal(db_session())
    payload = parse_robot_call(CALL)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        with app.app_context():
            portal_row = db_session().scalars(select(Portal)).one()
            barrier.wait()
            results.append(accept_call(db_session(), portal_row, payload))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    with app.app_context():
        assert db_session().scalar(select(func.count(RobotCall.id))) == 1
