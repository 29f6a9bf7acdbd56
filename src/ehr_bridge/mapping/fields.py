"""Which source fields a mapping reads: JMESPath expressions and documents as field paths.

``mapping test`` reports the fields of the golden inputs that no rule reads, so an
integrator sees what a new record system sends that the mapping ignores (a second phone
number, a new code). Paths are dotted with ``[]`` for "any list element"
(``Client.Contact.Mobile``, ``resource.content[].attachment.data``). A rule that reads an
object or a list whole (``resource.period``) covers everything under it.

The analysis is static and errs towards "read": a field named anywhere in an expression,
including in a filter condition or a function argument, counts as read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_LIST = "[]"


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


class _Reads:
    """Walks one JMESPath AST, collecting the field paths it reads."""

    def __init__(self) -> None:
        self.found: set[str] = set()

    def walk(self, node: dict[str, Any], base: str) -> set[str]:
        """The paths ``node``'s value may come from, evaluated at ``base``."""
        kind = node.get("type")
        children: list[dict[str, Any]] = node.get("children", [])
        if kind == "field":
            return {_join(base, str(node["value"]))}
        if kind in ("current", "identity"):
            return {base}
        if kind in ("subexpression", "pipe"):
            return self._chain(children, base)
        if kind == "index_expression":  # an element; after a projection, still that element
            return {p if p.endswith(_LIST) else p + _LIST for p in self.walk(children[0], base)}
        if kind in ("projection", "value_projection", "filter_projection"):
            return self._projection(kind, children, base)
        if kind == "flatten":
            return self.walk(children[0], base)
        if kind in ("comparator", "function_expression", "not_expression"):
            return self._read_all(children, base)
        if kind == "expref":
            return set()  # applied to elements we cannot name; the list itself is read
        return self._union(children, base)

    def _chain(self, children: list[dict[str, Any]], base: str) -> set[str]:
        current = {base}
        for child in children:
            current = {p for start in current for p in self.walk(child, start)}
        return current

    def _projection(self, kind: str, children: list[dict[str, Any]], base: str) -> set[str]:
        lists = self.walk(children[0], base)
        elements = lists if kind == "value_projection" else {p + _LIST for p in lists}
        if kind == "filter_projection":
            for element in elements:
                self._read_all(children[2:], element)
        return (
            {p for e in elements for p in self.walk(children[1], e)}
            if len(children) > 1
            else elements
        )

    def _read_all(self, children: list[dict[str, Any]], base: str) -> set[str]:
        values = self._union(children, base)
        self.found.update(values)
        return values

    def _union(self, children: Iterable[dict[str, Any]], base: str) -> set[str]:
        return {p for child in children for p in self.walk(child, base)}


def reads(expression: Any) -> set[str]:
    """Field paths a compiled JMESPath expression (``jmespath.compile``) reads."""
    collector = _Reads()
    collector.found.update(collector.walk(expression.parsed, ""))
    # "x[]" (an element of x, e.g. after an index) is read as x: errs towards "read"
    return {p.removesuffix(_LIST) for p in collector.found if p.removesuffix(_LIST)}


def leaves(document: Any, prefix: str = "") -> set[str]:
    """Every leaf field path in a JSON document (empty objects and lists count as leaves)."""
    if isinstance(document, dict) and document:
        return {p for k, v in document.items() for p in leaves(v, _join(prefix, str(k)))}
    if isinstance(document, list) and document:
        return {p for item in document for p in leaves(item, prefix + _LIST)}
    return {prefix} if prefix else set()


def covered(leaf: str, read: Iterable[str]) -> bool:
    """True if a rule reads ``leaf`` itself or an object or list that contains it."""
    return any(leaf == r or leaf.startswith((r + ".", r + _LIST)) for r in read)


def unread(documents: Iterable[Any], read: Iterable[str]) -> list[str]:
    """Sorted leaf paths of the documents that no read path covers."""
    read = set(read)
    found = {leaf for document in documents for leaf in leaves(document)}
    return sorted(leaf for leaf in found if not covered(leaf, read))
