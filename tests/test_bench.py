"""``marketapp bench robots`` end to end with tiny numbers: it completes, prints its table and
the stored-rows check passes (no timing assertions)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import PG_SKIP, PG_URL


def _bench(*extra: str) -> str:
    cmd = [sys.executable, "-m", "marketapp.cli", "bench", "robots"]
    cmd += ["--requests", "200", "--concurrency", "4", "--time-limit", "60", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=os.environ.copy())
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _assert_report(out: str) -> None:
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("endpoint"))
    for column in ("requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        assert column in header
    for endpoint in ("POST /robots/send_email", "POST /_bench/parse"):
        row = next(line for line in lines if line.startswith(endpoint)).split()
        assert row[2:4] == ["220", "0"], row  # 200 distinct calls + 10% repeats, no errors
    assert any(line.startswith("ratio full/minimal: req/s ") for line in lines)
    check = next(line for line in lines if line.startswith("check: "))
    assert "rows 220, distinct event tokens 220, expected 220" in check  # 20 warm-up calls
    assert "answered duplicate 20 of 20 repeats" in check
    assert check.endswith(": OK")


@pytest.mark.e2e
def test_bench_robots_on_sqlite() -> None:
    out = _bench()
    assert "database: sqlite" in out
    assert "server: waitress, 2 processes x 8 threads" in out  # what `marketapp run` serves with
    _assert_report(out)


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason=PG_SKIP)
def test_bench_robots_on_postgresql() -> None:
    out = _bench("--database-url", PG_URL)
    assert "database: postgresql" in out
    _assert_report(out)
