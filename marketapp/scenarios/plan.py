"""A scenario definition as the engine walks it: steps by path and what follows each one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marketapp.scenarios import steps as st
from marketapp.scenarios.definition import ScenarioDefinition

ACTING = {"send_email", "send_sms", "edit_fields", "timeline_comment", "create_task", "notify"}


@dataclass
class Plan:
    defn: ScenarioDefinition
    steps: dict[str, Any] = field(default_factory=dict)
    # The path that follows each step (``None``: the scenario ends there). After the last step
    # of a branch comes the step after its condition or split.
    after: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def of(cls, defn: ScenarioDefinition) -> Plan:
        plan = cls(defn, dict(st.walk(defn.steps)))
        plan._link(defn.steps, "steps", None)
        return plan

    def _link(self, steps: list[Any], path: str, cont: str | None) -> None:
        for n, step in enumerate(steps):
            here = f"{path}[{n}]"
            following = f"{path}[{n + 1}]" if n + 1 < len(steps) else cont
            self.after[here] = following
            for inner_path, inner in st.children(step, here):
                self._link(inner, inner_path, following)

    def first(self) -> str | None:
        return "steps[0]" if self.defn.steps else None

    def enter(self, parent: str, branch_path: str, branch: list[Any]) -> str | None:
        """The first step of a branch, or what follows its parent when the branch is empty."""
        return f"{branch_path}[0]" if branch else self.after[parent]

    def unit(self, path: str) -> list[str]:
        """An acting step and the acting steps ``with_previous`` right after it in its list:
        they run together, on one read of the records."""
        out = [path]
        prefix = path.rsplit("[", 1)[0]
        nxt = self.after.get(path)
        while nxt is not None and nxt.rsplit("[", 1)[0] == prefix:
            step = self.steps[nxt]
            if step.type not in ACTING or step.run != "with_previous":
                break
            out.append(nxt)
            nxt = self.after.get(nxt)
        return out
