"""Compiled JMESPath expressions answer exactly as jmespath's interpreter does.

The mapping engine runs ``expressions.compile_expression`` closures instead of
``jmespath.search``. These tests hold the two to the same value (or the same error) for every
expression in the shipped mappings plus expressions that use every node type, over
documents hypothesis builds from the names and literals those expressions use, so the fast
path cannot drift from JMESPath's semantics unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jmespath
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ehr_bridge.mapping import load_mapping
from ehr_bridge.mapping.expressions import CompiledExpression, compile_expression, is_false

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = sorted((ROOT / "mappings").glob("*.yaml"))


def _paths(node: Any) -> list[str]:
    """Every ``path:`` text (and ``record:`` expression) in a mapping file."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "path" and isinstance(v, str)]
        return found + [p for v in node.values() for p in _paths(v)]
    if isinstance(node, list):
        return [p for v in node for p in _paths(v)]
    return []


def _mapping_expressions() -> list[str]:
    found: set[str] = set()
    for path in MAPPINGS:
        raw = yaml.safe_load(path.read_text())
        found |= set(raw.get("record", {}).values())
        found |= {p for p in _paths({"in": raw.get("inbound"), "out": raw.get("outbound")})}
    return sorted(found)


#: every node type the compiler handles, and some it hands to the interpreter
EXTRA = [
    "@",
    "a",
    "a.b.c",
    "a[0]",
    "a[-1].b",
    "a[1:3]",
    "a[::-1]",
    "a[*].b",
    "a[].b",
    "a[][]",
    "a.*",
    "a.* | [0]",
    "*.b",
    "a[?b == 'x']",
    "a[?b != 'x'].c",
    "a[?b == `1`]",
    "a[?b == `true`]",
    "a[?b == `0`]",
    "a[?b == c]",
    "a[?b]",
    "a[?!b]",
    "a[?b && c]",
    "a[?b || c]",
    "a[?(b == 'x' || c == 'y') && !d]",
    "a[?b > `1`]",
    "a[?b < c]",
    "a[?b >= `0`] | [0].c",
    "a[?b <= 'x']",
    "a | [0] | b",
    "a || b",
    "a && b",
    "!a",
    "`0`",
    "`[1, 2]`",
    "'text'",
    "[a, b]",
    "{x: a, y: b.c}",
    "[a, b] | [?@ != null]",
    "join('-', [a, b] | [?@ != null])",
    "length(a)",
    "contains(a, 'x')",
    "to_string(a)",
    "keys(a)",
    "sort_by(a, &b)",
    "max_by(a, &b)",
    "map(&b, a)",
    "not_a_function(a)",
    "a[?b == 'x'] | [0].c || [0].d",
]

EXPRESSIONS = sorted(set(_mapping_expressions()) | set(EXTRA))
_NAMES = {"a", "b", "c", "d", "x", "y", "null"}


def _names_and_literals(node: Any) -> tuple[set[str], set[Any]]:
    names: set[str] = set()
    literals: set[Any] = set()
    if isinstance(node, dict):
        if node.get("type") == "field":
            names.add(node["value"])
        if node.get("type") == "literal" and isinstance(node["value"], str | int | bool):
            literals.add(node["value"])
        for child in node.get("children", []):
            if isinstance(child, dict):
                more_names, more_literals = _names_and_literals(child)
                names |= more_names
                literals |= more_literals
    return names, literals


def _vocabulary() -> tuple[list[str], list[Any]]:
    names, literals = set(_NAMES), set()
    for text in EXPRESSIONS:
        more_names, more_literals = _names_and_literals(jmespath.compile(text).parsed)
        names |= more_names
        literals |= more_literals
    return sorted(names), sorted(literals, key=repr)


NAMES, LITERALS = _vocabulary()
LEAVES = st.one_of(
    st.sampled_from([None, True, False, 0, 1, 2, -1, 0.0, 1.5, "", '""', "x", "y", " MR "]),
    st.sampled_from(LITERALS) if LITERALS else st.nothing(),
    st.text(max_size=4),
)


def _documents(names: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        LEAVES,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(names), inner, max_size=4),
        ),
        max_leaves=25,
    )


#: values where JMESPath differs from Python: 0/1 against booleans, empty containers
ODD_VALUES = [True, False, 0, 1, 0.0, 1.0, 2, "", "x", "y", [], {}, None, [1], {"b": 1}]
#: the extra expressions' few names (so their filters and comparisons meet real values)
SMALL_DOCUMENTS = _documents(sorted(_NAMES))
#: every name the mappings use (iaptus, pcmis, FHIR paths)
DOCUMENTS = _documents(NAMES)


def _hl7_like() -> st.SearchStrategy[dict[str, Any]]:
    """Records shaped as ``record.decode`` makes them, with the mappings' segment ids."""
    segments = [n for n in NAMES if len(n) == 3 and n.isupper()] or ["PID"]
    numbers = [str(n) for n in range(1, 14)] + ["32"]
    component = st.one_of(LEAVES, st.dictionaries(st.sampled_from(numbers[:4]), LEAVES, max_size=3))
    repetition = st.dictionaries(st.sampled_from(numbers), component, max_size=5)
    occurrence = st.dictionaries(
        st.sampled_from(numbers), st.lists(repetition, max_size=3), max_size=6
    )
    return st.dictionaries(
        st.sampled_from(segments), st.lists(occurrence, min_size=1, max_size=2), max_size=5
    )


def _outcome(run: Any) -> tuple[str, Any]:
    try:
        return "value", json.dumps(run(), sort_keys=True, default=repr)
    except Exception as exc:  # the same error type and text, or the test fails
        return "error", f"{type(exc).__name__}: {exc}"


#: each expression compiled both ways once; hypothesis then varies only the documents
PAIRS = [(text, jmespath.compile(text), compile_expression(text)) for text in EXPRESSIONS]


def _same(document: Any) -> None:
    for text, interpreted, compiled in PAIRS:
        assert _outcome(lambda c=compiled: c.search(document)) == _outcome(
            lambda i=interpreted: i.search(document)
        ), text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=SMALL_DOCUMENTS)
@example(document={"a": [{"b": v, "c": v, "d": v} for v in ODD_VALUES], "b": 1, "c": 0})
@example(document={"a": {"b": True, "c": [0, 1, [2, [3]]]}, "b": False, "c": None})
@example(document=[{"a": 0}, {"a": 1}])
def test_compiled_equals_interpreted_on_small_documents(document: Any) -> None:
    _same(document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=DOCUMENTS)
def test_compiled_equals_interpreted_on_json_documents(document: Any) -> None:
    _same(document)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_hl7_like())
def test_compiled_equals_interpreted_on_hl7_records(document: Any) -> None:
    _same(document)


def _golden_documents() -> list[Any]:
    found = []
    for path in sorted((ROOT / "mappings").glob("*.golden/*.input.json")):
        document = json.loads(path.read_text())
        found.append(document)
        if isinstance(document, dict) and "resource" in document:
            found.append({"resource": document["resource"], "context": document.get("context")})
    return found


def test_compiled_equals_interpreted_on_golden_inputs() -> None:
    for document in _golden_documents():
        _same(document)


def test_the_mapping_rules_run_compiled_expressions() -> None:
    mapping = load_mapping(ROOT / "mappings" / "hl7v2-ref-i12.yaml")
    expressions = [r.expression for r in mapping.rules("inbound") if r.expression is not None]
    expressions += list(mapping.record_expressions().values())
    assert expressions
    assert all(isinstance(e, CompiledExpression) for e in expressions)


def test_the_parsed_form_stays_for_the_toolkit() -> None:
    text = 'PID[0]."3"[?"5" == \'MR\'] | [0]."1"'
    compiled = compile_expression(text)
    assert compiled.expression == text
    assert compiled.parsed == jmespath.compile(text).parsed


def test_custom_options_are_left_to_the_interpreter() -> None:
    options = jmespath.Options(dict_cls=dict)
    assert compile_expression("{x: a}").search({"a": 1}, options) == {"x": 1}


def test_a_syntax_error_is_jmespaths_own() -> None:
    with pytest.raises(jmespath.exceptions.ParseError):
        compile_expression("a[?")


@pytest.mark.parametrize(
    ("value", "false"),
    [("", True), ([], True), ({}, True), (None, True), (False, True), (0, False), (True, False)],
)
def test_jmespath_falsiness(value: Any, false: bool) -> None:
    assert is_false(value) is false
