"""``marketapp bench preview``: a scenario's dry run over N seeded contacts on the emulator.

The emulator runs in-process on loopback (limits off: the app's own limiter paces requests),
the app's database is a throw-away SQLite file. The app is installed on portal 1, N contacts
are seeded (a fixed seed), and a library scenario is previewed over all of them with a filter
(``>ID: 0``), as the launching user (user 1, the admin). Printed: wall time, HTTP requests by
method (batch commands by method too), records per second and peak memory.

:class:`PreviewPortal` is also what the preview tests use to set a portal up.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from flask import Flask

    from marketapp.devportal import DevportalServer
    from marketapp.scenarios.preview import Preview

SCOPES = ["crm", "placement", "bizproc", "user_basic", "task", "im", "messageservice"]
SEED = 4242
CLIENT_SECRET = "bench-preview-secret-0123456789"  # noqa: S105 - a throw-away local app


@dataclass
class PreviewPortal:
    """The app installed on an emulator portal, a portal row in the app's database, and the
    users' access tokens (as pages would pass them)."""

    server: DevportalServer
    app: Flask
    member_id: str
    client_id: str
    portal_id: int
    tokens: dict[int, str] = field(default_factory=dict)

    def emu(self, method: str, path: str, **body: Any) -> Any:
        url = f"{self.server.url}/_emulator{path}"
        resp = requests.request(method, url, json=body or None, timeout=120)
        resp.raise_for_status()
        return resp.json()

    def token(self, user_id: int) -> str:
        if user_id not in self.tokens:
            body = self.emu(
                "POST",
                f"/portals/{self.member_id}/tokens",
                client_id=self.client_id,
                user_id=user_id,
            )
            self.tokens[user_id] = str(body["access_token"])
        return self.tokens[user_id]

    def seed(self, **counts: int) -> dict[str, int]:
        result: dict[str, int] = self.emu(
            "POST", f"/portals/{self.member_id}/seed", seed=SEED, **counts
        )
        return result

    def requests(self) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = self.emu("GET", f"/requests?member_id={self.member_id}")
        return log

    def preview(
        self,
        defn: Any,
        *,
        user_id: int = 1,
        params: dict[str, Any] | None = None,
        constants: dict[str, Any] | None = None,
        launched_at: datetime | None = None,
        language: str = "en",
        channels: dict[str, Any] | None = None,
    ) -> Preview:
        """A :class:`Preview` of ``defn`` as ``user_id`` (call inside ``app.app_context()``)."""
        from marketapp.actions.base import ActionContext
        from marketapp.bitrix.client import client_for_user
        from marketapp.bitrix.http import shared_session
        from marketapp.channel_settings import channel_settings
        from marketapp.db import db_session
        from marketapp.models import Portal
        from marketapp.scenarios.context import portal_view
        from marketapp.scenarios.definition import launch_values
        from marketapp.scenarios.preview import Preview, launching_user

        session = db_session()
        portal = session.get(Portal, self.portal_id)
        assert portal is not None
        settings = channel_settings(session, portal)
        for name, value in (channels or {}).items():
            setattr(settings, name, value)
        session.commit()  # the admin's configuration, saved before the preview reads
        client = client_for_user(portal, self.token(user_id))
        ctx = ActionContext(session, portal, client, settings, "smart_scenarios", shared_session())
        return Preview(
            ctx,
            defn,
            launch_values(defn, params or {}, language=language),
            constants=constants if constants is not None else {"company_name": "Northwind"},
            user=launching_user(client),
            portal_info=portal_view(portal.domain, language, "Europe/Berlin"),
            launched_at=launched_at or datetime(2025, 3, 3, 9, 0, tzinfo=UTC),
            language=language,
        )


def open_portal(server: DevportalServer, app: Flask, number: int = 1) -> PreviewPortal:
    """Register the app with the emulator, install it on portal ``number``, store the portal."""
    from marketapp.db import db_session
    from marketapp.models import Portal

    def post(path: str, **body: Any) -> Any:
        resp = requests.post(f"{server.url}/_emulator{path}", json=body, timeout=30)
        resp.raise_for_status()
        return resp.json()

    registered = post(
        "/apps",
        code="smart_scenarios",
        handler_url="http://127.0.0.1:9/app",
        installer_url="http://127.0.0.1:9/install",
        scopes=SCOPES,
        client_secret=CLIENT_SECRET,
    )
    client_id = str(registered["client_id"])
    state = requests.get(f"{server.url}/_emulator/portals/{number}", timeout=30).json()
    member_id = str(state["member_id"])
    form = post(f"/portals/{member_id}/install", client_id=client_id)["form"]["fields"]
    post(f"/portals/{member_id}/install-finish", client_id=client_id)
    with app.app_context():
        session = db_session()
        portal = Portal(
            member_id=member_id,
            domain=str(state["domain"]),
            client_endpoint=str(state["client_endpoint"]),
            server_endpoint=server.emulator.server_endpoint,
            access_token=str(form["AUTH_ID"]),
            refresh_token=str(form["REFRESH_ID"]),
            installed=True,
            language="en",
            token_user_id=1,
        )
        session.add(portal)
        session.commit()
        portal_id = portal.id
    return PreviewPortal(server, app, member_id, client_id, portal_id, {1: str(form["AUTH_ID"])})


def make_app(folder: Path, database_url: str = "", server: DevportalServer | None = None) -> Flask:
    """A throw-away app (SQLite in ``folder`` unless ``database_url``) with its tables."""
    from marketapp import create_app
    from marketapp.db import get_db
    from marketapp.models import Base

    config: dict[str, Any] = {
        "instance_path": folder / "instance",
        "database_url": database_url or f"sqlite:///{folder / 'preview.db'}",
        "allow_insecure_loopback": True,
        "client_secret": CLIENT_SECRET,
        "testing": True,
    }
    if server is not None:
        config["oauth_hosts"] = server.emulator.server_host
    app = create_app(config)
    with app.app_context():
        Base.metadata.create_all(get_db().engine)
    return app


# -- the benchmark ------------------------------------------------------------------------


@dataclass
class BenchReport:
    contacts: int
    seconds: float
    seed_seconds: float
    requests: Counter[str]
    commands: Counter[str]
    peak_bytes: int
    totals: dict[str, Any]
    eta: dict[str, Any]
    progress: list[int]

    @property
    def per_second(self) -> float:
        return self.contacts / self.seconds if self.seconds else 0.0


def run_preview_bench(
    contacts: int, scenario: str = "re-engagement-offer", echo: Callable[[str], None] = print
) -> BenchReport:
    from marketapp.devportal import DevportalServer
    from marketapp.scenarios.library import library_scenario
    from marketapp.scenarios.preview import Selection, preview_scenario

    defn = library_scenario(scenario, "en")
    if defn is None:
        raise SystemExit(f"no library scenario {scenario!r}")
    with (
        tempfile.TemporaryDirectory(prefix="marketapp-preview-") as folder,
        DevportalServer({"limits_enabled": False, "portals": ["standard"]}) as server,
    ):
        app = make_app(Path(folder), server=server)
        portal = open_portal(server, app)
        began = time.perf_counter()
        portal.seed(contacts=contacts, companies=max(1, contacts // 20), deals=0, leads=0)
        seed_seconds = time.perf_counter() - began
        before = len(portal.requests())
        progress: list[int] = []
        with app.app_context():
            selection = Selection("CONTACT", filter={">ID": 0})
            began = time.perf_counter()
            report = preview_scenario(
                portal.preview(defn, channels=_CONSENT),
                selection,
                on_progress=lambda chunk: progress.append(chunk.done),
            )
            seconds = time.perf_counter() - began
            made = portal.requests()[before:]
            # Memory on a second pass: tracing slows Python down several times.
            peak = _peak_memory(lambda: preview_scenario(portal.preview(defn), selection))
    result = BenchReport(
        contacts=contacts,
        seconds=seconds,
        seed_seconds=seed_seconds,
        requests=Counter(str(r["method"]) for r in made),
        commands=Counter(c for r in made for c in r.get("commands", [])),
        peak_bytes=peak,
        totals=report.totals,
        eta=report.eta,
        progress=progress,
    )
    _print(result, scenario, echo)
    return result


def _peak_memory(work: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


_CONSENT = {"no_email_field": "UF_CRM_NO_EMAIL", "no_sms_field": "UF_CRM_NO_SMS"}


def _print(report: BenchReport, scenario: str, echo: Callable[[str], None]) -> None:
    echo(f"preview of {scenario!r} over {report.contacts:,} seeded contacts")
    echo(f"  seeding: {report.seed_seconds:.2f} s (not counted)")
    echo(f"  wall time: {report.seconds:.2f} s, {report.per_second:,.0f} records/s")
    echo(f"  HTTP requests: {sum(report.requests.values())}")
    for method, count in sorted(report.requests.items()):
        echo(f"    {method}: {count}")
    for method, count in sorted(report.commands.items()):
        echo(f"      batch command {method}: {count}")
    mib = report.peak_bytes / 1_048_576
    echo(f"  peak memory of the preview (tracemalloc, second pass): {mib:.1f} MiB")
    echo(f"  progress reports: {len(report.progress)}")
    echo(f"  reasons: {report.totals['by_reason']}")
    echo(f"  SMS segments: {report.totals['sms_segments']:,}")
    eta = report.eta
    echo(
        f"  a run would take {eta['requests']} requests ({eta['commands']:,} commands), "
        f"about {eta['seconds']:.0f} s of REST budget at {eta['per_second']:g}/s"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        run_preview_bench(10_000)
