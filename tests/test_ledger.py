"""The ledger claims and settles by batch: commits are counted, not timed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from marketapp.actions import ledger, runner
from marketapp.actions.base import ActionContext, Target
from marketapp.actions.records import CommentParams, TimelineComment
from marketapp.bitrix.client import BatchResult
from marketapp.channel_settings import channel_settings
from marketapp.models import Send, SendState
from tests.support import add_portal

N = 10_000


@pytest.fixture
def commits(db: Session) -> Iterator[list[None]]:
    counted: list[None] = []

    def count(_session: Session) -> None:
        counted.append(None)

    event.listen(db, "after_commit", count)
    yield counted
    event.remove(db, "after_commit", count)


class AcceptingClient:
    """Answers every command with an id, like a portal that accepts them all."""

    def __init__(self) -> None:
        self.commands = 0

    def batch(self, commands: dict[str, tuple[str, dict[str, Any]]], halt: bool = False) -> Any:
        self.commands += len(commands)
        result = BatchResult()
        result.results.update({key: n for n, key in enumerate(commands, start=1)})
        return result


def test_claiming_10000_rows_commits_at_most_200_times(db: Session, commits: list[None]) -> None:
    portal = add_portal(db)
    keys = [f"run:1:{n}" for n in range(N)]
    commits.clear()
    claimed = ledger.claim_many(db, portal.id, keys, "comment")
    assert len(commits) <= 200
    assert all(fresh for _row, fresh in claimed.values()) and len(claimed) == N
    # A second attempt finds every row, counts the attempt, creates nothing.
    again = ledger.claim_many(db, portal.id, keys, "comment")
    assert not any(fresh for _row, fresh in again.values())
    assert {row.attempts for row, _fresh in again.values()} == {2}
    assert db.scalar(select(func.count()).select_from(Send)) == N
    print(f"\nclaiming {N} ledger rows (twice): {len(commits)} commits")


def test_running_an_action_on_10000_records_commits_at_most_200_times(
    db: Session, commits: list[None]
) -> None:
    portal = add_portal(db)
    client = AcceptingClient()
    ctx = ActionContext(db, portal, client, channel_settings(db, portal), "app", http=None)  # type: ignore[arg-type]
    targets = [
        Target("CONTACT", n, f"run:1:{n}", record={"ID": str(n), "NAME": f"N{n}"})
        for n in range(1, N + 1)
    ]
    params = CommentParams(text="Hello {{ contact.NAME }}")
    commits.clear()
    outcomes = runner.run(ctx, TimelineComment(), params, targets)
    assert len(commits) <= 200
    assert {o.status for o in outcomes.values()} == {"sent"} and len(outcomes) == N
    assert client.commands == N
    sent = db.scalar(select(func.count()).select_from(Send).where(Send.state == SendState.SENT))
    assert sent == N
    print(f"\ntimeline comment on {N} records: {len(commits)} commits")


def test_a_repeated_claim_counts_an_attempt_and_keys_are_claimed_once(db: Session) -> None:
    portal = add_portal(db)
    ledger.claim_many(db, portal.id, ["k1"], "sms")
    row, fresh = ledger.claim(db, portal.id, "k1", "sms")
    assert not fresh and row.attempts == 2
    rows = ledger.claim_many(db, portal.id, ["k1", "k2", "k2"], "sms")
    assert [(k, fresh) for k, (_row, fresh) in rows.items()] == [("k1", False), ("k2", True)]
