"""The steps of a scenario: a discriminated union on ``type``.

Action steps (send e-mail, send SMS, edit fields, timeline comment) carry exactly the
parameters of their action (``marketapp.actions``): the models are inherited, not copied, so a
scenario step and a robot accept the same values. The other steps are the engine's own.

Every step runs ``after_previous`` (when the previous step has finished) or ``with_previous``
(started together with it, as Bitrix24's robots do). Branches (``yes``/``no`` of a condition,
the branches of a split) are lists of steps; after a branch the scenario continues with the step
that follows the condition or split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from marketapp.actions import templating
from marketapp.actions.email import EmailParams
from marketapp.actions.records import CommentParams, EditParams
from marketapp.actions.sms import SmsParams

STRICT = ConfigDict(extra="forbid")
StepId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_WAIT_DAYS = 366


class StepBase(BaseModel):
    model_config = STRICT

    id: StepId | None = None
    run: Literal["after_previous", "with_previous"] = "after_previous"
    # Fields holding templates, checked for unknown variables when the definition is saved.
    template_fields: ClassVar[tuple[str, ...]] = ()
    # The action (``marketapp.actions.ACTIONS`` code) an action step runs; "" for others.
    action: ClassVar[str] = ""


class SendEmailStep(StepBase, EmailParams):
    model_config = STRICT
    type: Literal["send_email"]
    template_fields: ClassVar[tuple[str, ...]] = ("subject", "body")
    action: ClassVar[str] = "send_email"


class SendSmsStep(StepBase, SmsParams):
    model_config = STRICT
    type: Literal["send_sms"]
    template_fields: ClassVar[tuple[str, ...]] = ("text",)
    action: ClassVar[str] = "send_sms"


class EditFieldsStep(StepBase, EditParams):
    """``fields``: ``FIELD = value`` lines, each value a template (as the robot takes them)."""

    model_config = STRICT
    type: Literal["edit_fields"]
    action: ClassVar[str] = "edit_record"


class TimelineCommentStep(StepBase, CommentParams):
    model_config = STRICT
    type: Literal["timeline_comment"]
    template_fields: ClassVar[tuple[str, ...]] = ("text",)
    action: ClassVar[str] = "timeline_comment"


class Employee(BaseModel):
    """Who: the record's responsible person, the launching user, a fixed employee, or the
    employee chosen in a launch parameter of type ``employee``."""

    model_config = STRICT
    kind: Literal["responsible", "launcher", "employee", "param"] = "responsible"
    id: Annotated[int, Field(ge=1)] | None = None
    param: str | None = None


class Offset(BaseModel):
    model_config = STRICT
    days: Annotated[int, Field(ge=0, le=MAX_WAIT_DAYS)] = 0
    hours: Annotated[int, Field(ge=0, le=23 * 24)] = 0
    minutes: Annotated[int, Field(ge=0, le=59 * 60)] = 0

    def minutes_total(self) -> int:
        return (self.days * 24 + self.hours) * 60 + self.minutes


class CreateTaskStep(StepBase):
    """A task (``tasks.task.add``) bound to the record (``UF_CRM_TASK``), due ``deadline``
    after the step runs (no deadline when omitted)."""

    type: Literal["create_task"]
    title: templating.Template = Field(min_length=1, max_length=255)
    description: templating.Template = Field(default="", max_length=20_000)
    responsible: Employee = Field(default_factory=Employee)
    deadline: Offset | None = None
    template_fields: ClassVar[tuple[str, ...]] = ("title", "description")


class NotifyStep(StepBase):
    """A notification to an employee (``im.notify.personal.add``)."""

    type: Literal["notify"]
    to: Employee = Field(default_factory=Employee)
    message: templating.Template = Field(min_length=1, max_length=5_000)
    template_fields: ClassVar[tuple[str, ...]] = ("message",)


class WaitStep(StepBase):
    """Wait ``duration`` (days/hours/minutes), until the next ``weekday`` at ``time``, or until
    the record's date ``field`` (or a date launch ``param``) shifted by ``offset_days`` (at
    ``time``; ``yearly`` takes the next anniversary, for birthdays). Times are in the portal's
    time zone. A moment already past continues at once."""

    type: Literal["wait"]
    mode: Literal["duration", "weekday", "field", "param"] = "duration"
    days: Annotated[int, Field(ge=0, le=MAX_WAIT_DAYS)] = 0
    hours: Annotated[int, Field(ge=0, le=MAX_WAIT_DAYS * 24)] = 0
    minutes: Annotated[int, Field(ge=0, le=MAX_WAIT_DAYS * 24 * 60)] = 0
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] | None = None
    time: str | None = None
    field: str | None = None
    param: str | None = None
    offset_days: Annotated[int, Field(ge=-MAX_WAIT_DAYS, le=MAX_WAIT_DAYS)] = 0
    yearly: bool = False

    def duration_minutes(self) -> int:
        return (self.days * 24 + self.hours) * 60 + self.minutes


class Operand(BaseModel):
    """Exactly one of: a record ``field``, a launch ``param``, a portal ``const``, a scenario
    variable ``var``, a ``value``."""

    model_config = STRICT
    field: str | None = None
    param: str | None = None
    const: str | None = None
    var: str | None = None
    value: str | int | float | bool | None = None

    def given(self) -> list[str]:
        kinds = ("field", "param", "const", "var", "value")
        return [k for k in kinds if getattr(self, k) is not None]


Operator = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "contains", "not_contains", "empty", "not_empty"
]
UNARY = {"empty", "not_empty"}


class Comparison(BaseModel):
    model_config = STRICT
    left: Operand
    op: Operator
    right: Operand | None = None


class Group(BaseModel):
    model_config = STRICT
    match: Literal["and", "or"] = "and"
    rules: list[Rule] = Field(min_length=1, max_length=20)


def _rule_kind(value: Any) -> str:
    data = value if isinstance(value, Mapping) else getattr(value, "__dict__", {})
    return "group" if "rules" in data else "comparison"


Rule = Annotated[
    Annotated[Comparison, Tag("comparison")] | Annotated[Group, Tag("group")],
    Discriminator(_rule_kind),
]


class ConditionStep(StepBase):
    """``yes`` when the rules hold (joined by ``match``: and/or; groups nest), else ``no``."""

    type: Literal["condition"]
    match: Literal["and", "or"] = "and"
    rules: list[Rule] = Field(min_length=1, max_length=20)
    yes: list[Step] = Field(default_factory=list)
    no: list[Step] = Field(default_factory=list)


class Branch(BaseModel):
    model_config = STRICT
    name: str = Field(min_length=1, max_length=40)
    percent: Annotated[int, Field(ge=0, le=100)]
    steps: list[Step] = Field(default_factory=list)


class SplitStep(StepBase):
    """Random A/B branches by percentage (summing to 100), the same branch for a record every
    time: see :func:`split_bucket`. An empty branch is a control group."""

    type: Literal["split"]
    branches: list[Branch] = Field(min_length=2, max_length=10)


class StopStep(StepBase):
    """End the scenario for this record."""

    type: Literal["stop"]


class SetVariableStep(StepBase):
    """Set the variable ``name`` (declared in the definition's ``variables``) to the value of
    ``expression`` (:mod:`marketapp.scenarios.expressions`), for this record's enrollment."""

    type: Literal["set_variable"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    expression: str = Field(min_length=1, max_length=1_000)


Step = Annotated[
    SendEmailStep
    | SendSmsStep
    | EditFieldsStep
    | TimelineCommentStep
    | CreateTaskStep
    | NotifyStep
    | WaitStep
    | ConditionStep
    | SplitStep
    | StopStep
    | SetVariableStep,
    Field(discriminator="type"),
]
STEP_TYPES = (
    "send_email", "send_sms", "edit_fields", "timeline_comment", "create_task", "notify",
    "wait", "condition", "split", "stop", "set_variable",
)  # fmt: skip
CONTROL_TYPES = {"wait", "condition", "split", "stop", "set_variable"}

Group.model_rebuild()
ConditionStep.model_rebuild()
Branch.model_rebuild()
SplitStep.model_rebuild()


def action_params(step: StepBase) -> BaseModel:
    """The action's own parameter model for an action step (what ``runner.run`` takes)."""
    for base in type(step).__mro__[1:]:
        if base in (EmailParams, SmsParams, EditParams, CommentParams):
            fields = step.model_dump(include=set(base.model_fields))
            return base.model_validate(fields)
    raise ValueError(f"{type(step).__name__} is not an action step")


def children(step: BaseModel, path: str) -> Iterator[tuple[str, list[Any]]]:
    """The step lists inside ``step`` with their paths (``steps[1].yes``)."""
    if isinstance(step, ConditionStep):
        yield f"{path}.yes", step.yes
        yield f"{path}.no", step.no
    elif isinstance(step, SplitStep):
        for n, branch in enumerate(step.branches):
            yield f"{path}.branches[{n}].steps", branch.steps


def walk(steps: Sequence[Any], path: str = "steps") -> Iterator[tuple[str, Any]]:
    """Every step, depth first, with its path (``steps[1].yes[0]``)."""
    for n, step in enumerate(steps):
        here = f"{path}[{n}]"
        yield here, step
        for inner_path, inner in children(step, here):
            yield from walk(inner, inner_path)


# -- split --------------------------------------------------------------------------------


def split_bucket(scenario_key: str, split_id: str, entity_type: str, entity_id: int) -> int:
    """A record's bucket 0-99 for a split: the first 8 bytes of
    ``sha256("{scenario_key}|{split_id}|{entity_type}|{entity_id}")`` as a big-endian integer,
    modulo 100. ``split_id`` is the step's ``id`` or, without one, its path (``steps[3]``).
    The version is not part of it: a record stays in its branch when the scenario is edited."""
    seed = f"{scenario_key}|{split_id}|{entity_type}|{entity_id}".encode()
    return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") % 100


def split_branch(step: SplitStep, bucket: int) -> int:
    """Which branch a bucket falls into: branches take consecutive ranges of buckets."""
    upper = 0
    for n, branch in enumerate(step.branches):
        upper += branch.percent
        if bucket < upper:
            return n
    return len(step.branches) - 1


# -- conditions ---------------------------------------------------------------------------


def operand_value(
    operand: Operand,
    record: Mapping[str, Any],
    params: Mapping[str, Any],
    constants: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
) -> Any:
    if operand.field is not None:
        return record.get(operand.field)
    if operand.param is not None:
        return params.get(operand.param)
    if operand.const is not None:
        return constants.get(operand.const)
    if operand.var is not None:
        return (variables or {}).get(operand.var)
    return operand.value


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=None) if parsed.tzinfo is None else parsed


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return "" if value is None else str(value).strip()


def compare(op: str, left: Any, right: Any) -> bool:
    """Numbers compare as numbers, ISO dates as dates, anything else as text (case-insensitive);
    ``contains`` looks into lists (multiple fields) or text."""
    if op == "empty":
        return _empty(left)
    if op == "not_empty":
        return not _empty(left)
    if op in ("contains", "not_contains"):
        if isinstance(left, list):
            found = _text(right).lower() in {_text(v).lower() for v in left}
        else:
            found = _text(right).lower() in _text(left).lower()
        return found if op == "contains" else not found
    a: Any
    b: Any
    a, b = _number(left), _number(right)
    if a is None or b is None:
        a, b = _moment(left), _moment(right)
        if a is None or b is None or (a.tzinfo is None) != (b.tzinfo is None):
            a, b = _text(left).lower(), _text(right).lower()
    result: bool = {
        "eq": a == b,
        "ne": a != b,
        "gt": a > b,
        "gte": a >= b,
        "lt": a < b,
        "lte": a <= b,
    }[op]
    return result


def holds(
    match: str,
    rules: Sequence[Comparison | Group],
    record: Mapping[str, Any],
    params: Mapping[str, Any],
    constants: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
) -> bool:
    """Whether the rules hold for a record (``and``: all, ``or``: any). ``variables`` are the
    enrollment's, typed (``scenario_variables.variable_view``)."""
    results = (_rule_holds(rule, record, params, constants, variables) for rule in rules)
    return all(results) if match == "and" else any(results)


def _rule_holds(
    rule: Comparison | Group,
    record: Mapping[str, Any],
    params: Mapping[str, Any],
    constants: Mapping[str, Any],
    variables: Mapping[str, Any] | None,
) -> bool:
    if isinstance(rule, Group):
        return holds(rule.match, rule.rules, record, params, constants, variables)
    values = (record, params, constants, variables)
    left = operand_value(rule.left, *values)
    right = None if rule.right is None else operand_value(rule.right, *values)
    return compare(rule.op, left, right)
