"""Emulator settings. Every field can be changed at run time through ``POST /_emulator/config``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

PLANS: dict[str, tuple[int, float]] = {"standard": (50, 2.0), "enterprise": (250, 5.0)}


@dataclass
class DevportalConfig:
    """How the emulator behaves; the defaults follow Bitrix24 cloud (stricter where in doubt)."""

    seed: int = 1
    # One entry per portal: its plan ("standard" 50/2 or "enterprise" 250/5).
    portals: list[str] = field(default_factory=lambda: ["standard", "enterprise"])
    host: str = "127.0.0.1"
    port: int = 8100
    scheme: str = "http"
    token_lifetime: int = 3600
    refresh_lifetime: int = 180 * 86400
    limits_enabled: bool = True
    # Leaky bucket: does a rejected request also fill the bucket? (docs: "each HTTP request adds 1")
    bucket_counts_rejected: bool = True
    operating_limit: float = 480.0
    # Calls cheaper than this are not recorded in the operating-time budget (observed: 0.1 s).
    operating_min_recorded: float = 0.1
    # Simulated processing seconds per method ({"crm.contact.list": 2.5}); else real time.
    method_costs: dict[str, float] = field(default_factory=dict)
    delivery_delay: float = 0.0
    delivery_timeout: float = 5.0
    # Robot-run workflows finish when their step closes (a repeated event.send → 404).
    workflow_finishes_on_close: bool = True
    seed_records: int = 0
    # CRM read rights given to every portal as it is (re)built: {"2": "own"} limits user 2 to
    # the records whose ASSIGNED_BY_ID is 2 ("none": no CRM read right at all).
    restrict_user_records: dict[str, str] = field(default_factory=dict)
    request_log_size: int = 5000

    def update(self, changes: dict[str, Any]) -> None:
        """Apply known keys from ``changes``; unknown keys raise ``KeyError``."""
        names = {f.name for f in fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise KeyError(key)
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
