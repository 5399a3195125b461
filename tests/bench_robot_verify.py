"""What confirming robot calls with Bitrix24 costs in REST traffic (prints figures, no asserts).

    .venv/bin/python -m tests.bench_robot_verify [--calls 1,10,50,65]

For each burst size the app (over HTTP, with its queue and worker) runs that many genuine
``timeline_comment`` robots launched through the emulator (with ``--same-text`` they share one
text, so a claim of up to 50 calls runs as one action group), once with the confirmation of
``marketapp.robot_origin`` and once with it switched off. Requests are counted from the
emulator's request log (``GET /_emulator/requests``); the commands inside the batches from the
app's client. The group delay is long enough for a burst to form one queue of calls.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import select

from marketapp.bitrix.client import PortalClient
from marketapp.db import db_session
from marketapp.devportal import DevportalServer
from marketapp.models import Portal, RobotCall, RobotCallState
from tests.e2e.harness import Installed, install, start_app, wait_for


def _burst(installed: Installed, n: int, same: bool) -> tuple[int, Counter[str]]:
    """Run ``n`` robots; return (REST requests, commands by method) of the app's worker."""
    contacts = installed.emu("GET", f"/portals/{installed.member_id}/crm/contact")
    commands: Counter[str] = Counter()
    real_batch = PortalClient.batch

    def counting(self: PortalClient, cmds: Any, halt: bool = False) -> Any:
        items = cmds.values() if isinstance(cmds, dict) else cmds
        commands.update(method for method, _params in items)
        return real_batch(self, cmds, halt)

    before = len(installed.emu("GET", f"/requests?member_id={installed.member_id}"))
    with mock.patch.object(PortalClient, "batch", counting):
        for i in range(n):
            installed.portal(
                "/robots/run",
                "POST",
                client_id=installed.client_id,
                code="timeline_comment",
                document_id=f"CONTACT_{contacts[i % len(contacts)]['ID']}",
                properties={"text": "Bench" if same else f"Bench {i}"},
            )
        installed.settle()
        wait_for(lambda: _done(installed) >= n, timeout=120)
    log = installed.emu("GET", f"/requests?member_id={installed.member_id}")[before:]
    return len(log), commands


def _done(installed: Installed) -> int:
    with installed.app.app.app_context():
        states = db_session().scalars(select(RobotCall.state)).all()
        return sum(s is RobotCallState.DONE for s in states)


def _run(
    sizes: list[int], confirm: bool, same: bool, root: Path
) -> dict[int, tuple[int, Counter[str]]]:
    figures: dict[int, tuple[int, Counter[str]]] = {}
    with DevportalServer({"limits_enabled": False}) as devportal:
        for n in sizes:
            devportal.emulator.reset()
            folder = root / f"{'on' if confirm else 'off'}-{'same' if same else 'distinct'}-{n}"
            app = start_app(folder, f"sqlite:///{folder}/app.db", devportal, robot_group_delay=2.0)
            try:
                installed = install(devportal, app)
                installed.portal("/seed", "POST", n=20)
                with installed.app.app.app_context():
                    portal = db_session().scalars(select(Portal)).one()
                    portal.rate_per_second, portal.rate_burst = 200, 1000
                    db_session().commit()
                patch = mock.patch("marketapp.robots.confirmed", lambda _ctx, calls: calls)
                with contextlib.nullcontext() if confirm else patch:
                    figures[n] = _burst(installed, n, same)
            finally:
                app.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", default="1,10,50,65")
    parser.add_argument(
        "--same-text", action="store_true", help="one text for all: one action group per claim"
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.calls.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        off = _run(sizes, False, args.same_text, Path(tmp))
        on = _run(sizes, True, args.same_text, Path(tmp))
    kind = "one text for all" if args.same_text else "a text per call"
    print(f"timeline_comment robots, {kind}; REST requests from the emulator's request log")
    print("calls | requests before → after | per call before → after | commands per call")
    for n in sizes:
        (req_off, cmd_off), (req_on, cmd_on) = off[n], on[n]
        added = {m: c / n for m, c in (cmd_on - cmd_off).items()}
        print(
            f"{n:5} | {req_off:4} → {req_on:4} | {req_off / n:6.2f} → {req_on / n:6.2f}"
            f" | total {sum(cmd_on.values()) / n:.2f} (was {sum(cmd_off.values()) / n:.2f});"
            f" added {', '.join(f'{m} {v:.2f}' for m, v in sorted(added.items()))}"
        )


if __name__ == "__main__":
    main()
