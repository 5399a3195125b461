"""What a scenario's templates see.

- ``record`` and the entity's own name (``contact``, ``deal`` …), a deal's ``client`` (its
  contact or company): from :func:`marketapp.actions.templating.record_context`;
- ``params``: the launch parameters; ``const``: the portal's constants (set by an admin);
- ``var``: the enrollment's scenario variables (``scenario_variables.variable_view``); like
  ``const`` they keep their types (a decimal computes and compares as a number), an empty one
  renders as "";
- ``user``: the launching user (``ID``, ``NAME``, ``LAST_NAME``, ``FULL_NAME``, ``EMAIL`` …);
- ``portal``: ``domain``, ``url``, ``language``, ``timezone`` (dates are formatted in its
  language by ``|date``).
- ``unsubscribe_url``: in e-mail and SMS steps only, the recipient's signed unsubscribe link
  (added per record by the actions, :func:`marketapp.consent.unsubscribe_url`).

The names and fields here are the ones :mod:`marketapp.scenarios.definition` accepts when a
definition is saved (``USER_FIELDS``, ``PORTAL_FIELDS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from marketapp.models import Portal
from marketapp.scenarios.definition import PORTAL_FIELDS, USER_FIELDS


def template_context(
    record_ctx: Mapping[str, Any],
    params: Mapping[str, Any],
    constants: Mapping[str, Any],
    user: Mapping[str, Any] | None,
    portal: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The render context: ``record_ctx`` (from ``templating.record_context``) plus the rest.
    ``constants`` and ``variables`` are typed (``constant_values``, ``variable_view``)."""
    context = dict(record_ctx)
    if "deal" in context:
        # A deal without a contact or company: ``client.NAME`` is empty, not an error.
        context.setdefault("client", {})
    context["params"] = dict(params)
    context["const"] = template_values(constants)
    context["var"] = template_values(variables or {})
    context["user"] = user_view(user or {})
    context["portal"] = {k: v for k, v in portal.items() if k in PORTAL_FIELDS}
    return context


def template_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values as templates see them: empty is "" (Jinja would write "None"); the rest
    keep their type (``{{ const.rate * 2 }}``, ``{% if var.vip %}``)."""
    return {name: "" if value is None else value for name, value in values.items()}


def user_view(user: Mapping[str, Any]) -> dict[str, Any]:
    """A ``user.get`` row reduced to what templates may read, with ``FULL_NAME``."""
    view = {k: user.get(k) or "" for k in USER_FIELDS if k != "FULL_NAME"}
    view["FULL_NAME"] = " ".join(
        str(part) for part in (user.get("NAME"), user.get("LAST_NAME")) if part
    )
    return view


def portal_info(session: Session, portal: Portal) -> dict[str, Any]:
    """:func:`portal_view` of a portal, with the time zone its admin set (else UTC)."""
    from marketapp.channel_settings import channel_settings

    zone = channel_settings(session, portal).timezone
    return portal_view(portal.domain, portal.language, zone)


def portal_view(domain: str, language: str, timezone: str = "") -> dict[str, Any]:
    """What templates see of the portal (never its member id or tokens)."""
    return {
        "domain": domain,
        "url": f"https://{domain}",
        "language": language,
        "timezone": timezone,
    }
