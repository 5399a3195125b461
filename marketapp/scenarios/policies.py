"""A scenario's policies: who may enter again, when it ends early, when and how often it sends.

They live in the definition (``"policies": {...}``), so they are validated, versioned and shown
in preview like the steps; the engine enforces them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from marketapp.scenarios import steps as st

_STRICT = ConfigDict(extra="forbid")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
HourMinute = str  # "HH:MM", checked by the definition's checker
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Reentry = Literal["never", "while_active", "restart", "always"]


class SendWindow(BaseModel):
    """Hours and weekdays when messages may go out. ``end`` before ``start`` spans midnight.
    ``zone``: the portal's time zone, or the recipient's (from ``zone_field`` when set, else
    from the phone number, else the portal's)."""

    model_config = _STRICT
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS), min_length=1)
    start: HourMinute = "09:00"
    end: HourMinute = "21:00"
    zone: Literal["portal", "recipient"] = "portal"
    zone_field: str | None = None


class Goal(BaseModel):
    """Leave the scenario when the rules hold (checked before each step): ends ``goal``."""

    model_config = _STRICT
    match: Literal["and", "or"] = "and"
    rules: list[st.Rule] = Field(min_length=1, max_length=50)


class Policies(BaseModel):
    model_config = _STRICT
    # never: a record enters once ever; while_active: not while it is in the scenario;
    # restart: a new entry restarts it from the beginning; always: each entry runs fully.
    reentry: Reentry = "while_active"
    goal: Goal | None = None
    # None: the portal's default window (settings), if it has one.
    window: SendWindow | None = None
    # A step over a frequency cap waits for room (defer) or is skipped.
    capped: Literal["defer", "skip"] = "defer"
    # Transactional messages (a receipt, a reminder of a payment) bypass caps, never consent.
    transactional: bool = False


def rule_fields(rules: list[st.Rule]) -> set[str]:
    """The record fields a list of condition rules reads (groups nest)."""
    fields: set[str] = set()
    for rule in rules:
        if isinstance(rule, st.Group):
            fields |= rule_fields(rule.rules)
            continue
        for operand in (rule.left, rule.right):
            if operand is not None and operand.field:
                fields.add(operand.field)
    return fields
