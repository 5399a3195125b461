"""Batch splitting, per-command errors, references, and list iteration against ``responses``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from marketapp.bitrix import errors

from .fakes import ENDPOINT
from .test_client import make_client


def batch_reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    """A tiny batch server: ``crm.contact.get?id=N`` answers ``{"ID": N}``, odd ids fail."""
    cmd = json.loads(request.body or "{}")["cmd"]
    result: dict[str, Any] = {}
    result_error: dict[str, Any] = {}
    for key, command in cmd.items():
        method, _, query = command.partition("?")
        ident = int(parse_qs(query)["id"][0])
        if ident % 7 == 0:
            result_error[key] = {"error": "", "error_description": "Not found"}
        else:
            result[key] = {"ID": str(ident)}
    # PHP turns keys "0".."n-1" into a list and an empty map into [].
    keys = list(result)
    if keys == [str(i) for i in range(len(keys))]:
        result = [result[k] for k in keys]  # type: ignore[assignment]
    body = {
        "result": {
            "result": result,
            "result_error": result_error or [],
            "result_total": [],
            "result_next": [],
            "result_time": [],
        }
    }
    return 200, {}, json.dumps(body)


@responses.activate
def test_120_commands_split_into_3_requests_and_merged() -> None:
    responses.add_callback(responses.POST, ENDPOINT + "batch", callback=batch_reply)
    client, _ = make_client()
    commands = {f"c{i}": ("crm.contact.get", {"id": i}) for i in range(1, 121)}
    result = client.batch(commands)
    assert len(responses.calls) == 3
    assert [len(json.loads(c.request.body)["cmd"]) for c in responses.calls] == [50, 50, 20]
    assert len(result.results) + len(result.errors) == 120
    assert result.results["c1"] == {"ID": "1"} and result["c120"] == {"ID": "120"}
    assert set(result.errors) == {f"c{i}" for i in range(7, 121, 7)}
    assert isinstance(result.errors["c14"], errors.NotFound)
    with pytest.raises(errors.NotFound):
        result["c7"]


@responses.activate
def test_list_commands_keep_indexes_and_normalise_lists() -> None:
    responses.add_callback(responses.POST, ENDPOINT + "batch", callback=batch_reply)
    client, _ = make_client()
    result = client.batch([("crm.contact.get", {"id": i}) for i in range(1, 61)])
    assert result.results[0] == {"ID": "1"} and result.results[59] == {"ID": "60"}
    assert 6 in result.errors  # id 7 is at index 6


@responses.activate
def test_halt_stops_later_batches() -> None:
    responses.add_callback(responses.POST, ENDPOINT + "batch", callback=batch_reply)
    client, _ = make_client()
    result = client.batch([("crm.contact.get", {"id": i}) for i in range(1, 101)], halt=True)
    assert len(responses.calls) == 1 and json.loads(responses.calls[0].request.body)["halt"] == 1
    assert result.errors


@responses.activate
def test_result_references_and_totals() -> None:
    responses.post(
        ENDPOINT + "batch",
        json={
            "result": {
                "result": {"find": [{"ID": "7"}], "get": {"ID": "7", "NAME": "Ann"}},
                "result_error": [],
                "result_total": {"find": 12},
                "result_next": {"find": 50},
                "result_time": {"find": {"operating": 0.2}},
            }
        },
    )
    client, _ = make_client()
    result = client.batch(
        {
            "find": (
                "crm.contact.list",
                {"filter": {"EMAIL": "a@b.c", "HAS_PHONE": True}, "select": ["ID"]},
            ),
            "get": ("crm.contact.get", {"id": "$result[find][0][ID]"}),
        }
    )
    cmd = json.loads(responses.calls[0].request.body)["cmd"]
    assert cmd == {
        "find": "crm.contact.list?filter[EMAIL]=a%40b.c&filter[HAS_PHONE]=Y&select[0]=ID",
        "get": "crm.contact.get?id=$result[find][0][ID]",
    }
    assert result["get"]["NAME"] == "Ann"
    assert result.totals == {"find": 12} and result.nexts == {"find": 50}


def test_reference_across_batches_is_refused() -> None:
    client, _ = make_client()
    commands = {f"c{i}": ("crm.contact.get", {"id": i}) for i in range(60)}
    commands["late"] = ("crm.contact.get", {"id": "$result[c0][ID]"})
    with pytest.raises(ValueError, match="refers to 'c0'"):
        client.batch(commands)


def list_reply(items: list[dict[str, Any]], shape: str = "list"):  # type: ignore[no-untyped-def]
    """A list method honouring ``>ID``/``ID ASC``/``start`` the way Bitrix24 does (50 a page)."""

    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        params = json.loads(request.body or "{}")
        key = "id" if shape == "items" else "ID"
        after = int(params.get("filter", {}).get(f">{key}", 0))
        rows = [r for r in items if r[key] > after]
        start = int(params.get("start", 0))
        body: dict[str, Any] = {}
        if start == -1:
            page = rows[:50]
        else:
            page = rows[start : start + 50]
            body["total"] = len(rows)
            if start + 50 < len(rows):
                body["next"] = start + 50
        body["result"] = {"items": page} if shape == "items" else page
        return 200, {}, json.dumps(body)

    return reply


@responses.activate
def test_iterate_1234_items_with_id_cursor() -> None:
    items = [{"ID": i, "NAME": f"n{i}"} for i in range(1, 1235)]
    responses.add_callback(
        responses.POST, ENDPOINT + "crm.contact.list", callback=list_reply(items)
    )
    client, _ = make_client()
    seen = list(
        client.iterate("crm.contact.list", {"select": ["NAME"], "filter": {"TYPE_ID": "X"}})
    )
    assert [r["ID"] for r in seen] == list(range(1, 1235))
    assert len(responses.calls) == 25  # 24 full pages + one of 34
    first = json.loads(responses.calls[0].request.body)
    assert first["start"] == -1 and first["order"] == {"ID": "ASC"}
    assert first["select"] == ["NAME", "ID"] and first["filter"] == {"TYPE_ID": "X"}
    assert json.loads(responses.calls[1].request.body)["filter"] == {"TYPE_ID": "X", ">ID": 50}


@responses.activate
def test_iterate_crm_item_list_shape() -> None:
    items = [{"id": i} for i in range(1, 1235)]
    responses.add_callback(
        responses.POST, ENDPOINT + "crm.item.list", callback=list_reply(items, "items")
    )
    client, _ = make_client()
    assert sum(1 for _ in client.iterate("crm.item.list", {"entityTypeId": 3})) == 1234


@responses.activate
def test_iterate_with_own_order_pages_by_start() -> None:
    items = [{"ID": i} for i in range(1, 1235)]
    responses.add_callback(responses.POST, ENDPOINT + "crm.deal.list", callback=list_reply(items))
    client, _ = make_client()
    seen = list(client.iterate("crm.deal.list", {"order": {"DATE_CREATE": "DESC"}}))
    assert len(seen) == 1234 and len(responses.calls) == 25
    starts = [json.loads(c.request.body)["start"] for c in responses.calls]
    assert starts == list(range(0, 1234, 50))
