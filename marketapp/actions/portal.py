"""The context actions run in for a portal: its client, channel settings and the app's config."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from marketapp.actions.base import ActionContext
from marketapp.bitrix.client import client_for
from marketapp.bitrix.http import shared_session
from marketapp.channel_settings import channel_settings
from marketapp.config import get_config
from marketapp.models import Portal


def portal_context(
    session: Session, portal: Portal, client: Any = None, **extra: Any
) -> ActionContext:
    """Robots, the engine, test mode and preview share this; ``client`` defaults to the
    portal's stored token, ``extra`` sets the other fields (``own_lines``, globals …)."""
    config = get_config()
    return ActionContext(
        session=session,
        portal=portal,
        client=client if client is not None else client_for(portal),
        channels=channel_settings(session, portal),
        app_code=config.app_code,
        http=shared_session(),
        timeout=config.http_timeout,
        **extra,
    )
