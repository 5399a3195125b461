"""A scenario's variables: declared in the definition, held per enrollment, set by steps.

An enrollment keeps them in its ``variables`` column as ``{name: {"type": T, "value": V}}``
with ``V`` in JSON form (:func:`typed.to_json`): each value carries its type, so a stored
enrollment reads back the same whatever happens to the definition later.

- :func:`initial_variables`: the stored form at entry (the declared defaults);
- :func:`evaluate_step`: a ``set_variable`` step for one record, the new stored form or the
  message of the error (the engine skips the record with ``expression_error``);
- :func:`variable_view`: the typed values (``Decimal``, ``int``, ``bool``, ``date``, ``str``,
  ``None``) that templates (``var.x``), conditions and expressions read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask_babel import get_locale

from marketapp.scenarios import expressions as ex
from marketapp.scenarios import typed
from marketapp.scenarios.messages import message

if TYPE_CHECKING:
    from marketapp.scenarios.definition import ScenarioDefinition
    from marketapp.scenarios.steps import SetVariableStep

EXPRESSION_ERROR = "expression_error"  # the skip reason of a failed set_variable step


def initial_variables(defn: ScenarioDefinition) -> dict[str, dict[str, Any]]:
    """Every declared variable with its default (the checker has refused a bad default)."""
    return {
        v.name: {"type": v.type, "value": typed.to_json(typed.typed(v.type, v.default))}
        for v in defn.variables
    }


def variable_view(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The typed value of each stored variable; one that no longer reads as its type (a row
    edited by hand) is empty rather than an error."""
    view: dict[str, Any] = {}
    for name, slot in stored.items():
        view[name] = None
        if isinstance(slot, Mapping) and slot.get("type") in typed.VALUE_TYPES:
            with contextlib.suppress(ex.ExpressionError):
                view[name] = typed.typed(slot["type"], slot.get("value"))
    return view


def evaluate_step(
    step: SetVariableStep,
    record: Mapping[str, Any],
    params: Mapping[str, Any],
    constants: Mapping[str, Any],
    variables: Mapping[str, Any],
) -> tuple[dict[str, Any], None] | tuple[None, str]:
    """Run ``step`` for one record: ``(new stored variables, None)``, or ``(None, message)``
    when the expression fails (division by zero, a text that is no number, a value the
    variable's type does not take …). ``variables`` is the stored form; the message is in the
    current locale (the engine forces the portal's)."""
    slot = variables.get(step.name)
    if not isinstance(slot, Mapping) or slot.get("type") not in typed.VALUE_TYPES:
        return None, message(_language(), "expr_no_variable", name=step.name)
    kind = str(slot["type"])
    try:
        expression = ex.parse(step.expression)
        result = ex.evaluate(expression, record, params, constants, variable_view(variables))
        value = typed.typed(kind, result)
    except ex.ExpressionError as exc:
        return None, exc.text(_language())
    new = dict(variables)
    new[step.name] = {"type": kind, "value": typed.to_json(value)}
    return new, None


def _language() -> str:
    try:
        locale = get_locale()
    except RuntimeError:  # outside an application context
        locale = None
    return "ru" if locale is not None and str(locale).startswith("ru") else "en"
