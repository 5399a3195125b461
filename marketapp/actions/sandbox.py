"""The Jinja sandbox user templates run in, with limits so that no template can exhaust a worker.

Workers are threads, so a render cannot be interrupted from outside: every operation that can
be costly is checked *before* it runs, and every step ticks a per-render :class:`Budget`.

- Numbers: ``**`` and ``*`` are refused when the result would exceed ``MAX_INT_BITS``
  (``10 ** (12 * 10**6)`` never reaches Python).
- Text and lists: repetition, concatenation (``+``, ``~``), widths (``'%999999999s'``,
  ``'{:>999999999}'``, ``center``, ``indent`` …), ``replace``, ``join``, ``batch``, ``slice``
  and ``range`` are refused when the result would exceed ``MAX_TEXT`` characters or
  ``MAX_ITEMS`` items; anything turned into text is measured first (``[s] * 9999`` holds
  9,999 references to one string, its text would not fit in memory).
- Work: every call, attribute, operator, filter and loop iteration is one step; a render may
  take ``MAX_STEPS`` steps, allocate ``MAX_ALLOCATED`` characters in all and run for
  ``RENDER_SECONDS`` of wall-clock time.
- Shape: templates nested deeper than ``MAX_NESTING`` (brackets or blocks) are refused before
  the parser recurses into them.
- Globals: only ``range``; ``lipsum``, ``cycler``, ``joiner``, ``dict`` and ``namespace`` are
  gone, and so are the ``random`` (breaks reconciliation by text) and ``pprint`` filters.
"""

from __future__ import annotations

import functools
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from jinja2 import Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import pass_environment
from jinja2.visitor import NodeTransformer

from marketapp.actions.filters import FILTERS as EXTRA_FILTERS

MAX_INT_BITS = 4096  # about 1,230 digits: far more than any price or count
MAX_TEXT = 256 * 1024  # characters in one value or one render's output
MAX_ITEMS = 10_000  # items in one list or range
MAX_WIDTH = 1_000  # a field width or precision in a format
MAX_ALLOCATED = 8 * MAX_TEXT  # characters and items produced by one render, in all
MAX_STEPS = 200_000  # operations and loop iterations of one render
MAX_NESTING = 20  # brackets or blocks inside one another
RENDER_SECONDS = 1.0


class TemplateProblem(ValueError):
    """The template is refused or fails to render; the message says why."""


class TextTooLong(TemplateProblem):
    """The rendered text exceeds the limit of where it goes."""


def _refuse_size() -> TemplateProblem:
    return TemplateProblem(
        _(
            "The template builds too long a text or list (limits: %(chars)s characters, "
            "%(items)s items).",
            chars=MAX_TEXT,
            items=MAX_ITEMS,
        )
    )


@dataclass
class Budget:
    """What one render may still spend."""

    deadline: float = field(default_factory=lambda: time.monotonic() + RENDER_SECONDS)
    steps: int = 0
    allocated: int = 0

    def tick(self, produced: int = 0) -> None:
        self.steps += 1
        self.allocated += produced
        if self.allocated > MAX_ALLOCATED:
            raise _refuse_size()
        if self.steps > MAX_STEPS or time.monotonic() > self.deadline:
            raise TemplateProblem(
                _(
                    "The template takes too long to render (more than %(steps)s steps or "
                    "%(seconds)s s).",
                    steps=MAX_STEPS,
                    seconds=RENDER_SECONDS,
                )
            )


_budget: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


def start_budget() -> Any:
    """Begin a render's budget; pass the result to :func:`end_budget`."""
    return _budget.set(Budget())


def end_budget(token: Any) -> None:
    _budget.reset(token)


def _tick(value: Any = None) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick(_produced(value))


def _produced(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict) else 0


# -- measuring values ---------------------------------------------------------------------


def weight(value: Any, limit: int = MAX_TEXT) -> int:
    """About how many characters ``str(value)`` has; stops counting past ``limit``."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1
        else:
            total += 8
    return total


def check_text(value: Any) -> None:
    """Refuse a value whose text would not fit (before it is made into text)."""
    if weight(value) > MAX_TEXT:
        raise _refuse_size()


def check_value(value: Any) -> Any:
    """Refuse a produced value over the limits; count it against the render's budget."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise _refuse_number()
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise _refuse_size()
    elif isinstance(value, list | tuple | dict | set | frozenset) and len(value) > MAX_ITEMS:
        raise _refuse_size()
    _tick(value)
    return value


def _refuse_number() -> TemplateProblem:
    return TemplateProblem(
        _("The template computes too large a number (limit: %(bits)s bits).", bits=MAX_INT_BITS)
    )


def _refuse_width() -> TemplateProblem:
    return TemplateProblem(_("The template uses a width or precision above %(n)s.", n=MAX_WIDTH))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _size_of_repeat(seq: Any, times: Any) -> None:
    if not _int(times) or times <= 0:
        return
    if isinstance(seq, str) and len(seq) * times > MAX_TEXT:
        raise _refuse_size()
    if isinstance(seq, list | tuple) and (
        len(seq) * times > MAX_ITEMS or weight(seq) * times > MAX_TEXT
    ):
        raise _refuse_size()


_PRINTF = re.compile(r"%%|%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_printf(fmt: str, args: Any) -> None:
    """``'%999999999s' % x``: refuse widths and precisions above ``MAX_WIDTH`` (or ``*``), and
    texts that would not fit (``'%(a)s' * 1000 % {'a': s}`` uses ``s`` a thousand times)."""
    conversions = 0
    for match in _PRINTF.finditer(fmt):
        conversions += match.group() != "%%"
        for number in match.groups():
            if number == "*" or (number and int(number) > MAX_WIDTH):
                raise _refuse_width()
    if conversions and len(fmt) + conversions * weight(args) > MAX_TEXT:
        raise _refuse_size()


def check_spec(spec: str) -> None:
    """A ``str.format`` spec such as ``>999999999``: no number in it above ``MAX_WIDTH``."""
    if any(int(n) > MAX_WIDTH for n in re.findall(r"\d+", spec)):
        raise _refuse_width()


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too large, before computing it."""
    if operator == "**" and _int(left) and _int(right) and right > 0 and abs(left) > 1:
        if (abs(left).bit_length() - 1) * right > MAX_INT_BITS:
            raise _refuse_number()
    elif operator == "*":
        if _int(left) and _int(right):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
                raise _refuse_number()
        else:
            _size_of_repeat(left, right)
            _size_of_repeat(right, left)
    elif operator == "+" and isinstance(left, str | list | tuple):
        if isinstance(right, str | list | tuple) and weight(left) + weight(right) > MAX_TEXT:
            raise _refuse_size()
    elif operator == "%" and isinstance(left, str):
        check_printf(left, right)


# -- the environment ----------------------------------------------------------------------


class _Guard(NodeTransformer):
    """Route loops and ``~`` through the environment, where they are counted and measured."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _env_call("guarded_iter", [node.iter], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _env_call("guarded_concat", list(node.nodes), node.lineno)


def _env_call(name: str, args: list[Any], lineno: int) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None)
    call.set_lineno(lineno)
    return call


class _GuardedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Guard().visit(node)
        super().visit_Template(node, frame)


class _CheckedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        check_spec(format_spec)
        check_text(value)
        return check_value(super().format_field(value, format_spec))


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose every costly step is checked and counted."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    intercepted_unops = frozenset({"+", "-"})

    def __init__(self) -> None:
        super().__init__(undefined=Undefined, autoescape=False, finalize=_finalize)
        self.globals = {"range": _range}
        self.filters = _filters(self.filters)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        check_binop(operator, left, right)
        return check_value(super().call_binop(context, operator, left, right))

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        _tick()
        return super().call_unop(context, operator, arg)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        value = super().getitem(obj, argument)
        return check_value(value) if isinstance(argument, slice) else value

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        args = _checked_method_args(__obj, args)
        return check_value(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if not (
            isinstance(value, types.MethodType | types.BuiltinMethodType)
            and value.__name__ in ("format", "format_map")
            and isinstance(value.__self__, str)
        ):
            return None
        source: str = value.__self__
        formatter = _CheckedFormatter(self)
        by_map = value.__name__ == "format_map"

        def formatted(*args: Any, **kwargs: Any) -> str:
            if by_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                return str(formatter.vformat(source, (), args[0]))
            return str(formatter.vformat(source, args, kwargs))

        return formatted

    def guarded_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _tick()
            yield item

    def guarded_concat(self, *parts: Any) -> str:
        for part in parts:
            check_text(part)
        return str(check_value("".join(str(p) for p in parts)))


def _finalize(value: Any) -> Any:
    """Every ``{{ … }}`` output: measured before it is made into text."""
    if not isinstance(value, str):
        check_text(value)
    return value


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_ITEMS:
        raise _refuse_size()
    return numbers


def _checked_method_args(obj: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Refuse a str method call whose result would grow past the limits with its arguments."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str) or not isinstance(obj, types.BuiltinMethodType) or not args:
        return args
    name, first = obj.__name__, args[0]
    if name in ("center", "ljust", "rjust", "zfill") and _int(first) and first > MAX_TEXT:
        raise _refuse_size()
    if name == "expandtabs" and _int(first) and owner.count("\t") * first > MAX_TEXT:
        raise _refuse_size()
    if name == "replace" and len(args) >= 2:
        _check_replace(owner, first, args[1])
    if name == "join":
        items = list(_take(first))
        _joined_size(items, owner)
        return (items, *args[1:])
    return args


def _check_replace(text: Any, old: Any, new: Any) -> None:
    text, old, new = str(text), str(old), str(new)
    count = text.count(old) if old else len(text) + 1
    if len(text) + count * max(len(new) - len(old), 0) > MAX_TEXT:
        raise _refuse_size()


def _take(iterable: Any) -> Iterator[Any]:
    for n, item in enumerate(iterable):
        if n >= MAX_ITEMS:
            raise _refuse_size()
        _tick()
        yield item


def _joined_size(items: list[Any], sep: str) -> None:
    total = len(sep) * max(len(items) - 1, 0)
    for item in items:
        total += weight(item, MAX_TEXT - total)
        if total > MAX_TEXT:
            raise _refuse_size()


# -- filters ------------------------------------------------------------------------------

_DROPPED_FILTERS = {"random", "pprint"}
# Filters that turn their input into text: the input is measured first.
_TEXT_FILTERS = {
    "capitalize", "center", "escape", "e", "forceescape", "format", "indent", "lower",
    "replace", "string", "striptags", "title", "tojson", "trim", "truncate", "upper",
    "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
}  # fmt: skip


def _int_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


def _precheck(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    text = value if isinstance(value, str) else ""
    if name == "center":
        width = _int_arg(args, kwargs, 0, "width")
        if _int(width) and width > MAX_TEXT:
            raise _refuse_size()
    elif name == "indent":
        width = _int_arg(args, kwargs, 0, "width")
        per_line = width if _int(width) else len(str(width or ""))
        if (text.count("\n") + 1) * per_line + len(text) > MAX_TEXT:
            raise _refuse_size()
    elif name == "wordwrap":
        width = _int_arg(args, kwargs, 0, "width")
        wrap = _int_arg(args, kwargs, 2, "wrapstring") or "\n"
        lines = len(text) // max(width if _int(width) else 79, 1) + 1
        if len(text) + lines * len(str(wrap)) > MAX_TEXT:
            raise _refuse_size()
    elif name == "replace" and len(args) >= 2:
        _check_replace(value, args[0], args[1])
    elif name == "format" and isinstance(value, str):
        check_printf(value, (args, kwargs))
    elif name in ("batch", "slice"):
        count = _int_arg(args, kwargs, 0, "linecount" if name == "batch" else "slices")
        if _int(count) and count > MAX_ITEMS:
            raise _refuse_size()


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    passes = getattr(func, "jinja_pass_arg", None)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        lead, rest = (args[:1], args[1:]) if passes is not None else ((), args)
        value, extra = (rest[0], rest[1:]) if rest else (None, ())
        _precheck(name, value, extra, kwargs)
        if name in _TEXT_FILTERS:
            check_text(value)
        return check_value(func(*lead, *rest, **kwargs))

    return guarded


@pass_environment
def _join(env: LimitedSandbox, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(_take(value))
    if attribute is not None:
        items = [make_attrgetter(env, attribute)(item) for item in items]
    _joined_size(items, str(d))
    return str(d).join(str(item) for item in items)


def _filters(defaults: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    chosen = {k: v for k, v in defaults.items() if k not in _DROPPED_FILTERS}
    chosen["join"] = _join
    chosen.update(EXTRA_FILTERS)  # date, datetime, plural: see marketapp.actions.filters
    return {name: _guarded_filter(name, func) for name, func in chosen.items()}


# -- shape checks before parsing ----------------------------------------------------------

_OPENING = {"(", "[", "{"}
_CLOSING = {")", "]", "}"}
_BLOCKS = {"if", "for", "macro", "call", "filter", "with", "block", "autoescape", "trans"}


def check_nesting(env: LimitedSandbox, source: str) -> None:
    """Refuse deep nesting before the (recursive) parser and compiler meet it."""
    brackets = blocks = 0
    after_block_begin = False
    for _line, kind, value in env.lex(source):
        if kind == "operator" and value in _OPENING:
            brackets += 1
        elif kind == "operator" and value in _CLOSING:
            brackets -= 1
        elif after_block_begin and kind == "name":
            if value in _BLOCKS:
                blocks += 1
            elif value.startswith("end"):
                blocks -= 1
        if kind != "whitespace":
            after_block_begin = kind == "block_begin"
        if brackets > MAX_NESTING or blocks > MAX_NESTING:
            raise TemplateProblem(
                _("The template is nested too deeply (more than %(n)s levels).", n=MAX_NESTING)
            )


def check_depth(template: nodes.Node) -> None:
    """The parsed tree's depth (long ``1+1+…`` chains nest without brackets)."""
    stack = [(template, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > 5 * MAX_NESTING:
            raise TemplateProblem(
                _("The template is nested too deeply (more than %(n)s levels).", n=MAX_NESTING)
            )
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


# -- constant expressions, refused when settings are validated ----------------------------


class _NotConstant(Exception):
    pass


def _fold(node: nodes.Node) -> Any:
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        items = [_fold(item) for item in node.items]
        return items if isinstance(node, nodes.List) else tuple(items)
    if isinstance(node, nodes.BinExpr) and node.operator in LimitedSandbox.intercepted_binops:
        left, right = _fold(node.left), _fold(node.right)
        check_binop(node.operator, left, right)
        return check_value(_BINOPS[node.operator](left, right))
    if isinstance(node, nodes.Neg):
        return -_fold(node.node)
    if isinstance(node, nodes.Pos):
        return +_fold(node.node)
    raise _NotConstant


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
    "**": lambda a, b: a**b,
}


def check_constants(template: nodes.Node) -> None:
    """Evaluate constant arithmetic (``{{ 10 ** 10**7 }}``, ``{{ 1/0 }}``) under the limits."""
    stack = [template]
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.BinExpr | nodes.UnaryExpr):
            try:
                _fold(node)
                continue
            except _NotConstant:
                pass
            except TemplateProblem:
                raise
            except Exception as exc:  # ZeroDivisionError, TypeError, OverflowError …
                raise TemplateProblem(_("Template error: %(error)s", error=str(exc))) from exc
        stack.extend(node.iter_child_nodes())


__all__ = ["Budget", "LimitedSandbox", "TemplateProblem", "TextTooLong"]
