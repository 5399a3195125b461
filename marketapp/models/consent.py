"""The suppression list: records that unsubscribed from a channel through the app's link."""

from __future__ import annotations

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from marketapp.db import Base, TenantMixin, TimestampMixin


class Suppression(TenantMixin, TimestampMixin, Base):
    """One record (a contact, company or lead) that said no to ``channel`` (email | sms).

    Sending checks this list before the CRM's consent field, so an unsubscribe holds even when
    the field is not configured, could not be written, or is changed back in the CRM.
    """

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("portal_id", "entity_type", "entity_id", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(8))
    # How it came: "page" (the confirm form) or "one_click" (RFC 8058 from the mail client).
    source: Mapped[str] = mapped_column(String(16), default="page")
    # The CRM consent field: "written", "not_configured", "pending" (to retry) or "failed".
    crm_state: Mapped[str] = mapped_column(String(16), default="pending")
    crm_field: Mapped[str] = mapped_column(String(64), default="")
