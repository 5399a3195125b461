"""What this app registers on a portal: robots, placements and event handlers.

Pure data built from the public URL; :mod:`marketapp.lifecycle.registration` makes a portal
match it. Names and descriptions are given in Russian and English (Bitrix24 picks by UI language).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from marketapp.actions import ACTIONS
from marketapp.scenarios.robot import RunScenarioParams

ENTITIES = ("CONTACT", "COMPANY", "DEAL", "LEAD")
PLACEMENT_KINDS = ("LIST_TOOLBAR", "LIST_MENU", "DETAIL_TOOLBAR")
EVENTS = ("ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL")

# Robots are allowed on every CRM entity we launch scenarios on (contacts and companies only via
# FILTER.INCLUDE: they have no stages, so the robot page does not list their document types).
DOCUMENT_FILTER = {
    "INCLUDE": [
        ["crm", "CCrmDocumentContact"],
        ["crm", "CCrmDocumentCompany"],
        ["crm", "CCrmDocumentDeal"],
        ["crm", "CCrmDocumentLead"],
    ]
}

Lang = dict[str, str]


def _prop(
    name: Lang,
    type_: str,
    *,
    required: bool = False,
    default: str | None = None,
    options: dict[str, str] | None = None,
    description: Lang | None = None,
) -> dict[str, Any]:
    prop: dict[str, Any] = {
        "Name": name,
        "Type": type_,
        "Required": "Y" if required else "N",
        "Multiple": "N",
    }
    if description:
        prop["Description"] = description
    if default is not None:
        prop["Default"] = default
    if options:
        prop["Options"] = options
    return prop


def properties_of(params: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """A robot's ``PROPERTIES`` from its action's parameter model and the fields' ``ui(...)``."""
    props: dict[str, dict[str, Any]] = {}
    for name, info in params.model_fields.items():
        shown = info.json_schema_extra
        assert isinstance(shown, dict), f"{params.__name__}.{name} has no ui(...)"
        choices = get_args(info.annotation) if get_origin(info.annotation) is Literal else ()
        options: dict[str, str] = shown.get("options") or {}  # type: ignore[assignment]
        assert not choices or list(options) == list(choices), f"{name}: titles for every option"
        default = None if info.is_required() or info.default in ("", None) else str(info.default)
        props[name] = _prop(
            shown["label"],  # type: ignore[arg-type]
            "select" if choices else str(shown.get("kind", "string")),
            required=info.is_required(),
            default=default,
            options=options or None,
            description=shown.get("hint"),  # type: ignore[arg-type]
        )
    return props


_STATUS = _prop({"en": "Status", "ru": "Статус"}, "string")
_REASON = _prop({"en": "Reason", "ru": "Причина"}, "string")


@dataclass(frozen=True)
class Robot:
    code: str
    name: Lang
    description: Lang
    properties: dict[str, dict[str, Any]]
    return_properties: dict[str, dict[str, Any]]

    def fields(self, handler: str, settings_handler: str) -> dict[str, Any]:
        """The ``bizproc.robot.add`` fields (without ``CODE``) for this robot."""
        return {
            "HANDLER": handler,
            "AUTH_USER_ID": 1,
            "USE_SUBSCRIPTION": "Y",
            "NAME": self.name,
            "DESCRIPTION": self.description,
            "PROPERTIES": self.properties,
            "RETURN_PROPERTIES": self.return_properties,
            "FILTER": DOCUMENT_FILTER,
            "USE_PLACEMENT": "Y",
            "PLACEMENT_HANDLER": settings_handler,
        }


ROBOTS: tuple[Robot, ...] = (
    Robot(
        code="send_email",
        name={"en": "Smart scenarios: send e-mail", "ru": "Умные сценарии: отправить e-mail"},
        description={
            "en": "Sends an e-mail through the portal mail and keeps it on the record.",
            "ru": "Отправляет письмо клиенту через почту портала и сохраняет его в карточке.",
        },
        properties=properties_of(ACTIONS["send_email"].Params),
        return_properties={
            "status": _STATUS,
            "activity_id": _prop({"en": "Activity ID", "ru": "ID дела"}, "string"),
            "reason": _REASON,
        },
    ),
    Robot(
        code="send_sms",
        name={"en": "Smart scenarios: send SMS", "ru": "Умные сценарии: отправить SMS"},
        description={
            "en": "Sends an SMS through the configured gateway and writes it to the timeline.",
            "ru": "Отправляет SMS через настроенный шлюз и пишет его в ленту карточки.",
        },
        properties=properties_of(ACTIONS["send_sms"].Params),
        return_properties={
            "status": _STATUS,
            "message_id": _prop({"en": "Message ID", "ru": "ID сообщения"}, "string"),
            "segments": _prop({"en": "Segments", "ru": "Частей"}, "int"),
            "reason": _REASON,
        },
    ),
    Robot(
        code="edit_record",
        name={"en": "Smart scenarios: edit record", "ru": "Умные сценарии: изменить запись"},
        description={
            "en": "Sets fields (one FIELD = value a line, templates allowed); keeps old values.",
            "ru": "Меняет поля (по строке ПОЛЕ = значение, можно шаблоны); хранит старые значения.",
        },
        properties=properties_of(ACTIONS["edit_record"].Params),
        return_properties={
            "status": _STATUS,
            "changed_fields": _prop({"en": "Changed fields", "ru": "Изменённые поля"}, "string"),
            "reason": _REASON,
        },
    ),
    Robot(
        code="timeline_comment",
        name={
            "en": "Smart scenarios: timeline comment",
            "ru": "Умные сценарии: комментарий в ленту",
        },
        description={
            "en": "Adds a comment to the record's timeline (templates allowed).",
            "ru": "Добавляет комментарий в ленту карточки (можно шаблоны).",
        },
        properties=properties_of(ACTIONS["timeline_comment"].Params),
        return_properties={
            "status": _STATUS,
            "comment_id": _prop({"en": "Comment ID", "ru": "ID комментария"}, "string"),
            "reason": _REASON,
        },
    ),
    Robot(
        code="run_scenario",
        name={"en": "Smart scenarios: run scenario", "ru": "Умные сценарии: запустить сценарий"},
        description={
            "en": "Runs a scenario on the record; calls of one burst become one launch.",
            "ru": "Запускает сценарий по записи; вызовы одной пачки становятся одним запуском.",
        },
        properties=properties_of(RunScenarioParams),
        return_properties={
            "status": _STATUS,
            "launch_id": _prop({"en": "Launch ID", "ru": "ID запуска"}, "string"),
            "reason": _REASON,
        },
    ),
)


def params_of(code: str) -> type[BaseModel]:
    """The parameter model a robot's properties are generated from."""
    return RunScenarioParams if code == "run_scenario" else ACTIONS[code].Params


PLACEMENT_TITLE = {"en": "Smart scenarios", "ru": "Умные сценарии"}


@dataclass(frozen=True)
class Manifest:
    """Everything registered on a portal, with absolute handler URLs."""

    robots: dict[str, dict[str, Any]] = field(default_factory=dict)
    placements: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)


def build_manifest(public_url: str) -> Manifest:
    base = public_url.rstrip("/")
    robots = {
        r.code: r.fields(f"{base}/robots/{r.code}", f"{base}/placements/robot-settings")
        for r in ROBOTS
    }
    launcher = f"{base}/placements/launch"
    lang_all = {lang: {"TITLE": title} for lang, title in PLACEMENT_TITLE.items()}
    placements = {
        f"CRM_{entity}_{kind}": {
            "HANDLER": launcher,
            "TITLE": PLACEMENT_TITLE["en"],
            "LANG_ALL": lang_all,
        }
        for entity in ENTITIES
        for kind in PLACEMENT_KINDS
    }
    events = dict.fromkeys(EVENTS, f"{base}/events")
    return Manifest(robots=robots, placements=placements, events=events)
