"""``/u/<token>``: the public unsubscribe page, opened from an e-mail or SMS (no Bitrix24 session).

GET only shows what will happen (link scanners and mail previews fetch GETs); POST applies.
There is no cookie and no session: the signed token is the only credential, in the URL and in
the form, so a cross-site POST must already know the link it would use. RFC 8058 one-click
POSTs ``List-Unsubscribe=One-Click`` to the same URL and gets a plain 200 without the page.
A token that does not verify changes nothing: no row, no REST call.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, make_response, render_template, request
from flask_babel import force_locale
from flask_babel import gettext as _

from marketapp import consent
from marketapp.channel_settings import channel_settings
from marketapp.db import db_session
from marketapp.i18n import normalize
from marketapp.models import Portal, PortalStatus
from marketapp.security import security_event, tokens_match

bp = Blueprint("unsubscribe", __name__, template_folder="templates")

ONE_CLICK = ("List-Unsubscribe", "One-Click")
_HEADERS = {
    # Nothing to load but the page itself; it may not be framed; the token never leaves in a
    # Referer (the page has no links, but a browser extension might add one).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}


@bp.get(f"{consent.PATH}<token>")
def show(token: str) -> Response:
    found = _verified(token)
    if isinstance(found, Response):
        return found
    portal, link = found
    with force_locale(normalize(portal.language)):
        session = db_session()
        if consent.already_unsubscribed(session, link):
            return _page(200, "already", **_texts(portal, link, ""))
        field = consent.consent_field(channel_settings(session, portal), link.channel)
        return _page(200, "confirm", token=token, **_texts(portal, link, field, question=True))


@bp.post(f"{consent.PATH}<token>")
def apply(token: str) -> Response:
    one_click = request.form.get(ONE_CLICK[0]) == ONE_CLICK[1]
    if not one_click and not tokens_match(token, request.form.get("token")):
        return _page(400, "bad_form")
    found = _verified(token, plain=one_click)
    if isinstance(found, Response):
        return found
    portal, link = found
    result = consent.unsubscribe(
        db_session(), portal, link, source="one_click" if one_click else "page"
    )
    if one_click:
        return _plain(200, "Unsubscribed.")
    with force_locale(normalize(portal.language)):
        state = "already" if result.already else "done"
        return _page(200, state, **_texts(portal, link, result.crm_field, done=True))


def _verified(token: str, plain: bool = False) -> tuple[Portal, consent.Link] | Response:
    """The portal and link of a good token, or the page that says why not (nothing changed)."""
    try:
        portal, link = consent.read_link(db_session(), token)
    except consent.InvalidLink as exc:
        security_event(
            "invalid unsubscribe link", str(exc), member_id=None, remote_addr=request.remote_addr
        )
        return _plain(404, "Invalid link.") if plain else _page(404, "invalid")
    if portal.status is PortalStatus.UNINSTALLED:
        if plain:
            return _plain(410, "The sender no longer uses this service.")
        with force_locale(normalize(portal.language)):
            return _page(410, "gone")
    return portal, link


def _texts(
    portal: Portal, link: consent.Link, field: str, *, question: bool = False, done: bool = False
) -> dict[str, str]:
    """What the page says for the channel, in the current locale."""
    sender = portal.domain
    email = link.channel == "email"
    texts = {
        "effect": _("You will no longer receive e-mails from %(sender)s.", sender=sender)
        if email
        else _("You will no longer receive SMS from %(sender)s.", sender=sender),
        "crm_note": "",
    }
    if question:
        texts["question"] = (
            _("Stop e-mails from %(sender)s?", sender=sender)
            if email
            else _("Stop SMS from %(sender)s?", sender=sender)
        )
    if question or done:
        texts["crm_note"] = (
            _("Your choice will also be saved in the company's CRM.")
            if field
            else _(
                "The company has not set up a consent field in its CRM: only the application "
                "that sends the messages keeps your choice."
            )
        )
    return texts


def _page(status: int, state: str, **context: Any) -> Response:
    html = render_template("unsubscribe/page.html", state=state, **context)
    response = make_response(html, status)
    response.headers.update(_HEADERS)
    return response


def _plain(status: int, text: str) -> Response:
    response = make_response(text, status)
    response.mimetype = "text/plain"
    response.headers.update(_HEADERS)
    return response
