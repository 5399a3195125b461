"""The set-variable step's expression language: arithmetic, texts, comparisons, functions and
names, errors with their positions, and bounds no input can get past."""

from __future__ import annotations

import ast
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketapp.scenarios import expressions as ex

RECORD = {
    "OPPORTUNITY": "1500.50",
    "NAME": "Ann",
    "EMPTY": "",
    "FLAG": "Y",
    "OFF": "N",
    "TAGS": ["a", "b"],
    "BIRTHDATE": "1990-05-17T00:00:00+03:00",
    "MONEY": "1500|RUB",
}
PARAMS = {"rate": "20", "count": 3, "label": "VIP", "start": date(2026, 3, 8)}
CONSTANTS = {"vat": Decimal("0.2"), "limit": 1000, "on": True, "phone": "+7 495"}
VARIABLES = {"total": Decimal("10.5"), "n": 0, "name": None, "ok": False}


def run(source: str, record: dict[str, Any] | None = None) -> Any:
    expression = ex.parse(source)
    return ex.evaluate(expression, record or RECORD, PARAMS, CONSTANTS, VARIABLES)


def fails(source: str, record: dict[str, Any] | None = None) -> ex.ExpressionError:
    with pytest.raises(ex.ExpressionError) as caught:
        run(source, record)
    return caught.value


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 - 4 - 3", "3"),  # left to right
        ("2 * 3 % 4", "2"),
        ("10 / 4", "2.5"),
        ("10 / 3", "3.333333"),  # 6 places, half up
        ("2 / 3", "0.666667"),
        ("10 / 3 * 3", "10"),  # rounded once, at the end
        ("7 % 3", "1"),
        ("-7 % 3", "-1"),  # the sign of the dividend
        ("-(2 + 3)", "-5"),
        ("- -4", "4"),
        ("0.1 + 0.2", "0.3"),  # decimal, not binary floating point
        ("999999999999999 + 1", "1000000000000000"),
        ("round(2.5)", "3"),
        ("round(-2.5)", "-3"),
        ("round(2.345, 2)", "2.35"),
        ("round(1 / 3, 6)", "0.333333"),
        ("ROUND(1.25, 1)", "1.3"),  # function names ignore case
        ("min(3, 1, 2)", "1"),
        ("max(3, 10, 2)", "10"),
        ("abs(-3.5)", "3.5"),
        ("length('Привет')", "6"),
        ("record.OPPORTUNITY * 2", "3001"),  # a CRM number is text: it computes as a number
        ("record.OPPORTUNITY * (1 + params.rate / 100)", "1800.6"),
        ("record.EMPTY + 1", "1"),  # empty is 0 in arithmetic
        ("record.MISSING + 1", "1"),  # so is a field the record does not have
        ("params.count * const.vat", "0.6"),
        ("const.limit - var.total", "989.5"),
        ("var.name + var.n", "0"),
        ("if(var.n = 0, 0, var.total / var.n)", "0"),  # the other branch is not evaluated
    ],
)
def test_arithmetic(source: str, expected: str) -> None:
    value = run(source)
    assert isinstance(value, Decimal)
    assert ex.text_of(value) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('"a" & "b"', "ab"),
        ("'it''s'", None),  # two texts side by side: refused below
        ('"x" & 1.50 & true', "x1.5true"),
        ("'Dear ' & record.NAME & '!'", "Dear Ann!"),
        ("record.EMPTY & '|' & record.MISSING & '|'", "||"),  # empty is "" in text
        ("concat(params.label, ': ', var.total)", "VIP: 10.5"),
        ("upper('abc') & lower('DEF')", "ABCdef"),
        ("trim('  x  ')", "x"),
        ("record.TAGS & ''", "a, b"),
        ("params.start & ''", "2026-03-08"),
        ('"say \\"hi\\"\\n"', 'say "hi"\n'),
        ("if(record.FLAG, 'yes', 'no')", "yes"),  # a CRM Y/N is a boolean
    ],
)
def test_texts(source: str, expected: str | None) -> None:
    if expected is None:
        assert fails(source).code == "expr_unexpected"
        return
    assert run(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 = 1.0", True),
        ("record.OPPORTUNITY = 1500.5", True),  # numbers compare as numbers
        ("record.OPPORTUNITY > 200", True),  # not as text ("1500.50" < "200")
        ("const.vat < 1", True),
        ("'Ann' = 'ann'", True),  # text ignores case, as conditions do
        ("'a' != 'b'", True),
        ("'a' <> 'a'", False),
        ("record.BIRTHDATE < '2000-01-01T00:00:00+03:00'", True),  # ISO dates as dates
        ("record.EMPTY = ''", True),
        ("2 >= 2 and 1 <= 0", False),
        ("not 1 = 2", True),  # not binds looser than =
        ("true or 1 / 0 = 1", True),  # or stops early
        ("false and 1 / 0 = 1", False),
        ("record.FLAG and not record.OFF", True),
        ("record.EMPTY or var.ok", False),  # empty is false
        ("const.on", True),
        ("TRUE and True", True),
    ],
)
def test_comparisons_and_logic(source: str, expected: bool) -> None:
    assert run(source) is expected


@pytest.mark.parametrize(
    ("source", "code", "position"),
    [
        ("", "expr_empty", 1),
        ("1 +", "expr_end", 4),
        ("(1 + 2", "expr_end", 7),
        ("round(1 2)", "expr_expected", 9),
        ("1 + ²", "expr_character", 5),
        ("1 + * 2", "expr_unexpected", 5),
        ("1 2", "expr_unexpected", 3),
        ("'abc", "expr_unclosed_text", 1),
        ("1 # 2", "expr_character", 3),
        ("1e5", "expr_bad_number", 1),
        ("1.2.3", "expr_bad_number", 1),
        ("total + 1", "expr_unknown_name", 1),
        ("1 + contact.NAME", "expr_unknown_root", 5),
        ("record.", "expr_end", 8),
        ("sqrt(4)", "expr_unknown_function", 1),
        ("round()", "expr_arguments", 1),
        ("if(true, 1)", "expr_arguments", 1),
        ("abs(1, 2)", "expr_arguments", 1),
        ("1 < 2 < 3", "expr_chained", 7),
        ("'a' + 1", "expr_not_number", 1),  # a text literal in arithmetic: refused when saved
        ("2 * true", "expr_not_number", 5),
        ("1 + 9999999999999999", "expr_out_of_range", 5),
    ],
)
def test_syntax_errors_have_positions(source: str, code: str, position: int) -> None:
    with pytest.raises(ex.ExpressionError) as caught:
        ex.parse(source)
    assert (caught.value.code, caught.value.position) == (code, position)


@pytest.mark.parametrize(
    ("source", "code", "position"),
    [
        ("var.total / var.n", "expr_division_by_zero", 11),
        ("5 % (var.n * 2)", "expr_division_by_zero", 3),
        ("record.NAME * 2", "expr_not_number", 1),
        ("1 + record.MONEY", "expr_not_number", 5),  # "1500|RUB" is no plain number
        ("record.TAGS + 1", "expr_not_number", 1),
        ("var.ok + 1", "expr_not_number", 1),
        ("not record.NAME", "expr_not_boolean", 5),
        ("if(1, 2, 3)", "expr_not_boolean", 4),
        ("const.missing & ''", "expr_no_constant", 1),
        ("round(1, 7)", "expr_round_places", 10),
        ("round(1, 0.5)", "expr_round_places", 10),
        ("999999999999999 * 10", "expr_out_of_range", 17),
        ("-999999999999999 - 2", "expr_out_of_range", 18),
    ],
)
def test_evaluation_errors_have_positions(source: str, code: str, position: int) -> None:
    error = fails(source)
    assert (error.code, error.position) == (code, position)


def test_error_text_in_both_languages() -> None:
    error = fails("var.total / var.n")
    assert error.text("en") == "Division by zero. (character 11)"
    assert error.text("ru") == "Деление на ноль. (символ 11)"
    with pytest.raises(ex.ExpressionError) as caught:
        ex.parse("1 +")
    assert caught.value.text("ru") == "Выражение обрывается. (символ 4)"


def test_names_read_are_listed_for_the_checker() -> None:
    expression = ex.parse("record.OPPORTUNITY * params.rate + const.vat - var.total")
    assert [(r.root, r.name, r.pos) for r in expression.refs] == [
        ("record", "OPPORTUNITY", 0),
        ("params", "rate", 21),
        ("const", "vat", 35),
        ("var", "total", 47),
    ]


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("1 + var.x", "number"),
        ("'a' & 1", "text"),
        ("1 < 2", "boolean"),
        ("not var.x", "boolean"),
        ("record.X", "any"),
        ("const.x", "any"),
        ("var.flag", "boolean"),
        ("params.p", "text"),
        ("if(true, 1, 2)", "number"),
        ("if(true, 1, 'a')", "any"),
        ("round(var.x)", "number"),
        ("upper(record.X)", "text"),
    ],
)
def test_kinds_known_before_running(source: str, kind: str) -> None:
    root = ex.parse(source).root
    assert ex.kind_of(root, {"flag": "boolean", "x": "number"}, {"p": "text"}) == kind


# -- bounds: no input uses unbounded time or memory ------------------------------------------


def test_length_is_bounded() -> None:
    ex.parse("1" + " " * (ex.MAX_LENGTH - 1))
    with pytest.raises(ex.ExpressionError) as caught:
        ex.parse("1" + " " * ex.MAX_LENGTH)
    assert caught.value.code == "expr_too_long"


@pytest.mark.parametrize(
    "source",
    [
        "(" * 33 + "1" + ")" * 33,
        "-" * 33 + "1",
        "not " * 33 + "true",
        "abs(" * 33 + "1" + ")" * 33,
        "(" * 400 + "1" + ")" * 400,  # far past the bound: refused, not a RecursionError
        "-(" * 300 + "1" + ")" * 300,
    ],
)
def test_nesting_is_bounded(source: str) -> None:
    with pytest.raises(ex.ExpressionError) as caught:
        ex.parse(source)
    assert caught.value.code == "expr_too_deep"


def test_nesting_within_the_bound_works() -> None:
    assert run("(" * 32 + "1" + ")" * 32) == 1
    assert run("-" * 32 + "1") == 1
    assert run("abs(" * 31 + "-1" + ")" * 31) == 1


def test_long_flat_chains_evaluate_without_recursion() -> None:
    ones = "1" + "+1" * 499  # 999 characters, 500 terms
    assert run(ones) == 500
    assert run("1" + "-1" * 499) == -498
    assert run("true" + " or false" * 110) is True
    assert run("'x'" + "&'x'" * 240) == "x" * 241


@pytest.mark.parametrize(
    ("source", "record"),
    [
        # Texts are bounded however they are grown.
        ("record.BIG & record.BIG", {"BIG": "x" * 6_000}),
        ("upper(record.BIG & record.BIG)", {"BIG": "x" * 5_001}),
        ("concat(record.BIG, record.BIG, record.BIG)", {"BIG": "x" * 4_000}),
        ("upper(record.HUGE)", {"HUGE": "x" * 50_000}),
        ("record.V" + " & record.V" * 60, {"V": "y" * 200}),
    ],
)
def test_texts_are_bounded(source: str, record: dict[str, Any]) -> None:
    assert fails(source, record).code == "expr_text_too_long"


def test_a_text_at_the_bound_is_fine() -> None:
    assert len(run("record.A & record.A", {"A": "x" * 5_000})) == ex.MAX_TEXT


@pytest.mark.parametrize(
    "value",
    [
        "1e999999999",  # an exponent Decimal would happily hold
        "9" * 5_000,
        "Infinity",
        "NaN",
        "-inf",
        "1_000",
        "0x10",
        " 12 12 ",
        "١٢",  # Arabic-Indic digits: no plain number
    ],
)
def test_numbers_from_records_are_plain_and_bounded(value: str) -> None:
    error = fails("record.X * 1", {"X": value})
    assert error.code in ("expr_not_number", "expr_out_of_range")


def test_numbers_are_bounded_by_every_operation() -> None:
    assert fails("999999999999999 * 999999999999999").code == "expr_out_of_range"
    assert fails("1 / 0.000001 * 1000000000000").code == "expr_out_of_range"
    assert fails("abs(-1000000000000001 + 0)").code == "expr_out_of_range"
    assert fails("record.X + 0", {"X": 1e300}).code == "expr_out_of_range"
    assert run("999999999999999 * 1") == Decimal("999999999999999")


def test_a_huge_literal_is_refused() -> None:
    with pytest.raises(ex.ExpressionError) as caught:
        ex.parse("9" * ex.MAX_LENGTH)
    assert caught.value.code == "expr_out_of_range"


def test_evaluation_steps_are_bounded() -> None:
    """No parsed expression has as many nodes as the step bound; a tree built by hand does."""
    node: ex.Node = ex.Literal(Decimal(1), 0)
    for _ in range(ex.MAX_STEPS):
        node = ex.Binary("+", node, ex.Literal(Decimal(0), 0), 0)
    error: ex.ExpressionError | None = None
    try:
        ex.evaluate(ex.Expression("", node, ()), {}, {}, {}, {})
    except ex.ExpressionError as exc:
        error = exc
    assert error is not None and error.code == "expr_too_many_steps"


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('id')",
        "().__class__",
        "[1][0]",
        "{}",
        "lambda: 1",
        "record['NAME']",
        "open('/etc/passwd')",
        "1 if true else 2",
        "a.b.c",
        "record.NAME.upper",
    ],
)
def test_python_is_not_reachable(source: str) -> None:
    with pytest.raises(ex.ExpressionError):
        run(source)


def test_a_record_name_is_only_a_key() -> None:
    assert run("record.__class__") is None  # a dictionary key, never an attribute


def test_the_module_never_evaluates_python() -> None:
    """The language is parsed by hand: no eval/exec/compile/literal_eval anywhere in it."""
    tree = ast.parse(Path(ex.__file__).read_text(encoding="utf-8"))
    calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
    names = {f.id for f in calls if isinstance(f, ast.Name)}
    attributes = {f.attr for f in calls if isinstance(f, ast.Attribute)}
    assert not names & {"eval", "exec", "compile", "__import__"}
    assert "literal_eval" not in attributes | names
