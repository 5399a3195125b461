"""A scenario definition: the versioned schema, its validation, requirements and digest.

``validate_definition`` checks a definition in two passes: the shape (pydantic) and then the
meaning (templates and the variables they use, parameters, branches, percentages, fields),
and reports every problem with its path (``steps[1].yes[0].text``) in the caller's language.
Nothing in a definition that passes can surprise a send: an unknown variable, a syntax error or
a bad default is refused when the scenario is saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal

from flask_babel import force_locale, gettext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from marketapp.actions.base import is_template
from marketapp.actions.records import parse_assignments
from marketapp.actions.sandbox import TemplateProblem
from marketapp.actions.templating import check as check_template
from marketapp.scenarios import expressions as ex
from marketapp.scenarios import steps as st
from marketapp.scenarios import typed
from marketapp.scenarios.messages import message, type_name
from marketapp.scenarios.policies import Policies
from marketapp.scenarios.variables import MESSAGE_NAMES, analyse
from marketapp.scenarios.windows import window_problems

SCHEMA_VERSION: Final = 1
ENTITY_TYPES = ("CONTACT", "COMPANY", "DEAL", "LEAD")
MAX_STEPS = 200
MAX_DEPTH = 5

EntityType = Literal["CONTACT", "COMPANY", "DEAL", "LEAD"]
ParameterType = Literal[
    "string", "text", "integer", "decimal", "boolean", "select", "date", "datetime", "employee"
]
# ``\Z``, not ``$``: ``$`` also matches before a final newline ("welcome\n").
_KEY = re.compile(r"^[a-z][a-z0-9_-]{1,63}\Z")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}\Z")
_TIME = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d\Z")
_FIELD = re.compile(r"^[A-Z][A-Z0-9_]{0,63}\Z")

# What templates may read besides the record: the launching user and the portal.
USER_FIELDS = frozenset(
    {"ID", "NAME", "LAST_NAME", "SECOND_NAME", "FULL_NAME", "EMAIL", "WORK_POSITION",
     "WORK_PHONE", "PERSONAL_MOBILE"}
)  # fmt: skip
PORTAL_FIELDS = frozenset({"domain", "language", "url", "timezone"})
_STRICT = ConfigDict(extra="forbid")


class LocalText(BaseModel):
    model_config = _STRICT
    ru: str = Field(min_length=1, max_length=2_000)
    en: str = Field(min_length=1, max_length=2_000)

    def get(self, language: str) -> str:
        return self.ru if language.startswith("ru") else self.en


class OptionalText(BaseModel):
    model_config = _STRICT
    ru: str = Field(default="", max_length=2_000)
    en: str = Field(default="", max_length=2_000)

    def get(self, language: str) -> str:
        return self.ru if language.startswith("ru") else self.en


class Option(BaseModel):
    model_config = _STRICT
    value: str = Field(min_length=1, max_length=100)
    label: LocalText


Scalar = int | float | str | bool | None


class Parameter(BaseModel):
    """A launch parameter, asked for in the launch form and read as ``params.<key>``.

    ``min``/``max`` bound integer and decimal values (numbers) and date/datetime values (ISO
    text); ``max_length`` bounds string and text; ``options`` are a select's choices.
    """

    model_config = _STRICT
    key: str
    type: ParameterType
    label: LocalText
    help: OptionalText = Field(default_factory=OptionalText)
    default: Scalar = None
    required: bool = False
    min: Scalar = None
    max: Scalar = None
    max_length: Annotated[int, Field(ge=1, le=100_000)] | None = None
    options: list[Option] = Field(default_factory=list, max_length=100)


class Variable(BaseModel):
    """A scenario variable, per enrollment: set by ``set_variable`` steps, read as
    ``var.<name>`` in templates, conditions and expressions; ``default`` at entry."""

    model_config = _STRICT
    name: str
    type: typed.ValueType = "string"
    default: Scalar = None


class ScenarioDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")
    key: str
    # The language the step texts are written in (library scenarios ship one per language).
    language: Literal["ru", "en"] | None = None
    name: LocalText
    description: LocalText
    # What a run leaves behind, for the Market listing and the picker.
    result: OptionalText = Field(default_factory=OptionalText)
    entity_types: list[EntityType] = Field(min_length=1, max_length=4)
    parameters: list[Parameter] = Field(default_factory=list, max_length=50)
    steps: list[st.Step] = Field(min_length=1, max_length=MAX_STEPS)
    # Write each action (message sent, field changed …) to the record's timeline.
    timeline: bool = True
    policies: Policies = Field(default_factory=Policies)
    variables: list[Variable] = Field(default_factory=list, max_length=50)

    def document(self) -> dict[str, Any]:
        """The JSON form (``"schema": 1`` first), as stored and exported."""
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


class DefinitionError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))

    def as_dict(self) -> list[dict[str, str]]:
        return [{"path": p.path, "message": p.message} for p in self.problems]


@dataclass
class Requirements:
    """What a definition needs from a portal: constants and CRM fields per entity type.
    ``client_fields`` are read from a deal's contact or company (``client.X``)."""

    constants: set[str] = field(default_factory=set)
    fields: dict[str, set[str]] = field(default_factory=dict)
    client_fields: set[str] = field(default_factory=set)


def validate_definition(
    data: Any,
    *,
    language: str = "en",
    known_fields: dict[str, set[str]] | None = None,
    constants: set[str] | None = None,
) -> ScenarioDefinition:
    """Parse and check ``data``; raise :class:`DefinitionError` listing every problem.

    ``known_fields`` (entity type → field names, from ``crm.<entity>.fields``) and
    ``constants`` (the portal's constant names) are checked when given.
    """
    with force_locale(language):  # sandbox messages, when there is an app context
        if not isinstance(data, dict):
            raise DefinitionError([Problem("", message(language, "not_object"))])
        version = data.get("schema", SCHEMA_VERSION)
        if version != SCHEMA_VERSION or isinstance(version, bool):  # True == 1 in Python
            shown = json.dumps(version)  # "1" (a string) is not 1
            text = message(language, "schema_version", version=shown, expected=SCHEMA_VERSION)
            raise DefinitionError([Problem("schema", text)])
        try:
            defn = ScenarioDefinition.model_validate(data)
        except ValidationError as exc:
            raise DefinitionError(_shape_problems(exc, language)) from None
        problems = list(_Checker(defn, language, known_fields, constants).problems())
    if problems:
        raise DefinitionError(problems)
    return defn


# -- the shape: pydantic errors as field-level problems -----------------------------------

_TAGS = set(st.STEP_TYPES) | {"comparison", "group"}


def _path(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    previous: int | str | None = None
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(previous, int) and item in _TAGS:
            pass  # the union's tag, not a field
        else:
            parts.append(("." if parts else "") + item)
        previous = item
    return "".join(parts)


def _shape_problems(exc: ValidationError, language: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for error in exc.errors():
        path = _path(error["loc"])
        if path in seen:  # a union reports one error per alternative
            continue
        seen.add(path)
        problems.append(Problem(path, _shape_message(error, language)))
    return problems


_TYPE_ERRORS = {
    "string_type": "string",
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "list",
    "model_type": "object",
    "model_attributes_type": "object",
    "dict_type": "object",
}


def _shape_message(error: Any, language: str) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return message(language, "missing")
    if kind == "extra_forbidden":
        return message(language, "extra")
    if kind == "union_tag_invalid":
        return message(language, "unknown_step", tag=ctx.get("tag", ""))
    if kind == "union_tag_not_found":
        return message(language, "no_step_type")
    if kind in _TYPE_ERRORS:
        return message(language, "type", expected=type_name(language, _TYPE_ERRORS[kind]))
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return message(language, "choice", expected=expected)
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return message(language, "empty")
        return message(language, "too_short", min_length=ctx.get("min_length"))
    if kind == "string_too_long":
        return message(language, "too_long", max_length=ctx.get("max_length"))
    if kind == "too_short":
        if ctx.get("min_length") == 1:
            return message(language, "list_empty")
        return message(language, "list_too_short", min_length=ctx.get("min_length"))
    if kind == "too_long":
        return message(language, "list_too_long", max_length=ctx.get("max_length"))
    if kind in ("greater_than_equal", "greater_than"):
        return message(language, "at_least", limit=ctx.get("ge", ctx.get("gt")))
    if kind in ("less_than_equal", "less_than"):
        return message(language, "at_most", limit=ctx.get("le", ctx.get("lt")))
    if kind == "string_pattern_mismatch":
        return message(language, "pattern")
    if kind == "value_error":
        return _value_error(ctx.get("error"), error["loc"], language)
    return message(language, "invalid", detail=error.get("msg", kind))


def _value_error(exc: Any, loc: Sequence[int | str], language: str) -> str:
    if isinstance(exc, TemplateProblem):
        return message(language, "template", detail=_template_detail(exc))
    if loc and loc[-1] == "fields":
        return message(language, "fields_list", detail=str(exc))
    return message(language, "invalid", detail=str(exc))


def _template_detail(exc: TemplateProblem) -> str:
    """The sandbox's reason without its own "Template error:" prefix, in either language
    (it speaks the forced locale), so the message does not say it twice."""
    text = str(exc)
    for prefix in ("Template error: ", gettext("Template error: %(error)s", error="")):
        text = text.removeprefix(prefix)
    return text


# -- the meaning --------------------------------------------------------------------------


class _Checker:
    def __init__(
        self,
        defn: ScenarioDefinition,
        language: str,
        known_fields: dict[str, set[str]] | None,
        constants: set[str] | None,
    ) -> None:
        self.defn = defn
        self.language = language
        self.known_fields = known_fields
        self.constants = constants
        self.params = {p.key: p for p in defn.parameters}
        self.variables = {v.name: v for v in defn.variables}
        self.requirements = Requirements()

    def problem(self, path: str, code: str, **values: Any) -> Problem:
        return Problem(path, message(self.language, code, **values))

    def problems(self) -> Iterator[Problem]:
        yield from self._header()
        for n, param in enumerate(self.defn.parameters):
            yield from self._parameter(f"parameters[{n}]", param)
        yield from self._step_list("steps", self.defn.steps, depth=1)
        yield from self._step_ids()
        yield from self._variables()
        yield from self._window()

    def _header(self) -> Iterator[Problem]:
        if not _KEY.match(self.defn.key):
            yield self.problem("key", "key_format")
        yield from self._duplicates("entity_types", self.defn.entity_types)
        keys = [p.key for p in self.defn.parameters]
        for n, key in enumerate(keys):
            if key in keys[:n]:
                yield self.problem(f"parameters[{n}].key", "duplicate", value=key)

    def _duplicates(self, path: str, values: Sequence[str]) -> Iterator[Problem]:
        for n, value in enumerate(values):
            if value in values[:n]:
                yield self.problem(f"{path}[{n}]", "duplicate", value=value)

    def _window(self) -> Iterator[Problem]:
        """The send window's times and days; a recipient's zone needs its field and PHONE."""
        window = self.defn.policies.window
        if window is None:
            return
        for suffix, text in window_problems(window, self.language):
            yield Problem(f"policies.window.{suffix}", text)
        if window.zone != "recipient":
            return
        for entity in set(self.defn.entity_types) - {"DEAL"}:  # a deal has no PHONE of its own
            self.requirements.fields.setdefault(entity, set()).add("PHONE")
        if window.zone_field and _FIELD.match(window.zone_field):
            yield from self._record_field("policies.window.zone_field", window.zone_field)

    def _step_ids(self) -> Iterator[Problem]:
        seen: set[str] = set()
        for path, step in st.walk(self.defn.steps):
            if step.id is not None:
                if step.id in seen:
                    yield self.problem(f"{path}.id", "duplicate", value=step.id)
                seen.add(step.id)

    # parameters

    def _parameter(self, path: str, param: Parameter) -> Iterator[Problem]:
        if not _NAME.match(param.key):
            yield self.problem(f"{path}.key", "name_format")
        kind = param.type
        ranged = kind in ("integer", "decimal", "date", "datetime")
        for name in ("min", "max"):
            if getattr(param, name) is not None and not ranged:
                yield self.problem(f"{path}.{name}", "not_applicable", type=kind)
        if param.max_length is not None and kind not in ("string", "text"):
            yield self.problem(f"{path}.max_length", "not_applicable", type=kind)
        if param.options and kind != "select":
            yield self.problem(f"{path}.options", "not_applicable", type=kind)
        if kind == "select":
            if not param.options:
                yield self.problem(f"{path}.options", "needs_options")
            values = [o.value for o in param.options]
            for n, value in enumerate(values):
                if value in values[:n]:
                    yield self.problem(f"{path}.options[{n}].value", "duplicate", value=value)
        bounds: dict[str, Any] = {}
        for name in ("min", "max"):
            raw = getattr(param, name)
            if raw is not None and ranged:
                try:
                    bounds[name] = coerce(kind, raw, param)
                except ValueError:
                    yield self.problem(f"{path}.{name}", "bad_value", type=kind)
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            yield self.problem(f"{path}.min", "min_above_max")
        if param.default is not None:
            yield from self._default(path, param, bounds)

    def _default(self, path: str, param: Parameter, bounds: dict[str, Any]) -> Iterator[Problem]:
        where = f"{path}.default"
        problem = value_problem(param, param.default, bounds)
        if problem is not None:
            code, values = problem
            yield self.problem(where, code, **values)

    # steps

    def _step_list(self, path: str, steps: Sequence[Any], depth: int) -> Iterator[Problem]:
        if depth > MAX_DEPTH:
            yield self.problem(path, "too_deep", limit=MAX_DEPTH)
            return
        previous: Any = None
        stopped = False
        for n, step in enumerate(steps):
            here = f"{path}[{n}]"
            if stopped:
                yield self.problem(here, "after_stop")
                stopped = False  # once per list
            if step.run == "with_previous":
                if step.type in st.CONTROL_TYPES:
                    yield self.problem(f"{here}.run", "together_control")
                elif previous is not None and previous.type in st.CONTROL_TYPES:
                    yield self.problem(f"{here}.run", "together_after_control")
            yield from self._step(here, step, depth)
            stopped = stopped or step.type == "stop"
            previous = step

    def _step(self, path: str, step: Any, depth: int) -> Iterator[Problem]:
        for name in step.template_fields:
            yield from self._template(f"{path}.{name}", getattr(step, name))
        if isinstance(step, st.EditFieldsStep):
            yield from self._edit(path, step)
        elif isinstance(step, st.CreateTaskStep):
            yield from self._employee(f"{path}.responsible", step.responsible)
        elif isinstance(step, st.NotifyStep):
            yield from self._employee(f"{path}.to", step.to)
        elif isinstance(step, st.WaitStep):
            yield from self._wait(path, step)
        elif isinstance(step, st.ConditionStep):
            yield from self._condition(path, step, depth)
        elif isinstance(step, st.SplitStep):
            yield from self._split(path, step, depth)
        elif isinstance(step, st.SetVariableStep):
            yield from self._set_variable(path, step)

    def _edit(self, path: str, step: st.EditFieldsStep) -> Iterator[Problem]:
        for name, value in parse_assignments(step.fields).items():
            yield from self._record_field(f"{path}.fields", name)
            yield from self._template(f"{path}.fields", value)

    def _employee(self, path: str, who: st.Employee) -> Iterator[Problem]:
        if who.kind == "employee" and who.id is None:
            yield self.problem(f"{path}.id", "employee_id")
        if who.kind != "employee" and who.id is not None:
            yield self.problem(f"{path}.id", "wait_unused")
        if who.kind == "param":
            param = self.params.get(who.param or "")
            if who.param is None:
                yield self.problem(f"{path}.param", "employee_param")
            elif param is None:
                yield self.problem(f"{path}.param", "unknown_param", name=who.param)
            elif param.type != "employee":
                yield self.problem(f"{path}.param", "not_employee_param", name=who.param)
        elif who.param is not None:
            yield self.problem(f"{path}.param", "wait_unused")
        if who.kind == "responsible":
            self._need_field("ASSIGNED_BY_ID")

    def _wait(self, path: str, step: st.WaitStep) -> Iterator[Problem]:
        needs = {
            "duration": (),
            "weekday": ("weekday", "time"),
            "field": ("field",),
            "param": ("param",),
        }[step.mode]
        for name in needs:
            if getattr(step, name) is None:
                yield self.problem(f"{path}.{name}", "wait_needs")
        for name in {"weekday", "field", "param"} - set(needs):
            if getattr(step, name) is not None:
                yield self.problem(f"{path}.{name}", "wait_unused")
        if step.mode == "duration" and step.time is not None:
            yield self.problem(f"{path}.time", "wait_unused")
        if step.mode != "duration":
            for name in ("days", "hours", "minutes"):
                if getattr(step, name):
                    yield self.problem(f"{path}.{name}", "wait_unused")
        if step.mode not in ("field", "param"):
            for name in ("offset_days", "yearly"):
                if getattr(step, name):
                    yield self.problem(f"{path}.{name}", "wait_unused")
        if step.mode == "param" and step.param is not None:
            param = self.params.get(step.param)
            if param is None:
                yield self.problem(f"{path}.param", "unknown_param", name=step.param)
            elif param.type not in ("date", "datetime"):
                yield self.problem(f"{path}.param", "not_date_param", name=step.param)
        if step.time is not None and not _TIME.match(step.time):
            yield self.problem(f"{path}.time", "time_format")
        if step.mode == "duration":
            total = step.duration_minutes()
            if total <= 0:
                yield self.problem(f"{path}.days", "wait_zero")
            elif total > st.MAX_WAIT_DAYS * 24 * 60:
                yield self.problem(f"{path}.days", "wait_too_long", days=st.MAX_WAIT_DAYS)
        if step.mode == "field" and step.field is not None:
            yield from self._record_field(f"{path}.field", step.field)

    def _condition(self, path: str, step: st.ConditionStep, depth: int) -> Iterator[Problem]:
        yield from self._rules(f"{path}.rules", step.rules, depth=1)
        if not step.yes:
            yield self.problem(f"{path}.yes", "empty_branch")
        yield from self._step_list(f"{path}.yes", step.yes, depth + 1)
        yield from self._step_list(f"{path}.no", step.no, depth + 1)

    def _rules(self, path: str, rules: Sequence[Any], depth: int) -> Iterator[Problem]:
        if depth > MAX_DEPTH:
            yield self.problem(path, "too_deep", limit=MAX_DEPTH)
            return
        for n, rule in enumerate(rules):
            here = f"{path}[{n}]"
            if isinstance(rule, st.Group):
                yield from self._rules(f"{here}.rules", rule.rules, depth + 1)
                continue
            yield from self._operand(f"{here}.left", rule.left)
            if rule.op in st.UNARY and rule.right is not None:
                yield self.problem(f"{here}.right", "no_right")
            elif rule.op not in st.UNARY and rule.right is None:
                yield self.problem(f"{here}.right", "needs_right")
            elif rule.right is not None:
                yield from self._operand(f"{here}.right", rule.right)

    def _operand(self, path: str, operand: st.Operand) -> Iterator[Problem]:
        given = operand.given()
        if len(given) != 1:
            yield self.problem(path, "operand")
            return
        if operand.field is not None:
            yield from self._record_field(f"{path}.field", operand.field)
        elif operand.param is not None and operand.param not in self.params:
            yield self.problem(f"{path}.param", "unknown_param", name=operand.param)
        elif operand.const is not None:
            yield from self._constant(f"{path}.const", operand.const)
        elif operand.var is not None and operand.var not in self.variables:
            yield self.problem(f"{path}.var", "unknown_var", name=operand.var)

    def _split(self, path: str, step: st.SplitStep, depth: int) -> Iterator[Problem]:
        total = sum(b.percent for b in step.branches)
        if total != 100:
            yield self.problem(f"{path}.branches", "percent_sum", total=total)
        if all(not b.steps for b in step.branches):
            yield self.problem(f"{path}.branches", "all_branches_empty")
        yield from self._duplicates(f"{path}.branches", [b.name for b in step.branches])
        for n, branch in enumerate(step.branches):
            yield from self._step_list(f"{path}.branches[{n}].steps", branch.steps, depth + 1)

    # variables

    def _variables(self) -> Iterator[Problem]:
        names = [v.name for v in self.defn.variables]
        for n, variable in enumerate(self.defn.variables):
            path = f"variables[{n}]"
            if not _NAME.match(variable.name):
                yield self.problem(f"{path}.name", "name_format")
            if variable.name in names[:n]:
                yield self.problem(f"{path}.name", "duplicate", value=variable.name)
            try:
                typed.typed(variable.type, variable.default)
            except ex.ExpressionError:
                yield self.problem(f"{path}.default", "bad_typed_value", type=variable.type)

    def _set_variable(self, path: str, step: st.SetVariableStep) -> Iterator[Problem]:
        declared = self.variables.get(step.name)
        if declared is None:
            yield self.problem(f"{path}.name", "unknown_var", name=step.name)
        where = f"{path}.expression"
        try:
            expression = ex.parse(step.expression)
        except ex.ExpressionError as exc:
            yield Problem(where, exc.text(self.language))
            return
        for ref in expression.refs:
            for problem in self._expression_ref(where, ref):
                text = message(
                    self.language, "expr_at", detail=problem.message, position=ref.pos + 1
                )
                yield Problem(problem.path, text)
        if declared is not None:
            yield from self._expression_kind(where, expression, declared)

    def _expression_ref(self, path: str, ref: ex.Ref) -> Iterator[Problem]:
        if ref.root == "record":
            yield from self._record_field(path, ref.name)
        elif ref.root == "params" and ref.name not in self.params:
            yield self.problem(path, "unknown_param", name=ref.name)
        elif ref.root == "const":
            yield from self._constant(path, ref.name)
        elif ref.root == "var" and ref.name not in self.variables:
            yield self.problem(path, "unknown_var", name=ref.name)

    def _expression_kind(
        self, path: str, expression: ex.Expression, declared: Variable
    ) -> Iterator[Problem]:
        var_kinds = {v.name: typed.kind_in_expressions(v.type) for v in self.defn.variables}
        param_kinds = {p.key: _PARAM_KINDS.get(p.type, "any") for p in self.defn.parameters}
        actual = ex.kind_of(expression.root, var_kinds, param_kinds)
        if actual == "any" or actual in _TAKES[declared.type]:
            return
        expected = type_name(self.language, _TYPE_NAMES[declared.type])
        shown = type_name(self.language, actual)
        yield self.problem(path, "var_type", actual=shown, expected=expected)

    # names

    def _record_field(self, path: str, name: str) -> Iterator[Problem]:
        if not _FIELD.match(name):
            yield self.problem(path, "pattern")
            return
        self._need_field(name)
        if self.known_fields is None:
            return
        for entity in self.defn.entity_types:
            if name not in self.known_fields.get(entity, set()):
                yield self.problem(path, "unknown_field", entity=entity, name=name)
                return

    def _need_field(self, name: str) -> None:
        for entity in self.defn.entity_types:
            self.requirements.fields.setdefault(entity, set()).add(name)

    def _constant(self, path: str, name: str) -> Iterator[Problem]:
        self.requirements.constants.add(name)
        if self.constants is not None and name not in self.constants:
            yield self.problem(path, "unknown_const", name=name)

    def _template(self, path: str, source: str) -> Iterator[Problem]:
        try:
            uses = analyse(source)
        except Exception as exc:  # the sandbox checked it; a parse failure is still reported
            yield self.problem(path, "template", detail=str(exc))
            return
        for code, values in uses.filter_problems:
            yield self.problem(path, code, **values)
        allowed = _root_names(self.defn.entity_types)
        for name in sorted(uses.names):
            if name not in allowed:
                entity = _ENTITY_NAMES.get(name)
                if entity is not None:
                    yield self.problem(path, "variable_entity", name=name, entity=entity)
                else:
                    yield self.problem(path, "unknown_variable", name=name)
                continue
            for attr in sorted(uses.attributes.get(name, set())):
                yield from self._attribute(path, name, attr)

    def _attribute(self, path: str, name: str, attr: str) -> Iterator[Problem]:
        if name == "params":
            if attr not in self.params:
                yield self.problem(path, "unknown_param", name=attr)
        elif name == "const":
            yield from self._constant(path, attr)
        elif name == "var":
            if attr not in self.variables:
                yield self.problem(path, "unknown_var", name=attr)
        elif name == "user":
            if attr not in USER_FIELDS:
                yield self.problem(path, "unknown_attribute", name=name, attr=attr)
        elif name == "portal":
            if attr not in PORTAL_FIELDS:
                yield self.problem(path, "unknown_attribute", name=name, attr=attr)
        elif name == "client":
            yield from self._client_field(path, attr)
        elif name == "record" or name.upper() in self.defn.entity_types:
            yield from self._entity_field(path, name, attr)

    def _entity_field(self, path: str, name: str, attr: str) -> Iterator[Problem]:
        entities = self.defn.entity_types if name == "record" else [name.upper()]
        for entity in entities:
            self.requirements.fields.setdefault(entity, set()).add(attr)
        if self.known_fields is None:
            return
        for entity in entities:
            if attr not in self.known_fields.get(entity, set()):
                yield self.problem(path, "unknown_field", entity=entity, name=attr)
                return

    def _client_field(self, path: str, attr: str) -> Iterator[Problem]:
        self.requirements.client_fields.add(attr)
        if self.known_fields is None:
            return
        either = self.known_fields.get("CONTACT", set()) | self.known_fields.get("COMPANY", set())
        if attr not in either:
            yield self.problem(path, "unknown_field", entity="CONTACT/COMPANY", name=attr)


# What an expression's kind (``expressions.kind_of``) may be for each variable type.
_TAKES = {"string": {"number", "text", "boolean"}, "integer": {"number"}, "decimal": {"number"},
          "boolean": {"boolean"}, "date": {"text"}}  # fmt: skip
_TYPE_NAMES = {"string": "string", "integer": "integer", "decimal": "number",
               "boolean": "boolean", "date": "date"}  # fmt: skip
_PARAM_KINDS = {"integer": "number", "decimal": "number", "boolean": "boolean",
                "string": "text", "text": "text", "select": "text"}  # fmt: skip

_ENTITY_NAMES = {"contact": "CONTACT", "company": "COMPANY", "deal": "DEAL", "lead": "LEAD",
                 "client": "DEAL"}  # fmt: skip


def _root_names(entity_types: Sequence[str]) -> set[str]:
    names = {"record", "params", "const", "var", "user", "portal", *MESSAGE_NAMES}
    names.update(e.lower() for e in entity_types)
    if "DEAL" in entity_types:
        names.add("client")
    return names


# -- parameter values ---------------------------------------------------------------------


def coerce(kind: str, value: Any, param: Parameter | None = None) -> Any:
    """A parameter value as its Python type; ``ValueError`` when it is not one."""
    if kind in ("string", "text", "select"):
        if not isinstance(value, str):
            raise ValueError(kind)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(kind)
        return value
    if isinstance(value, bool):
        raise ValueError(kind)
    if kind in ("integer", "employee"):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(kind)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(kind) from None
        if kind == "employee" and number < 1:
            raise ValueError(kind)
        return number
    if kind == "decimal":
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(kind) from None
        if not amount.is_finite():
            raise ValueError(kind)
        return amount
    if kind == "date":
        return date.fromisoformat(str(value))
    if kind == "datetime":
        moment = datetime.fromisoformat(str(value))
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=None)
    raise ValueError(kind)


def value_problem(
    param: Parameter, value: Any, bounds: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]] | None:
    """Why ``value`` does not fit ``param`` (a message code and its values), or ``None``."""
    try:
        typed = coerce(param.type, value, param)
    except ValueError:
        return "bad_value", {"type": param.type}
    if bounds is None:
        bounds = {}
        for name in ("min", "max"):
            raw = getattr(param, name)
            if raw is not None:
                with contextlib.suppress(ValueError):
                    bounds[name] = coerce(param.type, raw, param)
    try:
        if "min" in bounds and typed < bounds["min"]:
            return "below_min", {"limit": param.min}
        if "max" in bounds and typed > bounds["max"]:
            return "above_max", {"limit": param.max}
    except TypeError:  # an aware and a naive datetime
        return "bad_value", {"type": param.type}
    if param.max_length is not None and isinstance(typed, str) and len(typed) > param.max_length:
        return "too_long", {"max_length": param.max_length}
    if param.type == "select" and typed not in {o.value for o in param.options}:
        return "not_option", {"value": typed}
    return None


def launch_values(
    defn: ScenarioDefinition,
    values: dict[str, Any],
    *,
    language: str = "en",
    constants: set[str] | None = None,
) -> dict[str, Any]:
    """The launch form's values checked against the parameters, defaults filled in.

    Raises :class:`DefinitionError` with paths ``params.<key>``. Values come back typed
    (``Decimal``, ``date``, ``datetime``, ``int`` …). A string or text value with template
    markup is rendered per record (``actions.base.render_context``): it must parse and use only
    names a step may (never ``params``); ``constants``, when given, are the portal's codes.
    """
    problems: list[Problem] = []
    result: dict[str, Any] = {}
    for key in values:
        if key not in {p.key for p in defn.parameters}:
            problems.append(Problem(f"params.{key}", message(language, "unknown_param", name=key)))
    for param in defn.parameters:
        raw = values.get(param.key, param.default)
        if raw is None or raw == "":
            if param.required:
                problems.append(Problem(f"params.{param.key}", message(language, "missing")))
            result[param.key] = None
            continue
        problem = value_problem(param, raw)
        if problem is not None:
            code, extra = problem
            problems.append(Problem(f"params.{param.key}", message(language, code, **extra)))
            continue
        result[param.key] = coerce(param.type, raw, param)
        if param.type in ("string", "text"):
            found = _value_template(defn, param, result[param.key], language, constants)
            problems.extend(found[:1])
    if problems:
        raise DefinitionError(problems)
    return result


# A parameter value that is a template is bounded like a task description when the parameter
# sets no length of its own.
PARAM_TEMPLATE_MAX = 20_000


def _value_template(
    defn: ScenarioDefinition,
    param: Parameter,
    value: str,
    language: str,
    constants: set[str] | None,
) -> list[Problem]:
    """Why a template in a parameter value cannot be rendered per record (or nothing)."""
    if not is_template(value):
        return []
    checker = _Checker(defn, language, None, constants)
    path = f"params.{param.key}"
    if param.max_length is None and len(value) > PARAM_TEMPLATE_MAX:
        return [checker.problem(path, "too_long", max_length=PARAM_TEMPLATE_MAX)]
    try:
        check_template(value)
    except TemplateProblem as exc:
        return [checker.problem(path, "template", detail=_template_detail(exc))]
    refused = sorted(analyse(value).names & {"params", *MESSAGE_NAMES})
    if refused:
        return [checker.problem(path, "unknown_variable", name=refused[0])]
    return list(checker._template(path, value))


# -- requirements and digest --------------------------------------------------------------


def requirements(defn: ScenarioDefinition) -> Requirements:
    """The portal constants and CRM fields (per entity type) the definition uses."""
    checker = _Checker(defn, "en", None, None)
    for _problem in checker.problems():
        pass
    return checker.requirements


def canonical_json(defn: ScenarioDefinition) -> str:
    """Sorted keys, no spaces, defaults written out: equal definitions give equal text."""
    return json.dumps(defn.document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_digest(defn: ScenarioDefinition) -> str:
    """``sha256`` (hex) of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(defn).encode()).hexdigest()


def listing(defn: ScenarioDefinition, language: str) -> dict[str, Any]:
    """The text of the Market listing and the scenario picker."""
    return {
        "key": defn.key,
        "name": defn.name.get(language),
        "description": defn.description.get(language),
        "result": defn.result.get(language),
        "entity_types": list(defn.entity_types),
    }
