"""PortalClient against ``responses``: calls, refresh, retries, pauses, batch, lists, errors."""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from marketapp.bitrix import errors
from marketapp.bitrix.client import PortalClient, RetryPolicy, encode_query
from marketapp.bitrix.limiter import Unlimited
from marketapp.bitrix.oauth import Token

from .fakes import ENDPOINT, FakeClock, FakeTokens


def make_client(tokens: FakeTokens | None = None, **kwargs: Any) -> tuple[PortalClient, FakeClock]:
    clock = FakeClock()
    client = PortalClient(
        tokens or FakeTokens(),
        kwargs.pop("limiter", Unlimited()),
        requests.Session(),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
        **kwargs,
    )
    return client, clock


def body_of(call: Any) -> dict[str, Any]:
    return json.loads(call.request.body)


@responses.activate
def test_call_sends_json_with_auth_and_returns_result() -> None:
    responses.post(
        ENDPOINT + "crm.contact.list",
        json={"result": [{"ID": "1"}], "total": 120, "next": 50, "time": {"duration": 0.1}},
    )
    client, _ = make_client()
    result = client.call("crm.contact.list", {"filter": {"NAME": "A"}})
    assert result.result == [{"ID": "1"}] and result.total == 120 and result.next == 50
    sent = body_of(responses.calls[0])
    assert sent == {"filter": {"NAME": "A"}, "auth": "old-token"}


@responses.activate
def test_refresh_and_retry_on_expired_token() -> None:
    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        if json.loads(request.body or "{}")["auth"] == "old-token":
            return (
                401,
                {},
                json.dumps(
                    {
                        "error": "expired_token",
                        "error_description": "The access token provided has expired.",
                    }
                ),
            )
        return 200, {}, json.dumps({"result": {"ID": 1}})

    responses.add_callback(responses.POST, ENDPOINT + "user.current", callback=reply)
    tokens = FakeTokens()
    client, _ = make_client(tokens)
    assert client.call("user.current").result == {"ID": 1}
    assert tokens.refreshes == 1 and len(responses.calls) == 2


@responses.activate
def test_known_past_expiry_refreshes_before_calling() -> None:
    responses.post(ENDPOINT + "user.current", json={"result": {"ID": 1}})
    clock = FakeClock()
    tokens = FakeTokens(token=Token("old-token", ENDPOINT, expires_at=clock.now - 1))
    client, _ = make_client(tokens)
    client.call("user.current")
    assert tokens.refreshes == 1 and body_of(responses.calls[0])["auth"] == "new-token"


@responses.activate
def test_second_expired_token_is_raised_not_looped() -> None:
    responses.post(ENDPOINT + "user.current", status=401, json={"error": "expired_token"})
    tokens = FakeTokens()
    client, _ = make_client(tokens)
    with pytest.raises(errors.ExpiredToken):
        client.call("user.current")
    assert tokens.refreshes == 1 and len(responses.calls) == 2


@responses.activate
def test_no_auth_found_after_refresh_marks_needs_reauth() -> None:
    responses.post(
        ENDPOINT + "user.current",
        status=401,
        json={"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"},
    )
    tokens = FakeTokens()
    client, _ = make_client(tokens)
    with pytest.raises(errors.NeedsReauth):
        client.call("user.current")
    assert tokens.reauth_marked and isinstance(errors.NeedsReauth("x"), errors.PortalUnavailable)


@responses.activate
def test_503_backs_off_then_succeeds() -> None:
    limit = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    responses.post(ENDPOINT + "crm.deal.add", status=503, json=limit)
    responses.post(ENDPOINT + "crm.deal.add", status=503, json=limit)
    responses.post(ENDPOINT + "crm.deal.add", json={"result": 5})
    client, clock = make_client()
    # Not idempotent, but QUERY_LIMIT_EXCEEDED means nothing ran: safe to repeat.
    assert client.call("crm.deal.add", {"fields": {"TITLE": "x"}}).result == 5
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.5 and 0 <= clock.sleeps[1] <= 1.0  # jittered, growing cap


@responses.activate
def test_503_retries_are_bounded() -> None:
    responses.post(ENDPOINT + "crm.deal.get", status=503, json={"error": "QUERY_LIMIT_EXCEEDED"})
    client, clock = make_client(retry=RetryPolicy(attempts=3))
    with pytest.raises(errors.QueryLimitExceeded):
        client.call("crm.deal.get", {"id": 1})
    assert len(responses.calls) == 3 and len(clock.sleeps) == 2


@responses.activate
def test_500_on_a_write_is_not_repeated_but_a_read_is() -> None:
    responses.post(ENDPOINT + "crm.deal.add", status=500, json={"error": "INTERNAL_SERVER_ERROR"})
    responses.post(ENDPOINT + "crm.deal.get", status=500, json={"error": "INTERNAL_SERVER_ERROR"})
    responses.post(ENDPOINT + "crm.deal.get", json={"result": {"ID": "1"}})
    client, _ = make_client()
    with pytest.raises(errors.ServerError):
        client.call("crm.deal.add", {"fields": {}})
    assert client.call("crm.deal.get", {"id": 1}).result == {"ID": "1"}
    assert len(responses.calls) == 3


@responses.activate
def test_transport_errors_retry_for_reads() -> None:
    responses.post(ENDPOINT + "crm.deal.list", body=requests.ReadTimeout())
    responses.post(ENDPOINT + "crm.deal.list", json={"result": []})
    client, clock = make_client()
    assert client.call("crm.deal.list").result == []
    assert len(clock.sleeps) == 1


@responses.activate
def test_429_waits_for_operating_reset_at() -> None:
    clock_start = FakeClock().now
    reset_at = clock_start + 42
    responses.post(
        ENDPOINT + "crm.deal.list",
        status=429,
        json={
            "error": "OPERATION_TIME_LIMIT",
            "error_description": "Method is blocked due to operation time limit.",
            "time": {"operating_reset_at": reset_at},
        },
    )
    responses.post(
        ENDPOINT + "crm.deal.list",
        json={"result": [], "time": {"operating": 3.5, "operating_reset_at": reset_at + 600}},
    )
    limiter = Unlimited()
    client, clock = make_client(limiter=limiter)
    assert client.call("crm.deal.list").result == []
    assert clock.sleeps == [42]
    assert limiter.pauses["crm.deal.list"] == reset_at
    assert limiter.operating["crm.deal.list"] == (3.5, reset_at + 600)


@responses.activate
def test_429_pause_is_shared_and_long_pauses_raise() -> None:
    limiter = Unlimited()
    client, clock = make_client(limiter=limiter)
    limiter.pause("crm.deal.list", clock.now + 3600)  # another process saw a 429
    with pytest.raises(errors.OperationTimeLimit) as caught:
        client.call("crm.deal.list")
    assert caught.value.reset_at == clock.now + 3600 and not responses.calls
    responses.post(ENDPOINT + "crm.deal.get", json={"result": {}})
    client.call("crm.deal.get", {"id": 1})  # other methods are not paused


@pytest.mark.parametrize(
    ("status", "envelope", "cls"),
    [
        (400, {"error": "", "error_description": "Not found"}, errors.NotFound),
        (400, {"error": "", "error_description": "Access denied."}, errors.AccessDenied),
        (
            400,
            {"error": "", "error_description": "Parameter 'fields' must be array."},
            errors.BadRequest,
        ),
        (
            400,
            {"error": 404, "error_description": "The business process is not found."},
            errors.NotFound,
        ),
        (
            403,
            {"error": "ACCESS_DENIED", "error_description": "Access denied!"},
            errors.AccessDenied,
        ),
        (
            403,
            {
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges.",
            },
            errors.InsufficientScope,
        ),
        (
            404,
            {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
            errors.MethodNotFound,
        ),
        (
            400,
            {"error": "ERROR_ACTIVITY_ALREADY_INSTALLED", "error_description": "x"},
            errors.BadRequest,
        ),
        (503, {"error": "OVERLOAD_LIMIT", "error_description": "blocked"}, errors.OverloadLimit),
        (500, {"error": "PORTAL_DELETED", "error_description": "gone"}, errors.PortalDeleted),
    ],
)
@responses.activate
def test_errors_surface_at_once_typed(
    status: int, envelope: dict[str, Any], cls: type[errors.BitrixError]
) -> None:
    responses.post(ENDPOINT + "crm.contact.get", status=status, json=envelope)
    client, clock = make_client()
    with pytest.raises(cls) as caught:
        client.call("crm.contact.get", {"id": 5})
    assert type(caught.value) is cls
    assert caught.value.code == envelope["error"] and caught.value.status == status
    assert caught.value.description == envelope["error_description"]
    assert len(responses.calls) == 1 and clock.sleeps == []
    assert "old-token" not in str(caught.value)


def test_empty_error_message_mentions_description() -> None:
    error = errors.from_envelope({"error": "", "error_description": "Not found"}, 400)
    assert isinstance(error, errors.NotFound) and str(error) == "'' (HTTP 400): Not found"


@responses.activate
def test_non_json_gateway_page() -> None:
    responses.post(ENDPOINT + "crm.deal.add", status=502, body="<html>Bad gateway</html>")
    client, _ = make_client()
    with pytest.raises(errors.ServerError) as caught:
        client.call("crm.deal.add", {"fields": {}})
    assert caught.value.status == 502


@responses.activate
def test_domain_move_302_resends_to_new_host() -> None:
    responses.post(
        ENDPOINT + "user.current",
        status=302,
        headers={"Location": "https://new.example.com/rest/user.current"},
    )
    responses.post("https://new.example.com/rest/user.current", json={"result": {"ID": 1}})
    tokens = FakeTokens()
    client, _ = make_client(tokens)
    assert client.call("user.current").result == {"ID": 1}
    assert tokens.token.client_endpoint == "https://new.example.com/rest/"


def test_insecure_endpoint_refused() -> None:
    tokens = FakeTokens(token=Token("t", "http://portal.example.com/rest/"))
    client, _ = make_client(tokens, allow_insecure_loopback=True)
    with pytest.raises(errors.ConfigError, match="https"):
        client.call("user.current")


def test_encode_query_php_brackets() -> None:
    query = encode_query(
        {
            "fields": {"PHONE": [{"VALUE": "+1 555", "VALUE_TYPE": "WORK"}], "OPENED": True},
            "flag": False,
            "empty": None,
            "text": "a&b=c",
            "id": "$result[find][0][ID]",
            "title": "Deal for $result[c][NAME]!",
        }
    )
    assert query == (
        "fields[PHONE][0][VALUE]=%2B1%20555&fields[PHONE][0][VALUE_TYPE]=WORK&fields[OPENED]=Y"
        "&flag=N&empty=&text=a%26b%3Dc&id=$result[find][0][ID]"
        "&title=Deal%20for%20$result[c][NAME]%21"
    )
    assert parse_qs(query, keep_blank_values=True)["fields[PHONE][0][VALUE]"] == ["+1 555"]
