"""Chromium: shell → Extensions → the placement page gets the §1.3 POST and placement.info()."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, request
from werkzeug.serving import make_server

from marketapp.devportal import DevportalServer, FakeClock
from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.devportal.conftest import Harness, Receiver

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]


@pytest.fixture
def placement_app() -> Iterator[tuple[str, queue.Queue[dict[str, Any]], dict[str, str]]]:
    """A trivial placement page: records the POST, loads BX24 and reports placement.info()."""
    app = Flask("placement")
    seen: queue.Queue[dict[str, Any]] = queue.Queue()
    state: dict[str, str] = {}

    @app.post("/placement")
    def placement() -> str:
        seen.put({"kind": "post", "query": dict(request.args), "form": dict(request.form)})
        return f"""<!doctype html><html><body><p>placement page</p>
<script src="{state["bx24"]}"></script>
<script>BX24.init(function() {{
  var body = JSON.stringify({{info: BX24.placement.info(), auth: BX24.getAuth()}});
  fetch('/report', {{method: 'POST', body: body}});
}});</script></body></html>"""

    @app.post("/report")
    def report() -> str:
        seen.put({"kind": "report", **json.loads(request.get_data(as_text=True))})
        return "ok"

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_port}"
    yield state["url"], seen, state
    server.shutdown()


def test_extensions_item_opens_placement_with_bx24(
    placement_app: tuple[str, queue.Queue[dict[str, Any]], dict[str, str]], receiver: Receiver
) -> None:
    from playwright.sync_api import sync_playwright

    app_url, seen, state = placement_app
    with DevportalServer({"limits_enabled": False}, clock=FakeClock()) as server:
        harness = Harness(server, receiver, FakeClock())
        p = harness.install(handler_url=app_url + "/", installer_url=app_url + "/")
        p.ok(
            "placement.bind",
            {
                "PLACEMENT": "CRM_CONTACT_LIST_TOOLBAR",
                "HANDLER": app_url + "/placement",
                "TITLE": "Smart scenarios",
            },
        )
        harness.post(f"/portals/{p.member_id}/seed", {"n": 3})
        shell = server.portal_url(1)
        assert (
            requests.get(shell + "/bx24.js", timeout=5)
            .headers["Content-Type"]
            .startswith("application/javascript")
        )
        # the page's BX24 comes from the emulator (the app reads the URL from its settings)
        state["bx24"] = shell + "/bx24.js"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page()
                page.goto(shell + "/crm/contact/list/")
                page.click("#extensions .menu-button")
                page.click("#extensions >> text=Smart scenarios")
                post = seen.get(timeout=10)
                report = seen.get(timeout=10)
            finally:
                browser.close()
    assert post["kind"] == "post"
    assert set(post["query"]) == {"DOMAIN", "PROTOCOL", "LANG", "APP_SID"}
    assert post["query"]["DOMAIN"] == server.emulator.portal_domain(
        server.emulator.portal(p.member_id)
    )
    assert post["form"]["PLACEMENT"] == "CRM_CONTACT_LIST_TOOLBAR"
    assert json.loads(post["form"]["PLACEMENT_OPTIONS"]) == {"URI": "/crm/contact/list/"}
    assert post["form"]["member_id"] == p.member_id and post["form"]["AUTH_ID"]
    assert report["info"] == {
        "placement": "CRM_CONTACT_LIST_TOOLBAR",
        "options": {"URI": "/crm/contact/list/"},
    }
    assert report["auth"]["member_id"] == p.member_id
