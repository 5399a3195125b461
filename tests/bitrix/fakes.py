"""Test doubles for the REST client's collaborators (no monkeypatching needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from marketapp.bitrix.oauth import Token

ENDPOINT = "https://portal.example.com/rest/"


@dataclass
class FakeTokens:
    """Hands out ``old`` first, ``new`` after a refresh; counts refreshes."""

    token: Token = field(default_factory=lambda: Token("old-token", ENDPOINT))
    next_token: Token = field(default_factory=lambda: Token("new-token", ENDPOINT))
    refreshes: int = 0
    reauth_marked: bool = False

    def current(self) -> Token:
        return self.token

    def refresh(self, stale: Token) -> Token:
        self.refreshes += 1
        self.token = self.next_token
        return self.token

    def moved(self, token: Token, client_endpoint: str) -> Token:
        self.token = Token(token.access_token, client_endpoint, token.expires_at)
        return self.token

    def needs_reauth(self) -> None:
        self.reauth_marked = True


@dataclass
class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    now: float = 1_700_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
