"""Which source fields a mapping reads: JMESPath expressions as field paths."""

from __future__ import annotations

import jmespath
import pytest

from ehr_bridge.mapping.fields import covered, leaves, reads, unread


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Client.Surname", {"Client.Surname"}),
        ("resource.content[0].attachment.data", {"resource.content[].attachment.data"}),
        ("a[*].b", {"a[].b"}),
        ("a[].b", {"a[].b"}),
        ("a.*.b", {"a.b"}),
        ("a || b.c", {"a", "b.c"}),
        ("length(a)", {"a"}),
        ("{x: a, y: b}", {"a", "b"}),
        ("a[?kind=='home'].value | [0]", {"a[].kind", "a[].value"}),
        ("a[?system=='x'] | [0].value", {"a[].system", "a[].value"}),
        ("sort_by(a, &b)", {"a"}),
        ("`3`", set()),
        ("@", set()),
    ],
)
def test_reads(expression: str, expected: set[str]) -> None:
    assert reads(jmespath.compile(expression)) == expected


def test_leaves() -> None:
    document = {"a": {"b": 1, "c": [{"d": None}, {"e": []}]}, "f": {}}
    assert leaves(document) == {"a.b", "a.c[].d", "a.c[].e", "f"}


def test_a_read_object_covers_everything_under_it() -> None:
    assert covered("resource.period.start", {"resource.period"})
    assert covered("a.c[].d", {"a.c"})
    assert not covered("resource.periods", {"resource.period"})


def test_unread_lists_fields_no_rule_reads() -> None:
    records = [{"Client": {"Surname": "x", "Mobile": "y"}}, {"Client": {"Pager": "z"}}]
    assert unread(records, {"Client.Surname"}) == ["Client.Mobile", "Client.Pager"]
