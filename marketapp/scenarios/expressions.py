"""The expressions of the set-variable step: a small language, parsed and evaluated here.

Nothing is handed to Python's ``eval``: a tokenizer and a Pratt parser build a tree of the
nodes below, and :func:`evaluate` walks it. Every input is bounded, so no expression can use
unbounded time or memory: at most :data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` levels of
nesting (brackets, calls, unary operators), texts of at most :data:`MAX_TEXT` characters,
numbers of at most :data:`MAX_NUMBER` in size and :data:`MAX_STEPS` evaluation steps.

The language:

- literals: numbers ``12``, ``12.5`` (decimal, exact; no exponent), texts ``"a"`` or ``'a'``
  (``\\`` escapes the next character; ``\\n`` is a line break), ``true``, ``false``;
- names: ``record.FIELD``, ``params.key``, ``const.code``, ``var.name``; a missing or empty
  value is *empty*: 0 in arithmetic, "" in text, false in ``and``/``or``/``not``;
- ``+ - * / %`` on numbers only (a text that is a plain number, as CRM fields are, counts);
  ``&`` joins texts (numbers and booleans are written out: ``12.5``, ``true``);
- ``= != <> < <= > >=`` compare as conditions do: numbers as numbers, ISO dates as dates,
  anything else as text ignoring case; comparisons do not chain;
- ``and``, ``or``, ``not`` (``and``/``or`` stop early);
- functions: ``round(x, n=0)`` (half up, 0-6 places), ``min``, ``max``, ``abs``, ``upper``,
  ``lower``, ``trim``, ``length``, ``concat(a, b, …)``, ``if(cond, a, b)`` (only the chosen
  branch is evaluated).

Precedence, loosest first: ``or``, ``and``, ``not``, comparisons, ``&``, ``+ -``, ``* / %``,
unary ``-``. A number result is rounded to 6 decimal places (half up).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final

from marketapp.scenarios import steps as st
from marketapp.scenarios.messages import message

MAX_LENGTH: Final = 1_000
MAX_DEPTH: Final = 32
MAX_TEXT: Final = 10_000
MAX_NUMBER: Final = Decimal("1e15")
PLACES: Final = 6
MAX_STEPS: Final = 10_000
MAX_ARGS: Final = 20
ROOTS: Final = ("record", "params", "const", "var")

# Enough digits for any product of two bounded numbers; a result over the bound is refused.
_MATH = Context(prec=40, rounding=ROUND_HALF_UP)
_QUANTUM = Decimal(1).scaleb(-PLACES)
# ASCII digits only: ``\d`` and ``str.isdigit`` take other scripts' digits too.
_PLAIN_NUMBER = re.compile(r"^[+-]?[0-9]{1,30}(?:\.[0-9]{1,30})?$")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RUN = re.compile(r"[\w.]+")
_OPERATORS = ("<=", ">=", "!=", "<>", "+", "-", "*", "/", "%", "&", "=", "<", ">", "(", ")", ",")
_ESCAPES = {"n": "\n", "t": "\t"}
_KEYWORDS = {"and", "or", "not", "true", "false"}
# Parser frames (one per bracket, call, unary operator or operator of rising precedence):
# bounds the recursion of parsing and evaluating whatever the input, besides the nesting the
# admin sees; far above what a real expression needs.
_MAX_FRAMES = 96


class ExpressionError(ValueError):
    """A problem at ``position`` (1-based character) of an expression: a message ``code`` of
    :mod:`marketapp.scenarios.messages` with its ``values``."""

    def __init__(self, code: str, position: int, **values: Any) -> None:
        self.code = code
        self.position = position
        self.values = values
        super().__init__(f"{code} at {position}")

    def text(self, language: str) -> str:
        detail = message(language, self.code, **self.values)
        return message(language, "expr_at", detail=detail, position=self.position)


# -- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # number | text | name | op | end
    text: str
    pos: int  # 0-based
    value: Any = None


def tokenize(source: str) -> list[Token]:
    if len(source) > MAX_LENGTH:
        raise ExpressionError("expr_too_long", MAX_LENGTH + 1, limit=MAX_LENGTH)
    tokens: list[Token] = []
    i = 0
    while i < len(source):
        char = source[i]
        if char.isspace():
            i += 1
        elif "0" <= char <= "9":
            tokens.append(_number_token(source, i))
            i += len(tokens[-1].text)
        elif char in "\"'":
            token, i = _text_token(source, i)
            tokens.append(token)
        elif (match := _NAME.match(source, i)) is not None:
            tokens.append(Token("name", match.group(), i))
            i = match.end()
        elif char == ".":
            tokens.append(Token("op", ".", i))
            i += 1
        else:
            op = next((o for o in _OPERATORS if source.startswith(o, i)), None)
            if op is None:
                raise ExpressionError("expr_character", i + 1, char=char)
            tokens.append(Token("op", op, i))
            i += len(op)
    tokens.append(Token("end", "", len(source)))
    return tokens


def _number_token(source: str, i: int) -> Token:
    match = _NUMBER.match(source, i)
    assert match is not None
    end = match.end()
    if end < len(source) and (source[end].isalnum() or source[end] in "._"):
        run = _RUN.match(source, i)
        assert run is not None
        raise ExpressionError("expr_bad_number", i + 1, text=run.group()[:40])
    value = Decimal(match.group())
    if value > MAX_NUMBER:
        raise ExpressionError("expr_out_of_range", i + 1, limit=_plain(MAX_NUMBER))
    return Token("number", match.group(), i, value)


def _text_token(source: str, start: int) -> tuple[Token, int]:
    quote, i, out = source[start], start + 1, []
    while i < len(source):
        char = source[i]
        if char == "\\" and i + 1 < len(source):
            out.append(_ESCAPES.get(source[i + 1], source[i + 1]))
            i += 2
        elif char == quote:
            return Token("text", source[start : i + 1], start, "".join(out)), i + 1
        else:
            out.append(char)
            i += 1
    raise ExpressionError("expr_unclosed_text", start + 1)


# -- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Any
    pos: int


@dataclass(frozen=True)
class Ref:
    """``root.name``: a record field, launch parameter, portal constant or variable."""

    root: str
    name: str
    pos: int


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: Node
    pos: int


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]
    pos: int


Node = Literal | Ref | Unary | Binary | Call

_BINDING = {"or": 10, "and": 20, "&": 50, "+": 60, "-": 60, "*": 70, "/": 70, "%": 70}
_COMPARISONS = {"=": "eq", "!=": "ne", "<>": "ne", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
_BINDING.update({op: 40 for op in _COMPARISONS})
_NOT_BINDING, _MINUS_BINDING = 30, 80
_ARITHMETIC = {"+", "-", "*", "/", "%"}
# name: (fewest arguments, most arguments, result kind or "" when it depends on them)
FUNCTIONS: Final[dict[str, tuple[int, int, str]]] = {
    "round": (1, 2, "number"),
    "min": (1, MAX_ARGS, "number"),
    "max": (1, MAX_ARGS, "number"),
    "abs": (1, 1, "number"),
    "length": (1, 1, "number"),
    "upper": (1, 1, "text"),
    "lower": (1, 1, "text"),
    "trim": (1, 1, "text"),
    "concat": (1, MAX_ARGS, "text"),
    "if": (3, 3, ""),
}


@dataclass(frozen=True)
class Expression:
    source: str
    root: Node
    refs: tuple[Ref, ...]  # every name read, in order, for the definition's checks


@lru_cache(maxsize=512)
def parse(source: str) -> Expression:
    """The tree of ``source``; :class:`ExpressionError` on a syntax error or a bound crossed.
    Cached: the engine evaluates the same step's text for every record."""
    parser = _Parser(source)
    if parser.peek().kind == "end":
        raise ExpressionError("expr_empty", 1)
    root = parser.expression(0)
    end = parser.peek()
    if end.kind != "end":
        raise ExpressionError("expr_unexpected", end.pos + 1, token=end.text)
    _check_literals(root)
    return Expression(source, root, tuple(parser.refs))


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.i = 0
        self.nesting = 0
        self.frames = 0
        self.refs: list[Ref] = []

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def expect(self, op: str) -> Token:
        token = self.take()
        if token.kind != "op" or token.text != op:
            raise _unexpected(token, expected=op)
        return token

    def expression(self, floor: int) -> Node:
        self.frames += 1
        if self.frames > _MAX_FRAMES:
            raise ExpressionError("expr_too_deep", self.peek().pos + 1, limit=MAX_DEPTH)
        left = self.prefix()
        while True:
            token = self.peek()
            op = _infix(token)
            if op is None or _BINDING[op] <= floor:
                break
            self.take()
            right = self.expression(_BINDING[op])
            if op in _COMPARISONS and _is_comparison(left):
                raise ExpressionError("expr_chained", token.pos + 1)
            left = Binary(op, left, right, token.pos)
        self.frames -= 1
        return left

    def nested(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise ExpressionError("expr_too_deep", pos + 1, limit=MAX_DEPTH)

    def prefix(self) -> Node:
        token = self.take()
        if token.kind in ("number", "text"):
            return Literal(token.value, token.pos)
        if token.kind == "op" and token.text in ("(", "-"):
            self.nested(token.pos)
            if token.text == "(":
                node = self.expression(0)
                self.expect(")")
            else:
                node = Unary("-", self.expression(_MINUS_BINDING), token.pos)
            self.nesting -= 1
            return node
        if token.kind != "name":
            raise _unexpected(token)
        word = token.text.lower()
        if word in ("true", "false"):
            return Literal(word == "true", token.pos)
        if word == "not":
            self.nested(token.pos)
            node = Unary("not", self.expression(_NOT_BINDING), token.pos)
            self.nesting -= 1
            return node
        following = self.peek()
        if following.kind == "op" and following.text == "(":
            return self.call(token)
        if following.kind == "op" and following.text == ".":
            return self.ref(token)
        raise ExpressionError("expr_unknown_name", token.pos + 1, name=token.text)

    def ref(self, root: Token) -> Ref:
        if root.text not in ROOTS:
            raise ExpressionError("expr_unknown_root", root.pos + 1, name=root.text)
        self.take()  # the dot
        name = self.take()
        if name.kind != "name":
            raise _unexpected(name)
        ref = Ref(root.text, name.text, root.pos)
        self.refs.append(ref)
        return ref

    def call(self, name: Token) -> Call:
        function = name.text.lower()
        if function not in FUNCTIONS:
            raise ExpressionError("expr_unknown_function", name.pos + 1, name=name.text)
        self.nested(name.pos)
        self.take()  # the bracket
        args: list[Node] = []
        if not (self.peek().kind == "op" and self.peek().text == ")"):
            args.append(self.expression(0))
            while self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                args.append(self.expression(0))
        self.expect(")")
        self.nesting -= 1
        fewest, most, _kind = FUNCTIONS[function]
        if not fewest <= len(args) <= most:
            count = str(fewest) if fewest == most else f"{fewest}-{most}"
            raise ExpressionError("expr_arguments", name.pos + 1, name=function, count=count)
        return Call(function, tuple(args), name.pos)


def _infix(token: Token) -> str | None:
    if token.kind == "op" and token.text in _BINDING:
        return token.text
    if token.kind == "name" and token.text.lower() in ("and", "or"):
        return token.text.lower()
    return None


def _is_comparison(node: Node) -> bool:
    return isinstance(node, Binary) and node.op in _COMPARISONS


def _unexpected(token: Token, expected: str = "") -> ExpressionError:
    if token.kind == "end":
        return ExpressionError("expr_end", token.pos + 1)
    if expected:
        return ExpressionError("expr_expected", token.pos + 1, token=token.text, expected=expected)
    return ExpressionError("expr_unexpected", token.pos + 1, token=token.text)


def _check_literals(root: Node) -> None:
    """A literal text that is no number, or a boolean, in arithmetic: refused when saved."""
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Binary):
            stack += [node.left, node.right]
            if node.op in _ARITHMETIC:
                _literal_number(node.left)
                _literal_number(node.right)
        elif isinstance(node, Unary):
            stack.append(node.operand)
            if node.op == "-":
                _literal_number(node.operand)
        elif isinstance(node, Call):
            stack += list(node.args)


def _literal_number(node: Node) -> None:
    if isinstance(node, Literal) and not isinstance(node.value, Decimal):
        _number(node.value, node.pos)


# -- static kinds -------------------------------------------------------------------------------


def kind_of(node: Node, var_kinds: Mapping[str, str], param_kinds: Mapping[str, str]) -> str:
    """What ``node`` gives, as far as is known before it runs: ``number``, ``text``,
    ``boolean``, or ``any`` (record fields, constants, mixed ``if`` branches …)."""
    if isinstance(node, Literal):
        return _kind(node.value)
    if isinstance(node, Ref):
        kinds = {"var": var_kinds, "params": param_kinds}.get(node.root, {})
        return kinds.get(node.name, "any")
    if isinstance(node, Unary):
        return "number" if node.op == "-" else "boolean"
    if isinstance(node, Binary):
        if node.op in _ARITHMETIC:
            return "number"
        return "text" if node.op == "&" else "boolean"
    if node.name == "if":
        a, b = (kind_of(arg, var_kinds, param_kinds) for arg in node.args[1:])
        return a if a == b else "any"
    return FUNCTIONS[node.name][2]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, Decimal) else "text"


# -- evaluation ---------------------------------------------------------------------------------


def evaluate(
    expression: Expression,
    record: Mapping[str, Any],
    params: Mapping[str, Any],
    constants: Mapping[str, Any],
    variables: Mapping[str, Any],
) -> Any:
    """The value of ``expression``: a ``Decimal`` (rounded to 6 places, no trailing zeros:
    ``12.5``, ``1800``), ``str``, ``bool``,
    ``None`` (empty) or the value a name holds (a date …). ``variables`` are typed values
    (``name → value``). Raises :class:`ExpressionError` (division by zero, a text that is no
    number …) with the position of the operator or name at fault."""
    value = _Evaluator(record, params, constants, variables).run(expression.root)
    if isinstance(value, Decimal):
        return Decimal(_plain(_rounded(value, expression.root.pos)))
    return value


@dataclass
class _Evaluator:
    record: Mapping[str, Any]
    params: Mapping[str, Any]
    constants: Mapping[str, Any]
    variables: Mapping[str, Any]
    steps: int = field(default=0)

    def run(self, node: Node) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ExpressionError("expr_too_many_steps", node.pos + 1, limit=MAX_STEPS)
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Ref):
            return self.read(node)
        if isinstance(node, Unary):
            operand = self.run(node.operand)
            if node.op == "-":
                return _bounded(-_number(operand, node.operand.pos), node.pos)
            return not _truth(operand, node.operand.pos)
        if isinstance(node, Binary):
            return self.binary(node)
        return self.call(node)

    def read(self, ref: Ref) -> Any:
        if ref.root == "const":
            if ref.name not in self.constants:
                raise ExpressionError("expr_no_constant", ref.pos + 1, name=ref.name)
            value = self.constants[ref.name]
        else:
            source = {"record": self.record, "params": self.params, "var": self.variables}
            value = source[ref.root].get(ref.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _number(value, ref.pos)
        return None if value == "" else value

    def binary(self, node: Binary) -> Any:
        # A long left-leaning chain (``1 + 1 + 1 …``) is walked in a loop, not by recursion.
        spine: list[Binary] = []
        current: Node = node
        while isinstance(current, Binary):
            spine.append(current)
            current = current.left
        value = self.run(current)
        for step in reversed(spine):
            value = self.apply(step, value)
        return value

    def apply(self, node: Binary, left: Any) -> Any:
        if node.op in ("and", "or"):
            decided = _truth(left, node.left.pos)
            if decided == (node.op == "or"):
                return decided  # stops early: the right side is not evaluated
            return _truth(self.run(node.right), node.right.pos)
        right = self.run(node.right)
        if node.op in _COMPARISONS:
            return st.compare(_COMPARISONS[node.op], _comparable(left), _comparable(right))
        if node.op == "&":
            return _joined([left, right], node.pos)
        return _arithmetic(node, _number(left, node.left.pos), _number(right, node.right.pos))

    def call(self, node: Call) -> Any:
        if node.name == "if":
            condition = _truth(self.run(node.args[0]), node.args[0].pos)
            return self.run(node.args[1] if condition else node.args[2])
        values = [self.run(arg) for arg in node.args]
        return _FUNCTION_BODIES[node.name](values, node)


def _arithmetic(node: Binary, a: Decimal, b: Decimal) -> Decimal:
    if node.op in ("/", "%") and b == 0:
        raise ExpressionError("expr_division_by_zero", node.pos + 1)
    operation = {
        "+": _MATH.add,
        "-": _MATH.subtract,
        "*": _MATH.multiply,
        "/": _MATH.divide,
        "%": _MATH.remainder,
    }[node.op]
    return _bounded(operation(a, b), node.pos)


def _round(values: list[Any], node: Call) -> Decimal:
    places = 0
    if len(values) == 2:
        n = _number(values[1], node.args[1].pos)
        if n != n.to_integral_value() or not 0 <= n <= PLACES:
            raise ExpressionError("expr_round_places", node.args[1].pos + 1, limit=PLACES)
        places = int(n)
    x = _number(values[0], node.args[0].pos)
    return x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _numbers(values: list[Any], node: Call) -> list[Decimal]:
    return [_number(v, arg.pos) for v, arg in zip(values, node.args, strict=True)]


def _text_result(text: str, node: Call) -> str:
    if len(text) > MAX_TEXT:
        raise ExpressionError("expr_text_too_long", node.pos + 1, limit=MAX_TEXT)
    return text


_FUNCTION_BODIES: dict[str, Any] = {
    "round": _round,
    "min": lambda values, node: min(_numbers(values, node)),
    "max": lambda values, node: max(_numbers(values, node)),
    "abs": lambda values, node: abs(_numbers(values, node)[0]),
    "length": lambda values, node: Decimal(len(text_of(values[0]))),
    "upper": lambda values, node: _text_result(text_of(values[0]).upper(), node),
    "lower": lambda values, node: _text_result(text_of(values[0]).lower(), node),
    "trim": lambda values, node: text_of(values[0]).strip(),
    "concat": lambda values, node: _joined(values, node.pos),
}


# -- values -------------------------------------------------------------------------------------


def as_number(value: Any) -> Decimal:
    """``value`` as arithmetic reads it; errors point at the first character."""
    return _number(value, 0)


def _number(value: Any, pos: int) -> Decimal:
    """``value`` in arithmetic: empty is 0; a text must be a plain number (``1500.00``)."""
    if value is None:
        return Decimal(0)
    if isinstance(value, bool):
        raise ExpressionError("expr_not_number", pos + 1, value=text_of(value))
    if isinstance(value, Decimal | int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str) and _PLAIN_NUMBER.match(value.strip()):
        number = Decimal(value.strip())
    else:
        shown = text_of(value)
        shown = shown if len(shown) <= 40 else shown[:40] + "…"
        raise ExpressionError("expr_not_number", pos + 1, value=shown)
    if not number.is_finite():
        raise ExpressionError("expr_not_number", pos + 1, value=text_of(value))
    return _bounded(number, pos)


def _bounded(number: Decimal, pos: int) -> Decimal:
    if abs(number) > MAX_NUMBER:
        raise ExpressionError("expr_out_of_range", pos + 1, limit=_plain(MAX_NUMBER))
    return number


def _rounded(number: Decimal, pos: int) -> Decimal:
    try:
        return _bounded(number, pos).quantize(_QUANTUM, rounding=ROUND_HALF_UP)
    except InvalidOperation:  # cannot happen within the bound; kept an error, not a crash
        raise ExpressionError("expr_out_of_range", pos + 1, limit=_plain(MAX_NUMBER)) from None


def _truth(value: Any, pos: int) -> bool:
    """A boolean: ``true``/``false``, a CRM ``Y``/``N``, or empty (false)."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().upper() in ("Y", "N"):
        return value.strip().upper() == "Y"
    raise ExpressionError("expr_not_boolean", pos + 1, value=text_of(value)[:40])


def _comparable(value: Any) -> Any:
    """Values as :func:`steps.compare` reads them (booleans as the CRM writes them)."""
    if isinstance(value, Decimal):
        return _plain(value)
    return value


def _joined(values: list[Any], pos: int) -> str:
    total = 0
    parts: list[str] = []
    for value in values:
        part = text_of(value)
        total += len(part)
        if total > MAX_TEXT:
            raise ExpressionError("expr_text_too_long", pos + 1, limit=MAX_TEXT)
        parts.append(part)
    return "".join(parts)


def text_of(value: Any) -> str:
    """A value written out: ``12.5`` (no trailing zeros), ``true``/``false``, ISO dates, ""
    for empty, a list's items joined by ``, ``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int | float):
        return _plain(Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(text_of(v) for v in value)
    return str(value)


def _plain(number: Decimal) -> str:
    """``1500`` for 1500.000000, ``12.5`` for 12.50: fixed-point, no exponent."""
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")
