import json
import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from marketapp.errors import AppError
from marketapp.logging import JsonFormatter, redact


@pytest.fixture
def failing_app(app: Flask) -> Flask:
    def crash() -> str:
        raise RuntimeError("internal detail access_token=abc123")

    def refuse() -> str:
        raise AppError("The phone number is missing.", status=422, code="invalid_phone")

    app.add_url_rule("/_test/crash", view_func=crash)
    app.add_url_rule("/_test/refuse", view_func=refuse)
    return app


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/nope", 404, "not_found"),
        ("/_test/crash", 500, "internal_error"),
        ("/_test/refuse", 422, "invalid_phone"),
    ],
)
def test_errors_as_json(failing_app: Flask, path: str, status: int, code: str) -> None:
    resp = failing_app.test_client().get(path, headers={"Accept": "application/json"})
    assert resp.status_code == status
    assert resp.json is not None and resp.json["error"] == code
    assert "Traceback" not in resp.get_data(as_text=True)
    assert "abc123" not in resp.get_data(as_text=True)


def test_errors_as_html_without_stack_trace(failing_app: Flask) -> None:
    client: FlaskClient = failing_app.test_client()
    resp = client.get("/_test/crash", headers={"Accept": "text/html"})
    assert resp.status_code == 500
    assert resp.mimetype == "text/html"
    body = resp.get_data(as_text=True)
    assert "Internal Server Error" in body and "RuntimeError" not in body and "abc123" not in body
    resp = client.get("/_test/refuse")
    assert resp.status_code == 422 and "The phone number is missing." in resp.get_data(as_text=True)


def test_method_not_allowed_is_4xx(client: FlaskClient) -> None:
    assert client.post("/healthz").status_code == 405


def test_logs_never_print_secrets(failing_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        failing_app.test_client().get("/_test/crash")
    formatted = [JsonFormatter().format(r) for r in caplog.records]
    assert formatted and all("abc123" not in line for line in formatted)
    assert "***" in formatted[0]


@pytest.mark.parametrize(
    "value",
    [
        {"auth": {"access_token": "s6p6", "member_id": "m1"}},
        {"AUTH_ID": "s6p6", "REFRESH_ID": "s6p6", "APPLICATION_TOKEN": "s6p6"},
        "GET /oauth/token/?grant_type=refresh_token&client_secret=s6p6&refresh_token=s6p6",
        '{"access_token": "s6p6", "refresh_token":"s6p6"}',
        "auth[application_token]=s6p6&auth[member_id]=m1",
        ["client_secret=s6p6"],
    ],
)
def test_redact(value: object) -> None:
    assert "s6p6" not in json.dumps(redact(value))


def test_redact_keeps_harmless_fields() -> None:
    assert redact({"member_id": "m1", "domain": "portal.bitrix24.com"}) == {
        "member_id": "m1",
        "domain": "portal.bitrix24.com",
    }
