"""In-memory state of every emulated portal, app registration, install and token.

All mutation happens under ``Emulator.lock``; randomness comes from one seeded generator so runs
are reproducible.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from marketapp.devportal.clock import Clock, SystemClock
from marketapp.devportal.config import PLANS, DevportalConfig
from marketapp.devportal.crm import CrmStore
from marketapp.devportal.delivery import DeliveryQueue
from marketapp.devportal.limits import LeakyBucket, OperatingBudget


@dataclass
class User:
    id: int
    name: str
    last_name: str
    email: str
    admin: bool
    lang: str = "en"
    active: bool = True
    position: str = ""


@dataclass
class AppRegistration:
    """An app as registered in the vendor console."""

    client_id: str
    client_secret: str
    code: str
    handler_url: str
    installer_url: str = ""
    # No-UI apps: the "Installation event handler URL" (gets ONAPPINSTALL at once).
    install_event_url: str = ""
    scopes: list[str] = field(default_factory=lambda: ["crm", "placement", "bizproc"])
    version: int = 1


@dataclass
class Token:
    access_token: str
    refresh_token: str
    member_id: str
    client_id: str
    user_id: int
    expires_at: float
    refresh_expires_at: float
    revoked: bool = False


@dataclass
class EventHandler:
    id: int
    client_id: str
    event: str
    handler: str
    auth_type: int = 0
    event_type: str = "online"


@dataclass
class PlacementHandler:
    id: int
    client_id: str
    placement: str
    handler: str
    title: str = ""
    description: str = ""
    group_name: str = ""
    lang_all: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    user_id: int = 0


@dataclass
class Robot:
    client_id: str
    code: str
    fields: dict[str, Any]


@dataclass
class Sender:
    client_id: str
    code: str
    type: str
    handler: str
    name: Any
    description: str = ""


@dataclass
class Install:
    """One app on one portal."""

    app: AppRegistration
    application_token: str
    version: int
    installed: bool = False
    status: str = "F"
    payment_required: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    data_store: dict[str, Any] = field(default_factory=dict)
    # Robot settings placement: values saved through setPropertyValue, per robot code.
    robot_settings: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Webhook:
    code: str
    user_id: int
    scopes: list[str]


@dataclass
class Workflow:
    """A robot run: one workflow with one step that may wait for ``bizproc.event.send``."""

    id: str
    member_id: str
    client_id: str
    robot_code: str
    document_id: list[str]
    document_type: list[str]
    event_token: str
    properties: dict[str, Any]
    use_subscription: bool
    timeout_duration: int
    started_at: float
    run_as: int
    # bizproc.workflow.instances: the automation template it runs, who started it (0: automation).
    template_id: int = 0
    started_by: int = 0
    state: str = "waiting"  # waiting | completed | timed_out
    finished: bool = False
    return_values: dict[str, Any] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    # Every bizproc.event.send received for this run, repeats included (for assertions).
    sends: int = 0


@dataclass
class Portal:
    index: int
    member_id: str
    plan: str
    users: dict[int, User]
    crm: CrmStore
    bucket: LeakyBucket
    installs: dict[str, Install] = field(default_factory=dict)
    event_handlers: list[EventHandler] = field(default_factory=list)
    placements: list[PlacementHandler] = field(default_factory=list)
    robots: dict[tuple[str, str], Robot] = field(default_factory=dict)
    senders: dict[tuple[str, str], Sender] = field(default_factory=dict)
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    sms: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    # Automation rules: run a robot when a record enters a stage (§9.28).
    automation: list[dict[str, Any]] = field(default_factory=list)
    # App data kept over an uninstall without CLEAN, per client_id.
    retained: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    fault_script: list[dict[str, Any]] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    # The server-side secret event tokens are signed with (Bitrix24's signer key): apps never
    # see it, so only the portal can tell a token it issued.
    signer_key: str = ""
    # Automation template id per document type (``CONTACT`` → 1, ...), for workflow listings.
    templates: dict[str, int] = field(default_factory=dict)
    # CRM read rights per user id: "own" (records they are responsible for) or "none";
    # absent means all records. Admins are never limited (as on Bitrix24).
    record_access: dict[int, str] = field(default_factory=dict)


DEFAULT_USERS = (
    (1, "Anna", "Admin", "anna.admin@example.com", True),
    (2, "Oleg", "User", "oleg.user@example.com", False),
)


class Emulator:
    """Every portal, app and token of one emulator instance."""

    def __init__(self, config: DevportalConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.lock = threading.RLock()
        self.deliveries = DeliveryQueue(
            lambda: self.config.delivery_delay, lambda: self.config.delivery_timeout
        )
        self.reset()

    def reset(self) -> None:
        """Forget everything and rebuild the configured portals from the seed."""
        with self.lock:
            self.rng = random.Random(self.config.seed)
            self.portals: list[Portal] = []
            self.apps: dict[str, AppRegistration] = {}
            self.tokens: dict[str, Token] = {}
            self.refresh_tokens: dict[str, Token] = {}
            self.workflows: dict[str, Workflow] = {}
            self.request_log: deque[dict[str, Any]] = deque(maxlen=self.config.request_log_size)
            self.operating = OperatingBudget()
            self.ids = _Counter()
            self.ui_events: list[dict[str, Any]] = []
            # APP_SID of every rendered page → its context (BX24.js asks for it).
            self.app_sids: dict[str, dict[str, Any]] = {}
            self.auth_codes: dict[str, tuple[Token, float]] = {}
            self.deliveries.clear()
            for plan in self.config.portals:
                self.add_portal(plan)

    # -- identifiers ------------------------------------------------------------------------
    def hex32(self) -> str:
        """A random 32-hex id from the seeded generator."""
        with self.lock:
            return f"{self.rng.getrandbits(128):032x}"

    def alnum(self, n: int) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        with self.lock:
            return "".join(self.rng.choice(alphabet) for _ in range(n))

    # -- network -------------------------------------------------------------------------------
    def portal_domain(self, portal: Portal) -> str:
        """``127.0.0.N:port``: each portal is told apart by its loopback address."""
        return f"127.0.0.{portal.index + 2}:{self.config.port}"

    def client_endpoint(self, portal: Portal) -> str:
        return f"{self.config.scheme}://{self.portal_domain(portal)}/rest/"

    @property
    def server_host(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def server_endpoint(self) -> str:
        return f"{self.config.scheme}://{self.server_host}/rest/"

    def portal_by_host(self, host: str) -> Portal | None:
        for portal in self.portals:
            if self.portal_domain(portal) == host:
                return portal
        return None

    def portal(self, key: str | int) -> Portal:
        """Find a portal by ``member_id``, domain or 1-based number; ``KeyError`` if none."""
        for portal in self.portals:
            if key in (
                portal.member_id,
                self.portal_domain(portal),
                portal.index + 1,
                str(portal.index + 1),
            ):
                return portal
        raise KeyError(f"no portal {key!r}")

    # -- portals and apps ----------------------------------------------------------------------
    def add_portal(self, plan: str = "standard") -> Portal:
        """Create a portal with an admin (id 1) and an ordinary user (id 2)."""
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}")
        capacity, rate = PLANS[plan]
        with self.lock:
            index = len(self.portals)
            portal = Portal(
                index=index,
                member_id=self.hex32(),
                plan=plan,
                users={u[0]: User(*u) for u in DEFAULT_USERS},
                crm=CrmStore(),
                bucket=LeakyBucket(capacity, rate),
                rng=random.Random(self.config.seed * 1000 + index),
            )
            portal.record_access = {
                int(uid): str(level) for uid, level in self.config.restrict_user_records.items()
            }
            # Derived, not drawn from the generators: seeded ids and data stay as they were.
            portal.signer_key = hashlib.sha256(
                f"{self.config.seed}|{portal.member_id}|bizproc".encode()
            ).hexdigest()
            self.portals.append(portal)
            return portal

    def register_app(self, **fields: Any) -> AppRegistration:
        """Register an app (vendor console); client id and secret are generated if absent."""
        with self.lock:
            fields.setdefault(
                "client_id", f"app.{self.alnum(14)}.{self.rng.randint(10**7, 10**8 - 1)}"
            )
            fields.setdefault("client_secret", self.alnum(50))
            app = AppRegistration(**fields)
            self.apps[app.client_id] = app
            return app

    def install_of(self, portal: Portal, client_id: str) -> Install:
        install = portal.installs.get(client_id)
        if install is None:
            raise KeyError(f"app {client_id} is not installed on portal {portal.member_id}")
        return install

    # -- tokens ----------------------------------------------------------------------------------
    def issue_token(self, portal: Portal, client_id: str, user_id: int) -> Token:
        """Mint an access/refresh pair for ``user_id`` of ``portal`` in the app ``client_id``."""
        with self.lock:
            now = self.clock.now()
            token = Token(
                access_token=self.alnum(70),
                refresh_token=self.alnum(70),
                member_id=portal.member_id,
                client_id=client_id,
                user_id=user_id,
                expires_at=now + self.config.token_lifetime,
                refresh_expires_at=now + self.config.refresh_lifetime,
            )
            self.tokens[token.access_token] = token
            self.refresh_tokens[token.refresh_token] = token
            return token

    def revoke_tokens(self, portal: Portal, client_id: str) -> None:
        with self.lock:
            for token in list(self.tokens.values()):
                if token.member_id == portal.member_id and token.client_id == client_id:
                    token.revoked = True

    def expire_tokens(self, portal: Portal) -> int:
        """Force every live access token of ``portal`` to be expired now (fault injection)."""
        with self.lock:
            now = self.clock.now()
            count = 0
            for token in self.tokens.values():
                if token.member_id == portal.member_id and token.expires_at > now:
                    token.expires_at = now - 1
                    count += 1
            return count

    def auth_block(self, portal: Portal, install: Install, user_id: int | None) -> dict[str, Any]:
        """The ``auth[...]`` of a delivery: token keys only when a user resolves (§1.4)."""
        auth: dict[str, Any] = {}
        if user_id:
            token = self.issue_token(portal, install.app.client_id, user_id)
            auth.update(
                access_token=token.access_token,
                expires=str(int(token.expires_at)),
                expires_in=str(self.config.token_lifetime),
                scope=",".join(install.app.scopes),
            )
        auth.update(
            domain=self.portal_domain(portal),
            server_endpoint=self.server_endpoint,
            status=install.status,
            client_endpoint=self.client_endpoint(portal),
            member_id=portal.member_id,
        )
        if user_id:
            auth.update(user_id=str(user_id), refresh_token=token.refresh_token)
        auth["application_token"] = install.application_token
        return auth


class _Counter:
    """Per-kind id sequences (event handlers, placements, activities ...)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def next(self, kind: str, start: int = 1) -> int:
        value = self._next.get(kind, start)
        self._next[kind] = value + 1
        return value
