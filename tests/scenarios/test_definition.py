"""Scenario definitions: what validates, and broken definitions refused with a path and a
message in the user's language (a table of cases)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask import Flask

from marketapp.scenarios.definition import (
    SCHEMA_VERSION,
    DefinitionError,
    canonical_json,
    definition_digest,
    launch_values,
    requirements,
    validate_definition,
)
from marketapp.scenarios.messages import message

FIELDS = {
    "CONTACT": {"NAME", "LAST_NAME", "BIRTHDATE", "ASSIGNED_BY_ID", "UF_CRM_NO_SMS"},
    "DEAL": {"TITLE", "STAGE_ID", "OPPORTUNITY", "ASSIGNED_BY_ID", "CLOSEDATE"},
    "COMPANY": {"TITLE"},
}


def base() -> dict[str, Any]:
    return {
        "schema": 1,
        "key": "test-scenario",
        "name": {"ru": "Тест", "en": "Test"},
        "description": {"ru": "Описание", "en": "Description"},
        "entity_types": ["CONTACT"],
        "parameters": [
            {
                "key": "discount",
                "type": "integer",
                "label": {"ru": "Скидка", "en": "Discount"},
                "default": 10,
                "min": 1,
                "max": 50,
            },
            {
                "key": "channel",
                "type": "select",
                "label": {"ru": "Канал", "en": "Channel"},
                "default": "sms",
                "options": [
                    {"value": "sms", "label": {"ru": "SMS", "en": "SMS"}},
                    {"value": "email", "label": {"ru": "Почта", "en": "E-mail"}},
                ],
            },
        ],
        "steps": [
            {"type": "send_sms", "text": "{{ contact.NAME }}: {{ params.discount }}%"},
            {"type": "wait", "days": 2},
            {
                "type": "condition",
                "rules": [{"left": {"param": "channel"}, "op": "eq", "right": {"value": "sms"}}],
                "yes": [{"type": "timeline_comment", "text": "{{ record.NAME }} was offered"}],
                "no": [],
            },
        ],
    }


def with_(path: str, value: Any) -> dict[str, Any]:
    """``base()`` with the value at ``path`` (``steps.0.text``) set, or deleted when
    ``value`` is ``DELETE``."""
    data = base()
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return data


DELETE = object()
SPLIT_EMPTY = {"name": "B", "percent": 50, "steps": []}

# (case, definition, expected path, message code, message values)
BROKEN: list[tuple[str, dict[str, Any], str, str, dict[str, Any]]] = [
    (
        "unknown step type",
        with_("steps.1", {"type": "fax"}),
        "steps[1]",
        "unknown_step",
        {"tag": "fax"},
    ),
    ("step without a type", with_("steps.1", {"days": 1}), "steps[1]", "no_step_type", {}),
    ("missing text", with_("steps.0", {"type": "send_sms"}), "steps[0].text", "missing", {}),
    ("empty text", with_("steps.0.text", ""), "steps[0].text", "empty", {}),
    ("bad template", with_("steps.0.text", "{{ contact.NAME "), "steps[0].text", "template", None),
    (
        "unknown variable",
        with_("steps.0.text", "{{ customer.NAME }}"),
        "steps[0].text",
        "unknown_variable",
        {"name": "customer"},
    ),
    (
        "variable of another entity",
        with_("steps.0.text", "{{ deal.TITLE }}"),
        "steps[0].text",
        "variable_entity",
        {"name": "deal", "entity": "DEAL"},
    ),
    (
        "unknown parameter",
        with_("steps.0.text", "{{ params.discont }}"),
        "steps[0].text",
        "unknown_param",
        {"name": "discont"},
    ),
    (
        "unknown record field",
        with_("steps.0.text", "{{ contact.NAMEE }}"),
        "steps[0].text",
        "unknown_field",
        {"entity": "CONTACT", "name": "NAMEE"},
    ),
    (
        "unknown user field",
        with_("steps.0.text", "{{ user.PASSWORD }}"),
        "steps[0].text",
        "unknown_attribute",
        {"name": "user", "attr": "PASSWORD"},
    ),
    (
        "unknown constant",
        with_("steps.0.text", "{{ const.hotline }}"),
        "steps[0].text",
        "unknown_const",
        {"name": "hotline"},
    ),
    (
        "nested bad template",
        with_("steps.2.yes.0.text", "{% if %}"),
        "steps[2].yes[0].text",
        "template",
        None,
    ),
    (
        "nested unknown variable",
        with_("steps.2.yes.0.text", "{{ x }}"),
        "steps[2].yes[0].text",
        "unknown_variable",
        {"name": "x"},
    ),
    (
        "plural with one form",
        with_("steps.0.text", "{{ 3|plural('товар') }}"),
        "steps[0].text",
        "plural_args",
        {},
    ),
    (
        "unknown date format",
        with_("steps.0.text", "{{ contact.BIRTHDATE|date('') }}"),
        "steps[0].text",
        "date_format",
        {"value": ""},
    ),
    ("empty yes branch", with_("steps.2.yes", []), "steps[2].yes", "empty_branch", {}),
    (
        "percentages not 100",
        with_(
            "steps.1",
            {
                "type": "split",
                "branches": [
                    {"name": "A", "percent": 60, "steps": [{"type": "stop"}]},
                    SPLIT_EMPTY,
                ],
            },
        ),
        "steps[1].branches",
        "percent_sum",
        {"total": 110},
    ),
    (
        "every split branch empty",
        with_(
            "steps.1", {"type": "split", "branches": [{"name": "A", "percent": 50}, SPLIT_EMPTY]}
        ),
        "steps[1].branches",
        "all_branches_empty",
        {},
    ),
    (
        "split with one branch",
        with_("steps.1", {"type": "split", "branches": [{"name": "A", "percent": 100}]}),
        "steps[1].branches",
        "list_too_short",
        {"min_length": 2},
    ),
    (
        "negative percentage",
        with_(
            "steps.1",
            {
                "type": "split",
                "branches": [{"name": "A", "percent": -10}, {"name": "B", "percent": 110}],
            },
        ),
        "steps[1].branches[0].percent",
        "at_least",
        {"limit": 0},
    ),
    (
        "duplicate parameter keys",
        with_("parameters.1.key", "discount"),
        "parameters[1].key",
        "duplicate",
        {"value": "discount"},
    ),
    (
        "duplicate step ids",
        with_("steps.1.id", "x")
        | {
            "steps": [
                {"id": "x", "type": "send_sms", "text": "a"},
                {"id": "x", "type": "wait", "days": 1},
            ]
        },
        "steps[1].id",
        "duplicate",
        {"value": "x"},
    ),
    ("step after a stop", with_("steps.0", {"type": "stop"}), "steps[1]", "after_stop", {}),
    (
        "duplicate entity type",
        with_("entity_types", ["CONTACT", "CONTACT"]),
        "entity_types[1]",
        "duplicate",
        {"value": "CONTACT"},
    ),
    (
        "wrong entity type",
        with_("entity_types", ["CUSTOMER"]),
        "entity_types[0]",
        "choice",
        {"expected": "CONTACT, COMPANY, DEAL, LEAD"},
    ),
    ("no entity type", with_("entity_types", []), "entity_types", "list_empty", {}),
    ("no steps", with_("steps", []), "steps", "list_empty", {}),
    (
        "default above max",
        with_("parameters.0.default", 80),
        "parameters[0].default",
        "above_max",
        {"limit": 50},
    ),
    (
        "default below min",
        with_("parameters.0.default", 0),
        "parameters[0].default",
        "below_min",
        {"limit": 1},
    ),
    (
        "default of the wrong type",
        with_("parameters.0.default", "ten"),
        "parameters[0].default",
        "bad_value",
        {"type": "integer"},
    ),
    ("min above max", with_("parameters.0.min", 60), "parameters[0].min", "min_above_max", {}),
    (
        "select default not an option",
        with_("parameters.1.default", "fax"),
        "parameters[1].default",
        "not_option",
        {"value": "fax"},
    ),
    (
        "select without options",
        with_("parameters.1.options", []),
        "parameters[1].options",
        "needs_options",
        {},
    ),
    (
        "options on an integer",
        with_("parameters.0.options", [{"value": "1", "label": {"ru": "1", "en": "1"}}]),
        "parameters[0].options",
        "not_applicable",
        {"type": "integer"},
    ),
    (
        "parameter key not a name",
        with_("parameters.0.key", "Discount!"),
        "parameters[0].key",
        "name_format",
        {},
    ),
    (
        "label without Russian",
        with_("parameters.0.label", {"en": "Discount"}),
        "parameters[0].label.ru",
        "missing",
        {},
    ),
    (
        "unknown parameter type",
        with_("parameters.0.type", "money"),
        "parameters[0].type",
        "choice",
        None,
    ),
    (
        "wait with a bad weekday",
        with_("steps.1", {"type": "wait", "mode": "weekday", "weekday": "funday", "time": "10:00"}),
        "steps[1].weekday",
        "choice",
        None,
    ),
    (
        "wait with a bad time",
        with_("steps.1", {"type": "wait", "mode": "weekday", "weekday": "mon", "time": "9am"}),
        "steps[1].time",
        "time_format",
        {},
    ),
    ("negative duration", with_("steps.1.days", -2), "steps[1].days", "at_least", {"limit": 0}),
    ("zero duration", with_("steps.1.days", 0), "steps[1].days", "wait_zero", {}),
    (
        "wait until a field without the field",
        with_("steps.1", {"type": "wait", "mode": "field"}),
        "steps[1].field",
        "wait_needs",
        {},
    ),
    (
        "wait until an unknown field",
        with_("steps.1", {"type": "wait", "mode": "field", "field": "UF_CRM_VISIT"}),
        "steps[1].field",
        "unknown_field",
        {"entity": "CONTACT", "name": "UF_CRM_VISIT"},
    ),
    (
        "wait until a parameter that is not a date",
        with_("steps.1", {"type": "wait", "mode": "param", "param": "discount"}),
        "steps[1].param",
        "not_date_param",
        {"name": "discount"},
    ),
    (
        "condition on an unknown field",
        with_("steps.2.rules.0.left", {"field": "SALARY"}),
        "steps[2].rules[0].left.field",
        "unknown_field",
        {"entity": "CONTACT", "name": "SALARY"},
    ),
    (
        "condition on an unknown parameter",
        with_("steps.2.rules.0.left", {"param": "x"}),
        "steps[2].rules[0].left.param",
        "unknown_param",
        {"name": "x"},
    ),
    (
        "operand with two sources",
        with_("steps.2.rules.0.left", {"param": "channel", "value": 1}),
        "steps[2].rules[0].left",
        "operand",
        {},
    ),
    (
        "comparison without right side",
        with_("steps.2.rules.0.right", DELETE),
        "steps[2].rules[0].right",
        "needs_right",
        {},
    ),
    (
        "unknown operator",
        with_("steps.2.rules.0.op", "like"),
        "steps[2].rules[0].op",
        "choice",
        None,
    ),
    (
        "control step together with the previous",
        with_("steps.1.run", "with_previous"),
        "steps[1].run",
        "together_control",
        {},
    ),
    ("unknown field in a step", with_("steps.0.colour", "red"), "steps[0].colour", "extra", {}),
    (
        "edit fields with a bad line",
        with_("steps.0", {"type": "edit_fields", "fields": "just text"}),
        "steps[0].fields",
        "fields_list",
        None,
    ),
    (
        "edit an unknown field",
        with_("steps.0", {"type": "edit_fields", "fields": "UF_CRM_TIER = gold"}),
        "steps[0].fields",
        "unknown_field",
        {"entity": "CONTACT", "name": "UF_CRM_TIER"},
    ),
    (
        "task for a fixed employee without id",
        with_(
            "steps.0", {"type": "create_task", "title": "Call", "responsible": {"kind": "employee"}}
        ),
        "steps[0].responsible.id",
        "employee_id",
        {},
    ),
    (
        "notify a parameter that is not an employee",
        with_(
            "steps.0",
            {"type": "notify", "message": "Hi", "to": {"kind": "param", "param": "channel"}},
        ),
        "steps[0].to.param",
        "not_employee_param",
        {"name": "channel"},
    ),
    ("bad key", with_("key", "My Scenario"), "key", "key_format", {}),
    (
        "future schema",
        with_("schema", 2),
        "schema",
        "schema_version",
        {"version": 2, "expected": SCHEMA_VERSION},
    ),
    (
        "schema as text",
        with_("schema", "1"),
        "schema",
        "schema_version",
        {"version": '"1"', "expected": SCHEMA_VERSION},
    ),
    (
        "schema true",
        with_("schema", True),
        "schema",
        "schema_version",
        {"version": "true", "expected": SCHEMA_VERSION},
    ),
    (
        "private attribute",
        with_("steps.0.text", "{{ ''.__class__.__mro__ }}"),
        "steps[0].text",
        "private_attribute",
        {"name": "__class__"},
    ),
    (
        "private attribute by the attr filter",
        with_("steps.0.text", "{{ contact|attr('__dict__') }}"),
        "steps[0].text",
        "private_attribute",
        {"name": "__dict__"},
    ),
]


def _problems(data: Any, language: str) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        validate_definition(data, language=language, known_fields=FIELDS, constants={"company"})
    return [(p.path, p.message) for p in caught.value.problems]


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize(
    ("case", "data", "path", "code", "values"), BROKEN, ids=[c[0] for c in BROKEN]
)
def test_broken_definition_is_refused_with_path_and_message(
    case: str, data: Any, path: str, code: str, values: dict[str, Any] | None, language: str
) -> None:
    problems = _problems(data, language)
    paths = [p for p, _m in problems]
    assert path in paths, problems
    found = dict(problems)[path]
    if values is not None:
        assert found == message(language, code, **values)
    else:
        prefix = message(language, code, detail="", expected="").split(":")[0]
        assert found.startswith(prefix), found


def test_a_template_error_in_russian_says_so_once(app: Flask) -> None:
    with app.app_context():  # the sandbox then speaks Russian too
        problems = _problems(with_("steps.0.text", "{{ contact.NAME "), "ru")
    text = dict(problems)["steps[0].text"]
    assert text.startswith("Ошибка в шаблоне: ")
    assert "Ошибка шаблона" not in text


def test_table_is_large_enough() -> None:
    assert len(BROKEN) >= 20


def test_duplicate_step_ids_are_reported() -> None:
    data = base()
    data["steps"][0]["id"] = "same"
    data["steps"][2]["yes"][0]["id"] = "same"
    assert ("steps[2].yes[0].id", message("en", "duplicate", value="same")) in _problems(data, "en")


def test_not_an_object() -> None:
    assert _problems([1, 2], "ru") == [("", message("ru", "not_object"))]


def test_every_problem_is_reported_at_once() -> None:
    data = base()
    data["steps"][0]["text"] = "{{ params.nope }} {{ foo }}"
    data["parameters"][0]["default"] = 99
    paths = [p for p, _m in _problems(data, "en")]
    assert paths.count("steps[0].text") == 2
    assert "parameters[0].default" in paths


def test_russian_messages_are_russian() -> None:
    (_path, text), *_ = _problems(with_("steps.0.text", "{{ params.x }}"), "ru")
    assert text == "Неизвестный параметр «x»."


def test_good_definition_validates() -> None:
    defn = validate_definition(base(), known_fields=FIELDS, constants=set())
    assert defn.schema_version == 1
    assert defn.document()["schema"] == 1
    assert defn.steps[1].type == "wait"


def test_without_known_fields_any_field_is_accepted() -> None:
    data = with_("steps.0.text", "{{ contact.UF_CRM_ANYTHING }} {{ const.anything }}")
    validate_definition(data)


def test_template_locals_are_not_unknown_variables() -> None:
    text = "{% set n = 3 %}{% for x in range(n) %}{{ loop.index }}{{ x }}{% endfor %}"
    validate_definition(with_("steps.0.text", text), known_fields=FIELDS)


def test_deal_sees_its_client() -> None:
    data = base()
    data["entity_types"] = ["DEAL"]
    data["steps"] = [{"type": "send_sms", "text": "{{ client.NAME }} {{ deal.TITLE }}"}]
    validate_definition(data, known_fields=FIELDS)
    data["steps"][0]["text"] = "{{ client.NICKNAME }}"
    assert _problems(data, "en")[0][0] == "steps[0].text"


def test_requirements_list_constants_and_fields() -> None:
    data = base()
    data["entity_types"] = ["CONTACT", "DEAL"]
    data["steps"] = [
        {"type": "send_sms", "text": "{{ record.NAME }} {{ const.company }} {{ client.NAME }}"},
        {"type": "edit_fields", "fields": "UF_CRM_TIER = gold"},
        {"type": "wait", "mode": "field", "field": "CLOSEDATE", "offset_days": -1},
        {
            "type": "condition",
            "rules": [
                {"left": {"const": "vip_limit"}, "op": "lt", "right": {"field": "OPPORTUNITY"}}
            ],
            "yes": [{"type": "notify", "message": "{{ deal.TITLE }}"}],
        },
    ]
    req = requirements(validate_definition(data))
    assert req.constants == {"company", "vip_limit"}
    assert req.fields["CONTACT"] >= {"NAME", "UF_CRM_TIER", "CLOSEDATE", "OPPORTUNITY"}
    assert req.fields["DEAL"] >= {"NAME", "TITLE", "ASSIGNED_BY_ID"}
    assert "TITLE" not in req.fields["CONTACT"]
    assert req.client_fields == {"NAME"}


def test_digest_is_stable_and_ignores_spelling_of_defaults() -> None:
    data = base()
    spelled_out = copy.deepcopy(data)
    spelled_out["steps"][0]["run"] = "after_previous"
    spelled_out["timeline"] = True
    one, two = validate_definition(data), validate_definition(spelled_out)
    assert definition_digest(one) == definition_digest(two)
    assert len(definition_digest(one)) == 64
    changed = with_("steps.0.text", "Other text")
    assert definition_digest(validate_definition(changed)) != definition_digest(one)
    assert validate_definition(__import__("json").loads(canonical_json(one))) == one


def test_launch_values_typed_and_checked() -> None:
    defn = validate_definition(base())
    assert launch_values(defn, {}) == {"discount": 10, "channel": "sms"}
    assert launch_values(defn, {"discount": "20"})["discount"] == 20
    with pytest.raises(DefinitionError) as caught:
        launch_values(defn, {"discount": 70, "channel": "fax", "extra": 1}, language="ru")
    assert [p.path for p in caught.value.problems] == [
        "params.extra",
        "params.discount",
        "params.channel",
    ]
