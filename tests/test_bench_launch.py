"""``marketapp bench launch`` end to end with a CI-sized launch: it completes, prints every
figure, and delivered each e-mail and SMS once (no timing assertions)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import PG_SKIP, PG_URL

CONTACTS = 200


def _bench(*extra: str) -> str:
    cmd = [sys.executable, "-m", "marketapp.cli", "bench", "launch", "--contacts", str(CONTACTS)]
    cmd += ["--memory", str(CONTACTS), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout


def _assert_report(out: str) -> None:
    lines = out.splitlines()
    assert lines[0].startswith(f"launch of email+sms on {CONTACTS} contacts, standard plan")
    for start in (
        "  launch() returned in ",
        "  wall time: ",
        "  HTTP requests: ",
        "  commands per request: ",
        "  floor for ",
        "ratio ours/fast-bitrix24",
        f"peak worker RSS at {CONTACTS} enrollments (limits off): ",
    ):
        assert any(line.startswith(start) for line in lines), (start, out)
    assert any(
        line.startswith("fast-bitrix24 (same portal, webhook, as shipped)") for line in lines
    )
    delivered = next(line for line in lines if line.startswith("  delivered: "))
    assert delivered.endswith("duplicates 0"), delivered
    assert "HTTP requests: " in out and "(503: 0)" in out  # our run: paced under the bucket
    memory = next(line for line in lines if line.startswith("peak worker RSS"))
    assert memory.endswith("duplicates 0"), memory


@pytest.mark.e2e
def test_bench_launch_on_sqlite() -> None:
    _assert_report(_bench())


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason=PG_SKIP)
def test_bench_launch_on_postgresql() -> None:
    _assert_report(_bench("--database-url", PG_URL))
