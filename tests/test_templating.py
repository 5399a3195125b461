"""The template sandbox: what it refuses (issue 9, attack 4), what still works, plain text.

No timing thresholds: each test asserts the refusal; `marketapp bench templates`-style figures
are printed by tests/test_fuzz_templates.py.
"""

from __future__ import annotations

import json
import logging
import sys

import pytest
from pydantic import ValidationError

from marketapp.actions import sandbox, templating
from marketapp.actions.base import refused_template
from marketapp.actions.records import CommentParams, EditParams
from marketapp.actions.sms import SmsParams
from marketapp.logging import MAX_TRACEBACK, JsonFormatter

CONTACT = {"contact": {"ID": "2", "NAME": "Ann", "OPPORTUNITY": "12.5"}}
DEEP = "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"

# Refused before rendering: when settings are validated.
AT_VALIDATION = {
    "huge power": "{{ (10 ** (12 * 10**6)) > 1 }}",
    "power in power": "{{ 10 ** (10**7) }}",
    "repeated text": "{{ 'a' * 3000000 }}",
    "repeated list": "{{ [1] * 10**9 }}",
    "printf width": "{{ '%999999999s' % 1 }}",
    "printf star": "{{ '%*s' % (5, 1) }}",
    "division by zero": "{{ 1/0 }}",
    "deep brackets": DEEP,
    "deep blocks": "{% if 1 %}" * 30 + "x" + "{% endif %}" * 30,
    "long chain": "{{ " + "1+" * 400 + "1 }}",
    "unknown filter random": "{{ [1, 2]|random }}",
    "unknown filter pprint": "{{ contact|pprint }}",
    "syntax": "{{ contact.NAME ",
}

# Refused while rendering (they depend on data, or their cost shows only at run time).
AT_RENDER = {
    "lipsum": "{{ lipsum(10**6) }}",
    "cycler": "{{ cycler(1, 2).next() }}",
    "joiner": "{{ joiner(',')() }}",
    "dict": "{{ dict(a=1) }}",
    "namespace": "{% set ns = namespace(n=1) %}{{ ns.n }}",
    "data division": "{{ 12 // (contact.ID|int - 2) }}",
    "format width": "{{ '{:>999999999}'.format(1) }}",
    "nested format width": "{{ '{:>{w}}'.format(1, w=10**9) }}",
    "format filter": "{{ '%999999999d'|format(1) }}",
    "center filter": "{{ 'a'|center(10**9) }}",
    "ljust method": "{{ 'a'.ljust(10**9) }}",
    "zfill method": "{{ '1'.zfill(10**9) }}",
    "indent": "{{ ('a\n' * 1000)|indent(1000) }}",
    "wordwrap": "{{ ('a ' * 100000)|wordwrap(1, wrapstring='x' * 1000) }}",
    "replace": "{{ ('a' * 1000)|replace('a', 'b' * 1000) }}",
    "replace method": "{{ ('a' * 1000).replace('a', 'b' * 1000) }}",
    "join over references": "{% set s = 'a' * 200000 %}{{ ([s] * 9000)|join }}",
    "join method": "{% set s = 'a' * 200000 %}{{ ''.join([s] * 9000) }}",
    "string of references": "{% set s = 'a' * 200000 %}{{ [s] * 9000 }}",
    "range": "{{ range(10**9)|list|length }}",
    "batch": "{{ [1]|batch(10**9, 'x')|list }}",
    "slice": "{{ [1]|slice(10**9, 'x')|list }}",
    "concat doubling": "{% set a = 'a' * 1000 %}" + "{% set a = a ~ a %}" * 30 + "{{ a|length }}",
    "macro doubling": (
        "{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n > 0 else s|length }}{% endmacro %}"
        "{{ f('a', 40) }}"
    ),
    "macro recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "many copies": "{{ range(10000)|map('center', 200000)|list|length }}",
    "printf references": "{{ '%(a)s' * 1000 % {'a': 'b' * 1000} }}",
    "nested loops": (
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
    ),
    "data power": "{{ (contact.ID|int + 2) ** 5000 }}",
}


@pytest.mark.parametrize("source", AT_VALIDATION.values(), ids=AT_VALIDATION.keys())
def test_refused_when_settings_are_validated(source: str) -> None:
    with pytest.raises(templating.TemplateProblem):
        templating.check(source)
    with pytest.raises(ValidationError) as info:
        CommentParams.model_validate({"text": source})
    assert isinstance(info.value.errors()[0]["ctx"]["error"], templating.TemplateProblem)


@pytest.mark.parametrize("source", AT_RENDER.values(), ids=AT_RENDER.keys())
def test_refused_when_rendered(source: str) -> None:
    with pytest.raises(templating.TemplateProblem):
        templating.render(source, CONTACT)


def test_refusals_say_why() -> None:
    def why(source: str) -> str:
        with pytest.raises(templating.TemplateProblem) as info:
            templating.render(source, CONTACT)
        return str(info.value)

    assert "too large a number" in why(AT_VALIDATION["huge power"])
    assert "too long a text" in why(AT_VALIDATION["repeated text"])
    assert "nested too deeply" in why(DEEP)
    assert "width" in why(AT_VALIDATION["printf width"])
    assert "division by zero" in why(AT_VALIDATION["division by zero"])
    assert "'lipsum' is undefined" in why(AT_RENDER["lipsum"])
    assert "too long to render" in why(AT_RENDER["nested loops"])
    assert "calls itself too deeply" in why(AT_RENDER["macro recursion"])


def test_a_render_past_its_deadline_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "RENDER_SECONDS", -1.0)
    with pytest.raises(templating.TemplateProblem, match="too long to render"):
        templating.render("{% for i in range(3) %}{{ i }}{% endfor %}", {})


def test_output_over_the_limit_is_too_long() -> None:
    with pytest.raises(templating.TextTooLong):
        templating.render("{% for i in range(100) %}abcdef{% endfor %}", {}, limit=500)
    assert refused_template(templating.TextTooLong("x")).reason == "too_long"
    assert refused_template(templating.TemplateProblem("x")).reason == "template_error"


def test_every_python_error_becomes_a_template_problem() -> None:
    for source in ("{{ 2.0 ** (10**6) }}", "{{ 'a' - 1 }}", "{{ contact.NAME + 1 }}", "{{ x.y }}"):
        with pytest.raises(templating.TemplateProblem):
            templating.render(source, CONTACT)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {{ contact.NAME }}!", "Hi Ann!"),
        ("{{ contact.NAME|upper }} {{ contact.NAME|center(7) }}", "ANN   Ann  "),
        ("{{ '%05.1f' % (contact.OPPORTUNITY|float) }}", "012.5"),
        ("{{ '{:>5}|{:.2f}'.format(contact.ID, 2) }}", "    2|2.00"),
        ("{{ '{n}'.format_map({'n': 3}) }}", "3"),
        ("{{ ['a', 'b']|join(', ') }}", "a, b"),
        ("{{ [{'v': 1}, {'v': 2}]|join('+', attribute='v') }}", "1+2"),
        ("{% for i in range(3) %}{{ loop.index }}{% endfor %}", "123"),
        ("{% macro hi(n) %}Hi {{ n }}{% endmacro %}{{ hi(contact.NAME) }}", "Hi Ann"),
        ("{{ 2 ** 64 }} {{ 7 // 2 }} {{ -(contact.ID|int) }}", "18446744073709551616 3 -2"),
        ("{{ 'x' * 3 ~ '-' ~ [1, 2] }}", "xxx-[1, 2]"),
        ("{{ ', '.join(['a', 'b']) }} {{ 'a-b'.replace('-', '+') }}", "a, b a+b"),
        ("{{ range(3)|list|length }} {{ [3, 1]|sort|first }}", "3 1"),
        ("{{ unknown }}", ""),
    ],
)
def test_ordinary_templates_still_work(source: str, expected: str) -> None:
    templating.check(source)
    assert templating.render(source, CONTACT) == expected


def test_robot_settings_with_refused_templates_are_invalid() -> None:
    for model, field in ((SmsParams, "text"), (CommentParams, "text")):
        with pytest.raises(ValidationError):
            model.model_validate({field: AT_VALIDATION["huge power"]})
    with pytest.raises(ValidationError):
        EditParams.model_validate({"fields": "COMMENTS = {{ 'a' * 3000000 }}"})


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<b>Hi</b> Ann<script>alert(1)</script>", "Hi Ann"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;ok", "ok"),
        ("&amp;lt;i&amp;gt;x", "x"),
        ("a < b & c > d", "a < b & c > d"),
        ('<a href="javascript:x()" onclick="y()">link</a>', "link"),
        ("line 1\nline 2", "line 1\nline 2"),
    ],
)
def test_plain_text_has_no_markup(markup: str, text: str) -> None:
    assert templating.plain_text(markup) == text


def test_subject_is_one_plain_line() -> None:
    assert templating.one_line("<i>Offer</i>\r\nBcc: x@example.com") == "Offer Bcc: x@example.com"


def test_a_huge_traceback_is_logged_bounded() -> None:
    try:
        raise ValueError("x" * 200_000 + " token=s3cr3t-value the end")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "crash", None, sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert len(entry["exc"]) < MAX_TRACEBACK + 100
    assert entry["exc"].startswith("Traceback") and entry["exc"].endswith("the end")
    assert "characters left out" in entry["exc"] and "s3cr3t" not in entry["exc"]
