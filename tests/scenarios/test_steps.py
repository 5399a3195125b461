"""Step semantics that the engine and the preview share: splits, conditions, action params;
the date and plural filters."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from marketapp.actions import templating
from marketapp.actions.email import EmailParams
from marketapp.actions.filters import plural_form
from marketapp.scenarios import steps as st
from marketapp.scenarios.context import portal_view, template_context, user_view


def _split(*percents: int) -> st.SplitStep:
    return st.SplitStep.model_validate(
        {"type": "split", "branches": [{"name": str(p), "percent": p} for p in percents]}
    )


def test_split_is_reproducible_and_close_to_the_percentages() -> None:
    step = _split(20, 30, 50)
    buckets = [st.split_bucket("promo", "ab", "CONTACT", n) for n in range(10_000)]
    assert buckets == [st.split_bucket("promo", "ab", "CONTACT", n) for n in range(10_000)]
    counts = Counter(st.split_branch(step, b) for b in buckets)
    print("split 20/30/50 over 10,000 records:", dict(sorted(counts.items())))
    for branch, share in ((0, 2000), (1, 3000), (2, 5000)):
        assert abs(counts[branch] - share) < 300
    # Another split of the same scenario shuffles differently.
    other = [st.split_bucket("promo", "other", "CONTACT", n) for n in range(100)]
    assert other != buckets[:100]


def test_split_bucket_is_the_documented_hash() -> None:
    import hashlib

    digest = hashlib.sha256(b"promo|ab|DEAL|42").digest()
    assert st.split_bucket("promo", "ab", "DEAL", 42) == int.from_bytes(digest[:8], "big") % 100


def test_split_branch_ranges() -> None:
    step = _split(0, 100)
    assert {st.split_branch(step, b) for b in range(100)} == {1}
    step = _split(50, 50)
    assert st.split_branch(step, 49) == 0 and st.split_branch(step, 50) == 1


@pytest.mark.parametrize(
    ("op", "left", "right", "expected"),
    [
        ("eq", "100.00", 100, True),
        ("gt", "1500", "200", True),  # numbers, not text
        ("lt", "2024-01-02", "2024-10-01", True),
        ("eq", "Won", "won", True),
        ("ne", "LOSE", "WON", True),
        ("contains", ["VIP", "B2B"], "vip", True),
        ("not_contains", "hello", "bye", True),
        ("empty", "", None, True),
        ("empty", [], None, True),
        ("not_empty", "0", None, True),
        ("gte", None, 1, False),
        ("eq", True, "Y", True),
    ],
)
def test_compare(op: str, left: object, right: object, expected: bool) -> None:
    assert st.compare(op, left, right) is expected


def test_condition_groups_nest() -> None:
    step = st.ConditionStep.model_validate(
        {
            "type": "condition",
            "match": "and",
            "rules": [
                {"left": {"field": "STAGE_ID"}, "op": "ne", "right": {"value": "WON"}},
                {
                    "match": "or",
                    "rules": [
                        {"left": {"field": "OPPORTUNITY"}, "op": "gt", "right": {"param": "min"}},
                        {"left": {"const": "vip"}, "op": "eq", "right": {"value": "Y"}},
                    ],
                },
            ],
            "yes": [{"type": "stop"}],
        }
    )
    record = {"STAGE_ID": "NEW", "OPPORTUNITY": "50"}
    assert not st.holds(step.match, step.rules, record, {"min": 100}, {"vip": "N"})
    assert st.holds(step.match, step.rules, record, {"min": 10}, {"vip": "N"})
    assert st.holds(step.match, step.rules, record, {"min": 100}, {"vip": "Y"})
    assert not st.holds(step.match, step.rules, {"STAGE_ID": "WON"}, {"min": 0}, {"vip": "Y"})


def test_action_step_gives_the_action_its_own_params() -> None:
    step = st.SendEmailStep.model_validate(
        {"type": "send_email", "subject": "Hi", "body": "Text", "run": "with_previous"}
    )
    params = st.action_params(step)
    assert isinstance(params, EmailParams)
    assert params.model_dump() == EmailParams(subject="Hi", body="Text").model_dump()
    assert step.action == "send_email"


def test_walk_gives_paths() -> None:
    step = st.ConditionStep.model_validate(
        {
            "type": "condition",
            "rules": [{"left": {"field": "X"}, "op": "empty"}],
            "yes": [{"type": "split", "branches": [
                {"name": "A", "percent": 50, "steps": [{"type": "stop"}]},
                {"name": "B", "percent": 50},
            ]}],
        }
    )  # fmt: skip
    assert [p for p, _s in st.walk([step])] == [
        "steps[0]",
        "steps[0].yes[0]",
        "steps[0].yes[0].branches[0].steps[0]",
    ]


@pytest.mark.parametrize(
    ("n", "form"),
    [(1, "товар"), (2, "товара"), (5, "товаров"), (11, "товаров"), (12, "товаров"),
     (14, "товаров"), (21, "товар"), (22, "товара"), (25, "товаров"), (101, "товар"),
     (111, "товаров"), (0, "товаров"), ("1.5", "товара"), (-3, "товара")],
)  # fmt: skip
def test_russian_plural(n: object, form: str) -> None:
    assert plural_form(n, ("товар", "товара", "товаров")) == form


@pytest.mark.parametrize(("n", "form"), [(1, "item"), (0, "items"), (2, "items"), (21, "items")])
def test_english_plural(n: int, form: str) -> None:
    assert plural_form(n, ("item", "items")) == form


def _render(source: str, language: str, **values: object) -> str:
    context = template_context({}, values, {}, None, portal_view("x.bitrix24.ru", language))
    return templating.render(source, context)


def test_date_filter_in_the_portal_language() -> None:
    source = "{{ params.d|date('long') }}"
    assert _render(source, "ru", d="2025-03-08") == "8 марта 2025 г."
    assert _render(source, "en", d="2025-03-08T00:00:00+03:00") == "March 8, 2025"
    assert _render("{{ params.d|date('d MMMM') }}", "ru", d=date(2025, 5, 1)) == "1 мая"
    assert _render(source, "en", d="not a date") == "not a date"
    assert _render(source, "en", d="") == ""


def test_datetime_filter_uses_the_portal_time_zone() -> None:
    context = template_context(
        {}, {"t": "2025-03-08T07:00:00+00:00"}, {}, None,
        portal_view("x.bitrix24.ru", "ru", "Europe/Moscow"),
    )  # fmt: skip
    assert templating.render("{{ params.t|datetime('HH:mm') }}", context) == "10:00"


def test_plural_in_a_template() -> None:
    source = "{{ params.n }} {{ params.n|plural('день', 'дня', 'дней') }}"
    assert _render(source, "ru", n=3) == "3 дня"


def test_bad_date_format_at_render_is_a_template_problem() -> None:
    with pytest.raises(templating.TemplateProblem):
        _render("{{ params.d|date(params.f) }}", "en", d="2025-01-01", f="x" * 100)


def test_context_shows_only_what_templates_may_read() -> None:
    context = template_context(
        templating.record_context("DEAL", {"TITLE": "T"}),
        {"a": 1},
        {"company_name": "Acme"},
        {"ID": "1", "NAME": "Ann", "LAST_NAME": "Lee", "UF_SECRET": "x"},
        {"domain": "d.bitrix24.com", "language": "en", "member_id": "secret"},
    )
    assert context["deal"] == context["record"] == {"TITLE": "T"}
    assert context["client"] == {}
    assert context["user"]["FULL_NAME"] == "Ann Lee" and "UF_SECRET" not in context["user"]
    assert "member_id" not in context["portal"]
    assert user_view({})["FULL_NAME"] == ""
