"""Robot runs (§4.3, §9.20-9.22): the handler POST, the waiting step, event tokens, timeouts."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from marketapp.devportal.crm import DOC_CLASSES
from marketapp.devportal.state import Emulator, Portal, Workflow


def document(document_id: str) -> tuple[list[str], list[str]]:
    """``CONTACT_42`` → (document_id, document_type) triples."""
    entity = document_id.rsplit("_", 1)[0].lower()
    cls = DOC_CLASSES.get(entity)
    if cls is None:
        raise ValueError(f"unsupported document {document_id!r}")
    return ["crm", cls, document_id.upper()], ["crm", cls, entity.upper()]


def run_robot(
    emu: Emulator,
    portal: Portal,
    client_id: str,
    code: str,
    document_id: str,
    properties: dict[str, Any] | None = None,
    run_as: int | None = None,
    timeout_duration: int = 0,
) -> Workflow:
    """Run a registered robot the way an automation rule does and queue its handler POST."""
    with emu.lock:
        robot = portal.robots.get((client_id, code))
        if robot is None:
            raise LookupError(f"robot {code!r} is not registered")
        install = emu.install_of(portal, client_id)
        doc_id, doc_type = document(document_id)
        fields = robot.fields
        values = _property_values(fields.get("PROPERTIES") or {}, properties or {})
        workflow_id = f"{emu.hex32()[:14]}.{emu.rng.randint(10**7, 10**8 - 1)}"
        numbers = [emu.rng.randint(10000, 99999), *(emu.rng.randint(1, 9999) for _ in range(3))]
        activity = "A" + "_".join(str(n) for n in numbers)
        event_id = emu.alnum(32)
        # Bitrix24 signs "<workflow>|<activity>|<event id>" with a server-side secret (its
        # Signer, salt "bizproc"); the app cannot check it, only bizproc.* methods can.
        signature = hmac.new(
            portal.signer_key.encode(),
            f"{workflow_id}|{activity}|{event_id}|bizproc".encode(),
            hashlib.sha256,
        ).hexdigest()
        subscribed = str(fields.get("USE_SUBSCRIPTION", "")).upper() != "N"
        user = run_as if run_as is not None else int(fields.get("AUTH_USER_ID") or 0)
        wf = Workflow(
            id=workflow_id,
            member_id=portal.member_id,
            client_id=client_id,
            robot_code=code,
            document_id=doc_id,
            document_type=doc_type,
            event_token=f"{workflow_id}|{activity}|{event_id}.{signature}",
            properties=values,
            use_subscription=subscribed,
            timeout_duration=int(timeout_duration),
            started_at=emu.clock.now(),
            run_as=user,
            template_id=_template_id(emu, portal, doc_type[2]),
        )
        wf.log.append({"time": wf.started_at, "message": f"robot {code} started"})
        if not subscribed:
            _close(emu, wf, "completed", "robot finished without waiting")
        emu.workflows[wf.id] = wf
        payload = {
            "workflow_id": wf.id,
            "code": code,
            "document_id": doc_id,
            "document_type": doc_type,
            "event_token": wf.event_token,
            "properties": values,
            "use_subscription": "Y" if subscribed else "N",
            "timeout_duration": str(wf.timeout_duration),
            "ts": str(int(wf.started_at)),
            "auth": emu.auth_block(portal, install, user or None),
        }
        meta = {"member_id": portal.member_id, "client_id": client_id, "workflow_id": wf.id}
        emu.deliveries.enqueue("robot", str(fields["HANDLER"]), payload, meta)
        return wf


def _template_id(emu: Emulator, portal: Portal, document_type: str) -> int:
    """One automation template per document type and portal, numbered from 1."""
    if document_type not in portal.templates:
        portal.templates[document_type] = emu.ids.next(f"bp_template:{portal.member_id}")
    return portal.templates[document_type]


def _property_values(declared: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Declared properties with their defaults, overridden by ``given``; ``None`` becomes ""."""
    values: dict[str, Any] = {}
    for key, prop in declared.items():
        default = prop.get("Default") if isinstance(prop, dict) else None
        values[key] = given.get(key, default)
    for key, value in given.items():
        values.setdefault(key, value)
    return {k: "" if v is None else v for k, v in values.items()}


def _close(emu: Emulator, wf: Workflow, state: str, message: str) -> None:
    wf.state = state
    wf.log.append({"time": emu.clock.now(), "message": message})
    if emu.config.workflow_finishes_on_close:
        wf.finished = True


def expire_waits(emu: Emulator) -> None:
    """Close waiting steps whose ``timeout_duration`` has elapsed on the emulator clock."""
    now = emu.clock.now()
    with emu.lock:
        for wf in emu.workflows.values():
            if (
                wf.state == "waiting"
                and wf.timeout_duration > 0
                and now >= wf.started_at + wf.timeout_duration
            ):
                _close(emu, wf, "timed_out", "timed out waiting for a response")


def running(emu: Emulator, portal: Portal) -> list[Workflow]:
    """The portal's workflows not finished yet (what ``bizproc.workflow.instances`` lists)."""
    expire_waits(emu)
    with emu.lock:
        return [
            w for w in emu.workflows.values() if w.member_id == portal.member_id and not w.finished
        ]


def find_by_token(emu: Emulator, token: str) -> Workflow | None:
    with emu.lock:
        for wf in emu.workflows.values():
            if hmac.compare_digest(wf.event_token, token):
                return wf
    return None


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": lambda v: int(float(v)),
    "double": float,
    "bool": lambda v: "Y" if str(v).upper() in ("Y", "1", "TRUE") else "N",
}


def accept_response(
    emu: Emulator, wf: Workflow, return_values: dict[str, Any], log_message: str
) -> None:
    """``bizproc.event.send`` on a waiting step: keep declared return values, close the step."""
    portal = emu.portal(wf.member_id)
    robot = portal.robots.get((wf.client_id, wf.robot_code))
    declared = (robot.fields.get("RETURN_PROPERTIES") or {}) if robot else {}
    by_lower = {k.lower(): k for k in declared}
    kept: dict[str, Any] = {}
    for key, value in (return_values or {}).items():
        name = by_lower.get(str(key).lower())
        if name is None:
            continue  # unknown keys are dropped
        kind = str((declared[name] or {}).get("Type", "string"))
        try:
            kept[name] = _CONVERTERS.get(kind, str)(value)
        except (TypeError, ValueError):
            kept[name] = None
    wf.return_values = kept
    _close(emu, wf, "completed", log_message or "received a response")
