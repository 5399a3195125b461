"""Typed models. Import every model here so Alembic and ``create_all`` see them."""

from marketapp.db import Base
from marketapp.models.portal import Portal, PortalStatus
from marketapp.models.registration import Registration

__all__ = ["Base", "Portal", "PortalStatus", "Registration"]
