"""Method registry and the call context every REST method receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marketapp.devportal.state import Emulator, Install, Portal, Token, User, Webhook


@dataclass
class ListPage:
    """A list method's answer: ``items`` of this page plus ``total``/``next`` (maybe absent)."""

    items: Any
    total: int | None = None
    next: int | None = None


@dataclass
class Ctx:
    """Who is calling: the portal, the user, and the app install (None for webhooks)."""

    emu: Emulator
    portal: Portal
    user: User
    install: Install | None
    token: Token | None
    webhook: Webhook | None = None

    @property
    def client_key(self) -> str:
        """The operating-time budget owner: the app, or the webhook."""
        if self.install is not None:
            return self.install.app.client_id
        return f"webhook:{self.webhook.code if self.webhook else ''}"

    @property
    def scopes(self) -> list[str]:
        if self.install is not None:
            return self.install.app.scopes
        return self.webhook.scopes if self.webhook else []

    def need_install(self) -> Install:
        from marketapp.devportal.errors import app_context_required

        if self.install is None:
            raise app_context_required()
        return self.install


Handler = Callable[[Ctx, dict[str, Any]], Any]


@dataclass
class MethodSpec:
    name: str
    func: Handler
    scopes: tuple[str, ...]
    admin: bool
    app_only: bool
    # The error a webhook gets for an app-context-only method.
    app_only_error: str


METHODS: dict[str, MethodSpec] = {}


def method(
    name: str,
    scope: str | tuple[str, ...] = "basic",
    *,
    admin: bool = False,
    app_only: bool = False,
    app_only_error: str = "ACCESS_DENIED",
) -> Callable[[Handler], Handler]:
    """Register a REST method; ``scope`` may list alternatives (any one suffices)."""
    scopes = (scope,) if isinstance(scope, str) else scope

    def wrap(func: Handler) -> Handler:
        METHODS[name.lower()] = MethodSpec(name, func, scopes, admin, app_only, app_only_error)
        return func

    return wrap


def param(params: dict[str, Any], *names: str, default: Any = None) -> Any:
    """A top-level parameter by any of ``names``, case-insensitively (Bitrix24 accepts both)."""
    lowered = {str(k).lower(): v for k, v in params.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return default
