"""User-authored templates (``{{ contact.NAME }}``) rendered in a limited sandbox.

Any failure of a template, whatever Python raises inside it, comes out as
:class:`TemplateProblem`; the sandbox's limits are described in :mod:`marketapp.actions.sandbox`.
"""

from __future__ import annotations

import functools
import html
from typing import Annotated, Any

import nh3
from flask_babel import gettext as _
from jinja2 import Template as JinjaTemplate
from jinja2 import TemplateError, nodes
from pydantic import AfterValidator

from marketapp.actions import sandbox
from marketapp.actions.sandbox import MAX_TEXT, TemplateProblem, TextTooLong

_env = sandbox.LimitedSandbox()

__all__ = [
    "MAX_TEXT",
    "Template",
    "TemplateProblem",
    "TextTooLong",
    "check",
    "render",
    "template_fields",
]
# The names under which a template sees CRM records (see :func:`record_context`).
RECORD_NAMES = frozenset({"record", "client", "contact", "company", "deal", "lead"})


def _problem(exc: BaseException) -> TemplateProblem:
    if isinstance(exc, TemplateProblem):
        return exc
    if isinstance(exc, TemplateError):
        detail = exc.message or type(exc).__name__
    elif isinstance(exc, RecursionError):
        detail = _("the template calls itself too deeply")
    else:  # ZeroDivisionError, TypeError, OverflowError … raised by the template's own code
        detail = str(exc) or type(exc).__name__
    return TemplateProblem(_("Template error: %(error)s", error=detail))


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> JinjaTemplate:
    """Check the shape, refuse constant blow-ups, compile (cached: a group renders one
    template for up to 50 records)."""
    sandbox.check_nesting(_env, source)
    tree = _env.parse(source)
    sandbox.check_depth(tree)
    sandbox.check_constants(tree)
    return _env.from_string(tree)


def check(source: str) -> None:
    """Raise :class:`TemplateProblem` if ``source`` is not a template that may be rendered."""
    try:
        _compiled(source)
    except Exception as exc:
        raise _problem(exc) from None


def _checked(source: str) -> str:
    check(source)
    return source


# A settings field holding a template: rejected at validation when it does not parse or is
# refused by the sandbox's shape and constant checks.
Template = Annotated[str, AfterValidator(_checked)]


def render(source: str, context: dict[str, Any], limit: int = MAX_TEXT) -> str:
    """Render ``source`` within the sandbox's budget; unknown names render as empty text.

    Raises :class:`TextTooLong` past ``limit`` characters, :class:`TemplateProblem` for any
    other failure.
    """
    token = sandbox.start_budget()
    try:
        parts: list[str] = []
        size = 0
        for chunk in _compiled(source).generate(context):
            size += len(chunk)
            if size > limit:
                raise TextTooLong(_("The text is longer than %(limit)s characters.", limit=limit))
            parts.append(chunk)
        return "".join(parts)
    except Exception as exc:
        raise _problem(exc) from None
    finally:
        sandbox.end_budget(token)


def template_fields(source: str) -> set[str] | None:
    """The CRM fields ``source`` reads (``{{ contact.NAME }}`` → ``NAME``), so that records can
    be read with a narrow ``select``; ``None`` when it uses a record any other way (a loop over
    it, ``record[name]``, a method call, a variable of that name): then every field is needed."""
    check(source)
    tree = _env.parse(source)
    names = [n for n in tree.find_all(nodes.Name) if n.name in RECORD_NAMES]
    if any(n.ctx != "load" for n in names):
        return None
    called = {id(c.node) for c in tree.find_all(nodes.Call)}
    fields: dict[int, str] = {}  # id of the record name -> the field read from it
    for access in tree.find_all(nodes.Getattr):
        if id(access) not in called:
            fields[id(access.node)] = access.attr
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
            fields[id(item.node)] = item.arg.value
    read = [fields.get(id(n), "") for n in names]
    if not all(f and not f.startswith("_") for f in read):
        return None
    return {f.upper() for f in read}


def sanitize_html(markup: str) -> str:
    """Keep formatting and links, drop scripts, handlers and anything active."""
    return nh3.clean(markup, link_rel="noopener noreferrer")


def plain_text(text: str) -> str:
    """Text without markup, for timeline comments and subjects.

    Tags are stripped (``<script>``/``<style>`` with their content) and entities decoded, until
    nothing changes: ``&lt;b&gt;`` must not turn into a tag on the next reader's side.
    """
    for _pass in range(5):
        cleaned = html.unescape(nh3.clean(text, tags=set()))
        if cleaned == text:
            return text
        text = cleaned
    return text.replace("<", "").replace(">", "")


def one_line(text: str) -> str:
    """A subject: plain text on one line."""
    return " ".join(plain_text(text).split())


def record_context(entity_type: str, record: dict[str, Any]) -> dict[str, Any]:
    """``contact.NAME`` style access, plus ``record`` for entity-neutral templates."""
    context = {entity_type.lower(): record, "record": record}
    client = record.get("_client")
    if isinstance(client, dict):
        context["client"] = client
    return context
