"""The scenario engine: runs the due enrollments of a portal's launches (work in progress)."""

from __future__ import annotations

from datetime import UTC, datetime

from marketapp.jobs import job


def now() -> datetime:
    """The engine's "now" (waits and due times); tests move it with the emulator's clock."""
    return datetime.now(UTC)


@job(retries=20, retry_delay=5)
def process_portal(portal_id: int) -> None:
    """Run the due enrollments of one portal's launches, a slice at a time."""
