"""What a template refers to, read from its parsed tree (never by rendering it).

``find_undeclared_variables`` gives the top-level names (``contact``, ``params`` …);
attribute chains (``params.discount``, ``record['UF_CRM_X']``) give the parameters, constants
and record fields, so an unknown one is reported when the scenario is saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jinja2 import meta, nodes

from marketapp.actions import filters, sandbox

_parser = sandbox.LimitedSandbox()

# Names the e-mail and SMS actions add per record (:mod:`marketapp.consent`); elsewhere they
# render as empty text.
MESSAGE_NAMES = frozenset({"unsubscribe_url"})


@dataclass
class Uses:
    """What one template uses: top-level names and, per name, the first attributes read."""

    names: set[str] = field(default_factory=set)
    attributes: dict[str, set[str]] = field(default_factory=dict)
    # Problems found in filter calls: (message code, values).
    filter_problems: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def analyse(source: str) -> Uses:
    """Parse ``source`` (it has passed :func:`templating.check`) and list what it uses."""
    tree = _parser.parse(source)
    uses = Uses(names=set(meta.find_undeclared_variables(tree)))
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if not isinstance(target, nodes.Name) or target.name in assigned:
            continue
        attr = _attribute(node)
        if attr is not None:
            uses.attributes.setdefault(target.name, set()).add(attr)
    for call in tree.find_all(nodes.Filter):
        assert isinstance(call, nodes.Filter)
        _check_filter(call, uses)
    _check_private(tree, uses)
    return uses


def _check_private(tree: nodes.Template, uses: Uses) -> None:
    """``x.__class__``, ``x['_y']``, ``x|attr('__y')``: the sandbox refuses these when it
    renders, so refuse them when the scenario is saved instead of at send time."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Filter):
            arg = node.args[0] if node.name == "attr" and node.args else None
            name = arg.value if isinstance(arg, nodes.Const) else None
        else:
            assert isinstance(node, nodes.Getattr | nodes.Getitem)
            name = _attribute(node)
        if isinstance(name, str) and name.startswith("_"):
            uses.filter_problems.append(("private_attribute", {"name": name}))


def _attribute(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None  # record[name]: computed, not checked


def _check_filter(call: nodes.Filter, uses: Uses) -> None:
    if call.name == "plural" and (len(call.args) not in (2, 3) or call.kwargs):
        uses.filter_problems.append(("plural_args", {}))
    if call.name in ("date", "datetime"):
        arg = call.args[0] if call.args else None
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
            try:
                filters.check_format(arg.value)
            except ValueError:
                uses.filter_problems.append(("date_format", {"value": arg.value}))
