"""User-authored templates (``{{ contact.NAME }}``) rendered in a sandbox."""

from __future__ import annotations

from typing import Annotated, Any

import nh3
from jinja2 import TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator

_env = ImmutableSandboxedEnvironment(undefined=Undefined, autoescape=False)


class TemplateProblem(ValueError):
    """The template does not parse or fails to render; the message says where."""


def check(source: str) -> None:
    """Raise :class:`TemplateProblem` if ``source`` is not a valid template."""
    try:
        _env.parse(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template error: {exc.message}") from exc


def _checked(source: str) -> str:
    check(source)
    return source


# A settings field holding a template: rejected at validation when it does not parse.
Template = Annotated[str, AfterValidator(_checked)]


def render(source: str, context: dict[str, Any]) -> str:
    """Render ``source``; unknown names render as empty text."""
    try:
        return _env.from_string(source).render(context)
    except TemplateError as exc:
        raise TemplateProblem(f"template error: {exc.message}") from exc


def sanitize_html(html: str) -> str:
    """Keep formatting and links, drop scripts, handlers and anything active."""
    return nh3.clean(html, link_rel="noopener noreferrer")


def record_context(entity_type: str, record: dict[str, Any]) -> dict[str, Any]:
    """``contact.NAME`` style access, plus ``record`` for entity-neutral templates."""
    context = {entity_type.lower(): record, "record": record}
    client = record.get("_client")
    if isinstance(client, dict):
        context["client"] = client
    return context
