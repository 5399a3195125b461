"""The launch pages a sales rep meets in a CRM slider: launcher, progress, my launches.

The launcher is the answer to the placement POST (``/placements/launch``, see
:func:`render_launcher`): the active scenarios of the placement's entity, each with its
parameter form rendered on the server. Later pages are reached by form POSTs carrying the page
session in ``_session`` (never in a URL, never in a cookie), so they stay CSRF-safe and work
without third-party cookies; live data comes from the JSON API in :mod:`placements.launch_api`.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from flask import Blueprint, Response, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from marketapp.bitrix.payloads import PlacementRequest
from marketapp.config import get_config
from marketapp.db import db_session
from marketapp.models import Portal
from marketapp.scenarios import steps as st
from marketapp.scenarios.constants import list_constants
from marketapp.scenarios.definition import Parameter, ScenarioDefinition
from marketapp.scenarios.robot import active_scenarios
from marketapp.security import SESSION_FIELD, PortalSession, allow_framing_by, issue_session
from placements import launch_api
from placements.web import current_session, session_portal

bp = Blueprint("launch_pages", __name__, template_folder="templates")

# What templates may read of a record, shown in the placeholder help (per entity type).
RECORD_FIELDS = {
    "CONTACT": ("NAME", "LAST_NAME", "SECOND_NAME"),
    "LEAD": ("NAME", "LAST_NAME", "TITLE"),
    "COMPANY": ("TITLE",),
    "DEAL": ("TITLE", "OPPORTUNITY", "CURRENCY_ID"),
}
OTHER_VARIABLES = ("user.FULL_NAME", "user.WORK_POSITION", "portal.domain")
_PARAM_IN_TEXT = re.compile(r"params\.(\w+)")


def render_launcher(portal: Portal, session: PortalSession, page: PlacementRequest) -> Response:
    """The launcher for a CRM placement: scenarios of its entity, recipients, forms."""
    placement = page.placement
    entity = launch_api.placement_entity(placement) or ""
    options = page.placement_options if isinstance(page.placement_options, dict) else {}
    record = str(options.get("ID") or "")  # forgeable: ASCII digits only ("²".isdigit())
    scenarios = _scenarios(portal, entity, session.language) if entity else []
    return _page(
        "pages/launch.html",
        portal,
        issue_session(session),
        session=session,
        placement=placement,
        entity=entity,
        record_id=record if record.isascii() and record.isdigit() else "",
        from_list="_LIST_" in placement,
        scenarios=scenarios,
        context=launch_api.issue_context(session, placement, entity) if entity else "",
        variables=_variables(portal, entity),
        max_picked=launch_api.MAX_PICKED,
    )


@bp.post("/placements/launches/<int:launch_id>")
def progress(launch_id: int) -> ResponseReturnValue:
    """A launch's progress (its live data polls ``/api/launch/<id>/status``)."""
    session = current_session()
    portal = session_portal(session)
    row = launch_api.visible_launch(session, portal, launch_id)
    status = launch_api.launch_status(session, portal, row)
    return _page(
        "pages/launch_progress.html",
        portal,
        _token(),
        session=session,
        status=status,
        from_list=request.form.get("from_list") == "1",
    )


@bp.post("/placements/launches")
def my_launches() -> ResponseReturnValue:
    """The rep's own launches (an admin sees the portal's)."""
    session = current_session()
    portal = session_portal(session)
    rows = launch_api.my_launches(session, portal)
    return _page("pages/launch_list.html", portal, _token(), session=session, launches=rows)


def _token() -> str:
    """The page session of the form POST: passed on as it is (its lifetime does not grow)."""
    return str(request.form.get(SESSION_FIELD, ""))


def _page(template: str, portal: Portal, token: str, **context: Any) -> Response:
    response = make_response(
        render_template(
            template,
            session_token=token,
            bx24_js_url=get_config().bx24_js_url,
            state_labels=state_labels(),
            **context,
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return allow_framing_by(response, portal.domain)


def state_labels() -> dict[str, str]:
    """A launch's states as the user reads them (the texts the script shows while polling)."""
    return {
        "expanding": _("Reading the records"),
        "running": _("Running"),
        "parked": _("Waiting for the portal"),
        "sleeping": _("Paused (scenario deactivated)"),
        "stopping": _("Stopping"),
        "stopped": _("Stopped"),
        "done": _("Done"),
    }


# -- what the launcher shows ------------------------------------------------------------------


def _scenarios(portal: Portal, entity: str, language: str) -> list[dict[str, Any]]:
    found = []
    for scenario, version in active_scenarios(db_session(), portal):
        defn = ScenarioDefinition.model_validate(version.definition)
        if entity not in defn.entity_types:
            continue
        sms = _sms_params(defn)
        found.append(
            {
                "key": scenario.key,
                "name": defn.name.get(language),
                "description": defn.description.get(language),
                "result": defn.result.get(language),
                "parameters": [_field(p, language, p.key in sms) for p in defn.parameters],
                # A fresh key per rendered form: a double click sends the same one.
                "idempotency_key": secrets.token_urlsafe(18),
            }
        )
    return found


def _sms_params(defn: ScenarioDefinition) -> set[str]:
    """Parameters an SMS step's text uses (their field gets a length and segment counter)."""
    used: set[str] = set()
    for _path, step in st.walk(defn.steps):
        if isinstance(step, st.SendSmsStep):
            used.update(_PARAM_IN_TEXT.findall(step.text))
    return used


def _field(param: Parameter, language: str, sms: bool) -> dict[str, Any]:
    default = param.default
    return {
        "key": param.key,
        "type": param.type,
        "label": param.label.get(language),
        "help": param.help.get(language),
        "required": param.required,
        "default": "" if default is None else default,
        "min": param.min,
        "max": param.max,
        "max_length": param.max_length,
        "options": [{"value": o.value, "label": o.label.get(language)} for o in param.options],
        "sms": sms and param.type in ("string", "text"),
    }


def _variables(portal: Portal, entity: str) -> list[str]:
    names = [f"record.{f}" for f in RECORD_FIELDS.get(entity, ())]
    names += list(OTHER_VARIABLES)
    names += [f"const.{c.code}" for c in list_constants(db_session(), portal)]
    return names
