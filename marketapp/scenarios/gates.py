"""What is checked before a step runs on a record: the exit goal, the send window, the caps.

- **Goal** (``policies.goal``), before every step: a record that meets it leaves the scenario
  and ends ``goal``.
- **Send window** (``policies.window``, else the portal's default), before a step that sends
  an e-mail or SMS: outside it, the record waits for the next opening, in the portal's time
  zone or the recipient's.
- **Frequency caps** (the portal's, per channel and record, across every scenario and robot),
  before a send step of a scenario that is not transactional: over a cap, the record waits
  for room (``policies.capped = "defer"``) or skips the step (``"skip"``). Steps that run
  together are deferred or skipped together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from flask_babel import gettext as _

from marketapp.caps import CHANNEL_OF, Cap, room
from marketapp.models import Enrollment
from marketapp.scenarios import steps as st
from marketapp.scenarios.policies import Policies, SendWindow
from marketapp.scenarios.windows import next_opening, recipient_zone


@dataclass
class Gate:
    """What applies to one group at one step (``window``/``caps`` only for send steps)."""

    policies: Policies
    window: SendWindow | None
    caps: list[Cap]
    # The channels the step (and the steps run with it) send on, and how many messages on each.
    channels: Mapping[str, int]

    @property
    def reads(self) -> bool:
        """Whether the records must be read first (the goal, a recipient's time zone)."""
        return self.policies.goal is not None or (
            self.window is not None and self.window.zone == "recipient"
        )

    @property
    def idle(self) -> bool:
        return self.policies.goal is None and self.window is None and not self.caps


@dataclass
class Decisions:
    goal: set[int] = field(default_factory=set)  # enrollment ids that met the goal
    later: dict[int, tuple[datetime, str]] = field(default_factory=dict)  # id → (when, why)
    capped: set[int] = field(default_factory=set)  # ids that skip the step (over a cap)


def channels_of(steps: Sequence[Any]) -> dict[str, int]:
    """How many messages the steps send per channel (steps run together may send several)."""
    counts: dict[str, int] = {}
    for s in steps:
        if s.action in CHANNEL_OF:
            counts[CHANNEL_OF[s.action]] = counts.get(CHANNEL_OF[s.action], 0) + 1
    return counts


def decide(
    session: Any,
    portal_id: int,
    gate: Gate,
    group: list[Enrollment],
    records: Mapping[int, Mapping[str, Any]],
    context: tuple[Mapping[str, Any], Mapping[str, Any]],
    variables: Mapping[int, Mapping[str, Any]],
    at: datetime,
    zone: tzinfo,
    default_country: str,
) -> Decisions:
    """Decide for each enrollment of ``group`` (``records`` by enrollment id, when read;
    ``context``: the launch's params and the portal's constants, ``variables`` each
    enrollment's, for the goal's rules)."""
    out = Decisions()
    goal = gate.policies.goal
    if goal is not None:
        params, constants = context
        out.goal = {
            e.id
            for e in group
            if e.id in records
            and st.holds(
                goal.match, goal.rules, records[e.id], params, constants, variables.get(e.id)
            )
        }
    rest = [e for e in group if e.id not in out.goal]
    zones: dict[int, tzinfo] = {}
    if gate.window is not None:
        for e in rest:
            zones[e.id] = recipient_zone(records.get(e.id, {}), gate.window, zone, default_country)
            opening = next_opening(gate.window, at, zones[e.id])
            if opening > at:
                out.later[e.id] = (opening, _("Outside the send window."))
    if gate.caps and not gate.policies.transactional:
        free = [e for e in rest if e.id not in out.later]
        _cap(session, portal_id, gate, free, at, zones, out)
    return out


def _cap(
    session: Any,
    portal_id: int,
    gate: Gate,
    group: list[Enrollment],
    at: datetime,
    zones: Mapping[int, tzinfo],
    out: Decisions,
) -> None:
    """Records over a cap on any of the step's channels wait for room (then for the window to
    open) or skip the step."""
    refs = {e.id: (e.entity_type, e.entity_id) for e in group}
    for channel, messages in gate.channels.items():
        # Room for all of them: a cap of N leaves room when at most N - messages were sent.
        caps = [c.model_copy(update={"count": max(1, c.count - messages + 1)}) for c in gate.caps]
        free = room(session, portal_id, channel, list(set(refs.values())), at, caps)
        for e in group:
            when = free.get(refs[e.id])
            if when is None:
                continue
            if gate.policies.capped == "skip":
                out.capped.add(e.id)
                continue
            if gate.window is not None:
                when = next_opening(gate.window, when, zones[e.id])
            previous = out.later.get(e.id)
            if previous is None or previous[0] < when:
                out.later[e.id] = (when, _("Over the frequency cap."))
