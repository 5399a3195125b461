"""How browser tests launch Debian's Chromium (never a downloaded browser build)."""

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Headless as root in a closed network: no sandbox, no background connections.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="system Chromium is not installed (make test installs it)"
)
