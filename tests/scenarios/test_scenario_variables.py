"""Scenario variables: declared in the definition and checked when it is saved, set by
``set_variable`` steps (stored typed per enrollment), read by conditions and templates; typed
portal constants read by the same."""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask_babel import force_locale
from sqlalchemy.orm import Session

from marketapp.actions import templating
from marketapp.scenarios import scenario_variables as sv
from marketapp.scenarios import steps as st
from marketapp.scenarios import typed
from marketapp.scenarios.constants import ConstantError, constant_values, set_constant
from marketapp.scenarios.context import template_context
from marketapp.scenarios.definition import DefinitionError, validate_definition
from marketapp.scenarios.plan import ACTING, Plan
from tests.scenarios.support import add_portal

VARIABLES = [
    {"name": "total", "type": "decimal", "default": 0},
    {"name": "count", "type": "integer", "default": 0},
    {"name": "vip", "type": "boolean", "default": False},
    {"name": "note", "type": "string"},
    {"name": "due", "type": "date", "default": "2026-03-08"},
]


def definition(*steps: dict[str, Any], variables: list[dict[str, Any]] | None = None) -> Any:
    return {
        "schema": 1,
        "key": "calc",
        "name": {"en": "Calc", "ru": "Расчёт"},
        "description": {"en": "Computes.", "ru": "Считает."},
        "entity_types": ["DEAL"],
        "parameters": [
            {"key": "rate", "type": "decimal", "label": {"en": "Rate", "ru": "Ставка"}},
            {"key": "code", "type": "string", "label": {"en": "Code", "ru": "Код"}},
        ],
        "variables": copy.deepcopy(VARIABLES if variables is None else variables),
        "steps": list(steps),
    }


def setvar(name: str, expression: str) -> dict[str, Any]:
    return {"type": "set_variable", "name": name, "expression": expression}


COMMENT = {"type": "timeline_comment", "text": "Total {{ var.total }}"}


def problems(data: dict[str, Any], language: str = "en", **kwargs: Any) -> list[dict[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        validate_definition(data, language=language, **kwargs)
    return caught.value.as_dict()


# -- the definition ---------------------------------------------------------------------------


def test_a_definition_with_variables_validates_and_round_trips() -> None:
    data = definition(
        setvar("total", "record.OPPORTUNITY * (1 + params.rate / 100)"),
        setvar("vip", "var.total > const.threshold"),
        {
            "type": "condition",
            "rules": [{"left": {"var": "vip"}, "op": "eq", "right": {"value": True}}],
            "yes": [COMMENT],
        },
    )
    defn = validate_definition(
        data, constants={"threshold"}, known_fields={"DEAL": {"OPPORTUNITY"}}
    )
    assert defn.document()["variables"][0] == {"name": "total", "type": "decimal", "default": 0}
    assert validate_definition(defn.document()) == defn
    assert isinstance(defn.steps[0], st.SetVariableStep)


def test_set_variable_is_a_control_step() -> None:
    defn = validate_definition(definition(setvar("total", "1"), COMMENT))
    assert "set_variable" in st.CONTROL_TYPES and "set_variable" not in ACTING
    assert Plan.of(defn).unit("steps[0]") == ["steps[0]"]
    together = definition(COMMENT, {**setvar("total", "1"), "run": "with_previous"})
    assert problems(together) == [
        {"path": "steps[1].run", "message": "Only actions can run together with the previous step."}
    ]


@pytest.mark.parametrize(
    ("step", "path", "en", "ru"),
    [
        (
            setvar("nope", "1"),
            "steps[0].name",
            'Unknown variable "nope".',
            "Неизвестная переменная «nope».",
        ),
        (
            setvar("total", "1 + (2 * 3"),
            "steps[0].expression",
            "The expression ends too early. (character 11)",
            "Выражение обрывается. (символ 11)",
        ),
        (
            setvar("total", "var.totl + 1"),
            "steps[0].expression",
            'Unknown variable "totl". (character 1)',
            "Неизвестная переменная «totl». (символ 1)",
        ),
        (
            setvar("total", "1 + params.nope"),
            "steps[0].expression",
            'Unknown parameter "nope". (character 5)',
            "Неизвестный параметр «nope». (символ 5)",
        ),
        (
            setvar("total", "'a' & 'b'"),
            "steps[0].expression",
            "The expression gives text, the variable holds a number.",
            "Выражение даёт текст, а переменная хранит число.",
        ),
        (
            setvar("vip", "var.total + 1"),
            "steps[0].expression",
            "The expression gives a number, the variable holds true or false.",
            "Выражение даёт число, а переменная хранит true или false.",
        ),
        (
            setvar("count", "params.code"),  # a text parameter into a whole number
            "steps[0].expression",
            "The expression gives text, the variable holds a whole number.",
            "Выражение даёт текст, а переменная хранит целое число.",
        ),
        (
            setvar("total", "sqrt(2)"),
            "steps[0].expression",
            'Unknown function "sqrt". (character 1)',
            "Неизвестная функция «sqrt». (символ 1)",
        ),
        (
            {**COMMENT, "text": "{{ var.missing }}"},
            "steps[0].text",
            'Unknown variable "missing".',
            "Неизвестная переменная «missing».",
        ),
        (
            {
                "type": "condition",
                "rules": [{"left": {"var": "gone"}, "op": "not_empty"}],
                "yes": [COMMENT],
            },
            "steps[0].rules[0].left.var",
            'Unknown variable "gone".',
            "Неизвестная переменная «gone».",
        ),
        (
            {
                "type": "condition",
                "rules": [{"left": {"var": "vip", "value": 1}, "op": "not_empty"}],
                "yes": [COMMENT],
            },
            "steps[0].rules[0].left",
            "Give exactly one of: field, param, const, var, value.",
            "Укажите ровно одно из: field, param, const, var, value.",
        ),
    ],
)
def test_set_variable_problems_name_the_path_in_both_languages(
    step: dict[str, Any], path: str, en: str, ru: str
) -> None:
    data = definition(step)
    assert problems(data) == [{"path": path, "message": en}]
    assert problems(data, "ru") == [{"path": path, "message": ru}]


def test_the_path_points_into_branches() -> None:
    data = definition(
        {
            "type": "condition",
            "rules": [{"left": {"field": "OPPORTUNITY"}, "op": "gt", "right": {"value": 0}}],
            "yes": [COMMENT, setvar("total", "1 / ")],
        }
    )
    assert problems(data) == [
        {
            "path": "steps[0].yes[1].expression",
            "message": "The expression ends too early. (character 5)",
        }
    ]


def test_expression_names_are_checked_against_the_portal() -> None:
    data = definition(setvar("total", "record.OPPORTUNITY + record.UF_CRM_GONE * const.rate"))
    found = problems(data, constants={"other"}, known_fields={"DEAL": {"OPPORTUNITY"}})
    assert found == [
        {
            "path": "steps[0].expression",
            "message": 'DEAL has no field "UF_CRM_GONE". (character 22)',
        },
        {"path": "steps[0].expression", "message": 'Unknown constant "rate". (character 43)'},
    ]


def test_the_expression_bounds_are_checked_when_saved() -> None:
    deep = definition(setvar("total", "(" * 40 + "1" + ")" * 40))
    assert problems(deep)[0]["message"].startswith("The expression is nested too deeply")
    long = definition(setvar("total", "1" + "+1" * 500))
    assert problems(long) == [
        {"path": "steps[0].expression", "message": "At most 1000 characters."}
    ]


@pytest.mark.parametrize(
    ("variables", "path", "message"),
    [
        ([{"name": "x", "type": "decimal", "default": "abc"}], "variables[0].default", "decimal"),
        ([{"name": "x", "type": "integer", "default": 1.5}], "variables[0].default", "integer"),
        ([{"name": "x", "type": "boolean", "default": "maybe"}], "variables[0].default", "boolean"),
        ([{"name": "x", "type": "date", "default": "08.03.2026"}], "variables[0].default", "date"),
        ([{"name": "Bad-Name"}], "variables[0].name", None),
        ([{"name": "x"}, {"name": "x", "type": "integer"}], "variables[1].name", "repeated"),
        ([{"name": "x", "type": "money"}], "variables[0].type", None),
    ],
)
def test_declarations_are_checked(
    variables: list[dict[str, Any]], path: str, message: str | None
) -> None:
    (found,) = problems(definition(COMMENT, variables=[*variables, {"name": "total"}]))
    assert found["path"] == path
    if message == "repeated":
        assert found["message"] == '"x" is repeated.'
    elif message is not None:
        assert found["message"] == f"Not a valid {message} value."


# -- running the step ---------------------------------------------------------------------------


def test_initial_variables_are_typed_and_stored_as_json() -> None:
    defn = validate_definition(definition(COMMENT))
    stored = sv.initial_variables(defn)
    assert stored == {
        "total": {"type": "decimal", "value": "0"},
        "count": {"type": "integer", "value": 0},
        "vip": {"type": "boolean", "value": False},
        "note": {"type": "string", "value": None},
        "due": {"type": "date", "value": "2026-03-08"},
    }
    assert sv.variable_view(stored) == {
        "total": Decimal(0),
        "count": 0,
        "vip": False,
        "note": None,
        "due": date(2026, 3, 8),
    }


def _run(defn: Any, record: dict[str, Any], params: dict[str, Any] | None = None) -> Any:
    stored: dict[str, Any] = sv.initial_variables(defn)
    for step in defn.steps:
        new, error = sv.evaluate_step(step, record, params or {}, {"vat": Decimal("0.2")}, stored)
        if new is None:
            return error
        stored = new
    return stored


def test_steps_compute_in_order_and_keep_types() -> None:
    defn = validate_definition(
        definition(
            setvar("total", "record.OPPORTUNITY * (1 + const.vat)"),
            setvar("count", "var.count + 1"),
            setvar("count", "var.count + 1"),
            setvar("vip", "var.total >= 1000"),
            setvar("note", "'Total: ' & round(var.total, 2) & ' for ' & record.TITLE"),
            setvar("due", "record.CLOSEDATE"),
            setvar("total", "var.total / 3"),
        )
    )
    stored = _run(
        defn,
        {"OPPORTUNITY": "1500.50", "TITLE": "Deal 7", "CLOSEDATE": "2026-04-01T10:00:00+03:00"},
    )
    assert stored == {
        "total": {"type": "decimal", "value": "600.2"},
        "count": {"type": "integer", "value": 2},
        "vip": {"type": "boolean", "value": True},
        "note": {"type": "string", "value": "Total: 1800.6 for Deal 7"},
        "due": {"type": "date", "value": "2026-04-01"},
    }


NOT_A_NUMBER = 'Expected a number, not "{}" (join texts with &). (character 1)'


@pytest.mark.parametrize(
    ("expression", "record", "message"),
    [
        ("var.total / var.count", {}, "Division by zero. (character 11)"),
        ("record.OPPORTUNITY * 2", {"OPPORTUNITY": "1500|RUB"}, NOT_A_NUMBER.format("1500|RUB")),
        ("record.OPPORTUNITY * 10", {"OPPORTUNITY": "1e12"}, NOT_A_NUMBER.format("1e12")),
    ],
)
def test_errors_come_back_as_messages(
    expression: str, record: dict[str, Any], message: str
) -> None:
    defn = validate_definition(definition(setvar("total", expression)))
    assert _run(defn, record) == message


def test_a_value_the_type_does_not_take_is_an_error() -> None:
    defn = validate_definition(definition(setvar("count", "record.OPPORTUNITY / 4")))
    assert (
        _run(defn, {"OPPORTUNITY": "10"})
        == '"2.5" is not a whole number: use round(). (character 1)'
    )
    assert _run(defn, {"OPPORTUNITY": "8"})["count"]["value"] == 2
    dated = validate_definition(definition(setvar("due", "record.TITLE")))
    assert _run(dated, {"TITLE": "soon"}) == '"soon" is not a date (YYYY-MM-DD). (character 1)'


def test_error_messages_follow_the_locale(app: Flask) -> None:
    defn = validate_definition(definition(setvar("total", "1 / var.count")))
    with app.app_context(), force_locale("ru"):
        assert _run(defn, {}) == "Деление на ноль. (символ 3)"


def test_an_undeclared_variable_is_an_error_not_a_crash() -> None:
    step = st.SetVariableStep(type="set_variable", name="ghost", expression="1")
    assert sv.evaluate_step(step, {}, {}, {}, {}) == (None, 'The variable "ghost" is not declared.')


def test_a_hand_edited_value_reads_as_empty() -> None:
    view = sv.variable_view({"total": {"type": "decimal", "value": "abc"}, "odd": 5})
    assert view == {"total": None, "odd": None}


# -- conditions and templates ---------------------------------------------------------------


def _holds(rule: dict[str, Any], variables: dict[str, Any], constants: dict[str, Any]) -> bool:
    comparison = st.Comparison.model_validate(rule)
    return st.holds("and", [comparison], {"OPPORTUNITY": "1500.00"}, {}, constants, variables)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # A number, not text: "1500" < "200" as text.
        ({"left": {"var": "total"}, "op": "gt", "right": {"value": 200}}, True),
        ({"left": {"var": "total"}, "op": "eq", "right": {"field": "OPPORTUNITY"}}, True),
        ({"left": {"var": "vip"}, "op": "eq", "right": {"value": True}}, True),
        ({"left": {"var": "note"}, "op": "empty"}, True),
        ({"left": {"const": "rate"}, "op": "lt", "right": {"value": "1"}}, True),  # 0.2 < 1
        ({"left": {"const": "rate"}, "op": "gt", "right": {"value": "0.15"}}, True),
        ({"left": {"field": "OPPORTUNITY"}, "op": "lte", "right": {"const": "limit"}}, True),
        ({"left": {"const": "start"}, "op": "lt", "right": {"value": "2026-12-01"}}, True),
        ({"left": {"var": "missing"}, "op": "empty"}, True),
    ],
)
def test_conditions_read_variables_and_typed_constants(
    rule: dict[str, Any], expected: bool
) -> None:
    variables = {"total": Decimal("1500"), "vip": True, "note": None}
    constants = {"rate": Decimal("0.2"), "limit": 2000, "start": date(2026, 3, 8)}
    assert _holds(rule, variables, constants) is expected


def test_templates_read_var_and_const_typed() -> None:
    constants = {"rate": Decimal("0.2"), "vip_on": True, "launch": date(2026, 3, 8), "blank": None}
    variables = {"total": Decimal("1500.5"), "count": 3, "vip": False, "note": None}
    context = template_context({"record": {}}, {}, constants, None, {}, variables)

    def render(source: str) -> str:
        return templating.render(source, context)

    assert render("{{ var.total }} / {{ var.count }}") == "1500.5 / 3"
    assert render("{{ var.total * 2 }}") == "3001.0"  # a number, not text repeated
    assert render("{{ var.count + 1 }}") == "4"
    assert render("{% if var.vip %}vip{% else %}regular{% endif %}") == "regular"
    assert render("[{{ var.note }}][{{ const.blank }}]") == "[][]"  # empty, not "None"
    assert render("{{ var.total * const.rate }}") == "300.10"
    assert render("{% if const.vip_on %}on{% endif %}") == "on"
    assert render("{{ const.launch.year }}") == "2026"
    assert render("{% if var.total > 1000 %}big{% endif %}") == "big"


# -- typed constants ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "stored", "read"),
    [
        ("string", "  Acme  ", "  Acme  ", "  Acme  "),
        ("integer", "42", "42", 42),
        ("integer", " -7 ", "-7", -7),
        ("integer", "10.000", "10", 10),
        ("decimal", "1500.50", "1500.50", Decimal("1500.50")),
        ("decimal", "0.1234567", "0.123457", Decimal("0.123457")),
        ("boolean", "Yes", "true", True),
        ("boolean", "0", "false", False),
        ("date", "2026-03-08", "2026-03-08", date(2026, 3, 8)),
        ("decimal", "", "", None),
    ],
)
def test_constants_are_typed(db: Session, kind: str, value: str, stored: str, read: Any) -> None:
    portal = add_portal(db, "typed")
    row = set_constant(db, portal, "c", value, kind=kind)
    assert (row.type, row.value) == (kind, stored)
    assert constant_values(db, portal) == {"c": read}


INTEGER = "An integer constant takes a whole number such as 42, not {}."
DECIMAL = (
    "A decimal constant takes a number such as 1500 or 12.5 (a dot before the decimals), not {}."
)
BOOLEAN = "A boolean constant takes true or false (yes/no, 1/0), not {}."
DATE = "A date constant takes a date as YYYY-MM-DD, such as 2026-03-08, not {}."


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("integer", "4.5", INTEGER.format("4.5")),
        ("integer", "forty", INTEGER.format("forty")),
        ("decimal", "12,5", DECIMAL.format("12,5")),
        ("decimal", "1e400", DECIMAL.format("1e400")),
        ("decimal", "NaN", DECIMAL.format("NaN")),
        ("decimal", "9" * 20, "99999999999999999999 is out of range: at most 10^15 in size."),
        ("boolean", "maybe", BOOLEAN.format("maybe")),
        ("date", "08.03.2026", DATE.format("08.03.2026")),
        ("date", "2026-02-30", DATE.format("2026-02-30")),
        ("money", "1", "A constant's type is one of: string, integer, decimal, boolean, date."),
    ],
)
def test_bad_constant_values_are_refused(
    app: Flask, db: Session, kind: str, value: str, message: str
) -> None:
    portal = add_portal(db, "bad")
    with pytest.raises(ConstantError) as caught:
        set_constant(db, portal, "c", value, kind=kind)
    assert str(caught.value) == message


def test_a_constant_keeps_its_type_until_told(db: Session) -> None:
    portal = add_portal(db, "keep")
    set_constant(db, portal, "rate", "0.2", kind="decimal")
    assert set_constant(db, portal, "rate", "0.25").type == "decimal"
    with pytest.raises(ConstantError):
        set_constant(db, portal, "rate", "a quarter")
    assert constant_values(db, portal) == {"rate": Decimal("0.25")}
    assert set_constant(db, portal, "rate", "a quarter", kind="string").value == "a quarter"


def test_typed_values_share_one_reading() -> None:
    assert typed.typed("decimal", Decimal("2.50")) == Decimal("2.50")
    assert typed.to_json(Decimal("2.50")) == "2.50"
    assert typed.to_text(True) == "true"
    with pytest.raises(ValueError, match="unknown value type"):
        typed.typed("money", "1")
