"""JMESPath expressions compiled once into Python closures, for the per-record hot path.

jmespath's ``ParsedResult.search`` builds a new interpreter (and function table) for every
call and then walks the AST dicts, dispatching on each node's type by name. A mapping runs
the same twenty-odd expressions over every record, so most of the mapping time went there.
``compile_expression`` turns each AST into nested closures when the mapping loads:
a run of plain field and index steps (``RF1[0]."6"[0]."1"``, ``patient.local_id``)
becomes one loop, and filters, pipes, comparisons, ``||``/``&&``, projections and function
calls become closures that do exactly what the interpreter's ``visit_*`` methods do (the
same truthiness, the same number-versus-boolean equality rule, the same function table
with its type checks and errors).

Any node type not handled here (expression references such as ``sort_by(@, &x)``) is
evaluated by jmespath's own interpreter, so an unusual expression can only be slower,
never different. The result is still a ``ParsedResult`` (``expression`` and ``parsed``
unchanged) for the toolkit, and ``tests/mapping/test_mapping_expressions.py`` holds the
compiled and interpreted forms to identical answers over every shipped mapping's
expressions and generated documents.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import jmespath
from jmespath import functions as jp_functions
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter, _equals, _is_actual_number, _is_comparable

Node = dict[str, Any]
Fn = Callable[[Any], Any]

_INTERPRETER = TreeInterpreter()
_FUNCTIONS = jp_functions.Functions()
_CHAINS = frozenset({"subexpression", "index_expression", "pipe"})
_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "gt": operator.gt,
    "lte": operator.le,
    "gte": operator.ge,
}


class CompiledExpression(ParsedResult):  # type: ignore[misc]
    """A parsed JMESPath expression whose ``search`` runs precompiled closures."""

    def __init__(self, expression: str, parsed: Node) -> None:
        super().__init__(expression, parsed)
        self._run = compile_node(parsed)

    def search(self, value: Any, options: Any = None) -> Any:
        """The expression's value on ``value``, exactly as ``jmespath.search`` gives it."""
        if options is not None:  # custom dict class or functions: the interpreter's job
            return super().search(value, options)
        return self._run(value)


def compile_expression(text: str) -> CompiledExpression:
    """Parse ``text`` (jmespath's parser and its errors) and compile it.

    Raises:
        jmespath.exceptions.JMESPathError: ``text`` is not a valid expression.
    """
    parsed = jmespath.compile(text)
    return CompiledExpression(parsed.expression, parsed.parsed)


#: the functions JMESPath itself knows (the only ones a mapping may call)
JMESPATH_FUNCTIONS: frozenset[str] = frozenset(jp_functions.Functions.FUNCTION_TABLE)


def unknown_functions(tree: Node) -> set[str]:
    """Names of functions the expression calls that JMESPath does not have."""
    unknown: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if (
            node.get("type") == "function_expression"
            and node.get("value") not in JMESPATH_FUNCTIONS
        ):
            unknown.add(str(node.get("value")))
        stack.extend(child for child in node.get("children", ()) if isinstance(child, dict))
    return unknown


def is_false(value: Any) -> bool:
    """JMESPath falsiness: empty text, list or object, null and false (not 0)."""
    if value is True:
        return False
    if value is None or value is False:
        return True
    return bool(value == "" or value == [] or value == {})


def compile_node(node: Node) -> Fn:
    """One AST node as a function of the current value."""
    kind = node["type"]
    if kind in _CHAINS or kind == "field":
        return _chain(_flatten(node))
    builder = _BUILDERS.get(kind)
    if builder is None:
        return _interpreted(node)
    return builder(node)


def _interpreted(node: Node) -> Fn:
    def interpreted(value: Any) -> Any:
        return _INTERPRETER.visit(node, value)

    return interpreted


# --- chains: a.b, a[0], a | b ------------------------------------------------------------
def _flatten(node: Node) -> list[Node]:
    """The steps of nested chains, in order (composition is associative); identities dropped."""
    if node["type"] in _CHAINS:
        return [step for child in node["children"] for step in _flatten(child)]
    if node["type"] in ("identity", "current"):
        return []
    return [node]


def _chain(steps: list[Node]) -> Fn:
    functions: list[Fn] = []
    keys: list[str | int] = []
    for step in steps:
        if step["type"] in ("field", "index"):
            keys.append(step["value"])
            continue
        if keys:
            functions.append(_path(tuple(keys)))
            keys = []
        functions.append(compile_node(step))
    if keys:
        functions.append(_path(tuple(keys)))
    return _compose(functions)


def _compose(functions: list[Fn]) -> Fn:
    if not functions:
        return _identity
    if len(functions) == 1:
        return functions[0]
    if len(functions) == 2:
        first, second = functions

        def pair(value: Any) -> Any:
            return second(first(value))

        return pair
    steps = tuple(functions)

    def chain(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return chain


def _path(keys: tuple[str | int, ...]) -> Fn:
    """Field (text key) and index (int key) steps as one loop; null stays null throughout."""
    if len(keys) == 1 and isinstance(keys[0], str):
        return _field(keys[0])

    def path(value: Any) -> Any:
        for key in keys:
            if isinstance(key, str):
                try:
                    value = value.get(key)
                except AttributeError:
                    return None
            elif isinstance(value, list):
                try:
                    value = value[key]
                except IndexError:
                    return None
            else:  # indexing anything but a list (a string included) gives null
                return None
        return value

    return path


def _field(key: str) -> Fn:
    def field(value: Any) -> Any:
        try:
            return value.get(key)
        except AttributeError:
            return None

    return field


def _identity(value: Any) -> Any:
    return value


# --- values and comparisons --------------------------------------------------------------
def _literal(node: Node) -> Fn:
    constant = node["value"]

    def literal(_: Any) -> Any:
        return constant  # the AST's own object, as the interpreter returns it

    return literal


def _comparator(node: Node) -> Fn:
    op = node["value"]
    left, right = (compile_node(child) for child in node["children"])
    if op in ("eq", "ne"):
        return _equality(node, left, right)
    ordering = _ORDERING[op]

    def ordered(value: Any) -> Any:
        a, b = left(value), right(value)
        if not (_is_comparable(a) and _is_comparable(b)):
            return None
        return ordering(a, b)

    return ordered


def _equality(node: Node, left: Fn, right: Fn) -> Fn:
    negate = node["value"] == "ne"
    other = node["children"][1]
    if other["type"] == "literal" and isinstance(other["value"], str):
        text = other["value"]  # no number/boolean special case can apply to text

        def equals_text(value: Any) -> bool:
            same = bool(left(value) == text)
            return not same if negate else same

        return equals_text

    def equals(value: Any) -> bool:
        same = bool(_equals(left(value), right(value)))
        return not same if negate else same

    return equals


def _or(node: Node) -> Fn:
    left, right = (compile_node(child) for child in node["children"])

    def either(value: Any) -> Any:
        matched = left(value)
        return right(value) if is_false(matched) else matched

    return either


def _and(node: Node) -> Fn:
    left, right = (compile_node(child) for child in node["children"])

    def both(value: Any) -> Any:
        matched = left(value)
        return matched if is_false(matched) else right(value)

    return both


def _not(node: Node) -> Fn:
    inner = compile_node(node["children"][0])

    def negated(value: Any) -> bool:
        original = inner(value)
        if _is_actual_number(original) and original == 0:
            return False  # !0 is false in JMESPath
        return not original

    return negated


# --- projections and collections ---------------------------------------------------------
def _filter_projection(node: Node) -> Fn:
    base, project, condition = (compile_node(child) for child in node["children"])

    def filtered(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        collected = []
        for element in items:
            if not is_false(condition(element)):
                current = project(element)
                if current is not None:
                    collected.append(current)
        return collected

    return filtered


def _projection(node: Node) -> Fn:
    base, project = (compile_node(child) for child in node["children"])

    def projected(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        return [c for c in (project(element) for element in items) if c is not None]

    return projected


def _value_projection(node: Node) -> Fn:
    base, project = (compile_node(child) for child in node["children"])

    def projected(value: Any) -> Any:
        found = base(value)
        try:
            items = found.values()
        except AttributeError:
            return None
        return [c for c in (project(element) for element in items) if c is not None]

    return projected


def _flatten_node(node: Node) -> Fn:
    base = compile_node(node["children"][0])

    def flattened(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        merged: list[Any] = []
        for element in items:
            if isinstance(element, list):
                merged.extend(element)
            else:
                merged.append(element)
        return merged

    return flattened


def _slice(node: Node) -> Fn:
    bounds = slice(*node["children"])

    def sliced(value: Any) -> Any:
        return value[bounds] if isinstance(value, list) else None

    return sliced


def _multi_select_list(node: Node) -> Fn:
    parts = tuple(compile_node(child) for child in node["children"])

    def selected(value: Any) -> Any:
        return None if value is None else [part(value) for part in parts]

    return selected


def _multi_select_dict(node: Node) -> Fn:
    parts = tuple((pair["value"], compile_node(pair)) for pair in node["children"])

    def selected(value: Any) -> Any:
        return None if value is None else {key: part(value) for key, part in parts}

    return selected


def _key_val_pair(node: Node) -> Fn:
    return compile_node(node["children"][0])


def _function(node: Node) -> Fn:
    if any(child["type"] == "expref" for child in node["children"]):
        return _interpreted(node)  # &expr arguments are run by the interpreter itself
    name = node["value"]
    arguments = tuple(compile_node(child) for child in node["children"])

    def called(value: Any) -> Any:
        return _FUNCTIONS.call_function(name, [argument(value) for argument in arguments])

    return called


_BUILDERS: dict[str, Callable[[Node], Fn]] = {
    "literal": _literal,
    "identity": lambda _: _identity,
    "current": lambda _: _identity,
    "index": lambda node: _path((node["value"],)),
    "comparator": _comparator,
    "or_expression": _or,
    "and_expression": _and,
    "not_expression": _not,
    "filter_projection": _filter_projection,
    "projection": _projection,
    "value_projection": _value_projection,
    "flatten": _flatten_node,
    "slice": _slice,
    "multi_select_list": _multi_select_list,
    "multi_select_dict": _multi_select_dict,
    "key_val_pair": _key_val_pair,
    "function_expression": _function,
}
