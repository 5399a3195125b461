"""Fuzzed templates (issue 9, attacks 4-6): exhaustion attempts and poison templates.

Templates are generated from a small grammar whose pieces are the sandbox's known amplifiers
(huge powers and products, repetition, widths, padding, replace, join, batch, ranges, loops,
macros, doubling concatenation, deep nesting) mixed with ordinary record access. Whatever comes
out, a check or render either succeeds within the caps or raises ``TemplateProblem``: never
another exception, never output over the limit. The slowest case's time is printed.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from marketapp.actions import templating
from marketapp.actions.sandbox import MAX_TEXT

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONTEXT = {"contact": {"ID": "2", "NAME": "Ann", "COMMENTS": "x" * 1000, "PHONE": []}}
SLOWEST: list[tuple[float, str]] = [(0.0, "")]

small = st.integers(min_value=-3, max_value=12)
big = st.sampled_from([10**6, 10**9, 12 * 10**6, 2**64, 3_000_000, 262_145, 10_001])
numbers = st.one_of(small, big).map(str)
texts = st.sampled_from(["'a'", "'ab\\n'", "'%s'", "'{}'", "'%999999999s'", "'{:>99999999}'", "''"])
fields = st.sampled_from(["contact.ID", "contact.NAME", "contact.COMMENTS", "contact.PHONE"])
atoms = st.one_of(numbers, texts, fields, st.just("(contact.ID|int)"), st.just("[1, 2]"))
operators = st.sampled_from(["**", "*", "+", "-", "//", "/", "%", "~"])
filters = st.sampled_from(
    [
        "center({n})", "indent({n})", "wordwrap({n})", "replace('a', 'b' * {n})", "join",
        "batch({n}, 'x')", "slice({n}, 'x')", "format({n})", "truncate({n})", "string", "list",
        "int", "length", "upper", "sum", "first", "reverse", "random", "pprint", "tojson",
    ]
)  # fmt: skip
methods = st.sampled_from(
    ["ljust({n})", "center({n})", "zfill({n})", "replace('a', 'b' * {n})", "format({n})",
     "join([contact.COMMENTS] * {n})", "expandtabs({n})", "split()"]
)  # fmt: skip
globals_ = st.sampled_from(
    ["range({n})", "lipsum({n})", "cycler(1, 2)", "joiner()", "dict(a={n})", "namespace(a=1)"]
)


def expressions(depth: int = 3) -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, operators, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(inner, filters, numbers).map(lambda t: f"{t[0]}|{t[1].format(n=t[2])}"),
            st.tuples(texts, methods, numbers).map(lambda t: f"{t[0]}.{t[1].format(n=t[2])}"),
            st.tuples(globals_, numbers).map(lambda t: t[0].format(n=t[1])),
            st.tuples(inner, numbers).map(lambda t: f"[{t[0]}] * {t[1]}"),
        )

    return st.recursive(atoms, extend, max_leaves=depth * 3)


def statements() -> st.SearchStrategy[str]:
    expr = expressions()
    return st.one_of(
        expr.map(lambda e: "{{ " + e + " }}"),
        st.tuples(numbers, numbers, expr).map(
            lambda t: (
                f"{{% for a in range({t[0]}) %}}{{% for b in range({t[1]}) %}}"
                f"{{{{ {t[2]} }}}}{{% endfor %}}{{% endfor %}}"
            )
        ),
        st.tuples(st.integers(1, 40)).map(
            lambda t: "{% set s = 'ab' %}" + "{% set s = s ~ s %}" * t[0] + "{{ s|length }}"
        ),
        st.integers(1, 60).map(
            lambda n: (
                "{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n > 0 else s|length }}"
                "{% endmacro %}{{ f('a', " + str(n) + ") }}"
            )
        ),
        st.integers(1, 3000).map(lambda n: "{{ " + "(" * n + "1" + ")" * n + " }}"),
        st.integers(1, 300).map(lambda n: "{% if 1 %}" * n + "x" + "{% endif %}" * n),
        st.integers(1, 3000).map(lambda n: "{{ " + "-" * n + "1 }}"),
        st.integers(1, 3000).map(lambda n: "{{ " + "1 ~ " * n + "1 }}"),
        st.just("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
        st.text(max_size=40),
    )


def attempt(source: str, limit: int) -> str:
    started = time.perf_counter()
    try:
        templating.check(source)
        out = templating.render(source, CONTEXT, limit=limit)
    except templating.TemplateProblem:
        event("refused")
        return ""
    finally:
        elapsed = time.perf_counter() - started
        if elapsed > SLOWEST[0][0]:
            SLOWEST[0] = (elapsed, source[:120])
    event("rendered")
    assert len(out) <= limit
    return out


@FUZZ
@given(parts=st.lists(statements(), min_size=1, max_size=4), limit=st.sampled_from([160, MAX_TEXT]))
def test_templates_render_within_caps_or_are_refused(parts: list[str], limit: int) -> None:
    attempt("".join(parts), limit)


@FUZZ
@given(text=st.text(max_size=300), markup=st.sampled_from(["<b>", "</b>", "<script>", "&lt;", "&"]))
def test_plain_text_never_carries_a_tag(text: str, markup: str) -> None:
    plain = templating.plain_text(markup + text + markup)
    assert templating.plain_text(plain) == plain
    assert "<script" not in plain.lower() and "<b>" not in plain


def test_print_slowest_case(capsys: Any) -> None:
    with capsys.disabled():
        seconds, source = SLOWEST[0]
        print(f"\nslowest fuzzed template: {seconds * 1000:.0f} ms: {source!r}")
