"""A mapping file an integrator gets wrong (or an attacker writes) fails at load, clearly.

An unknown JMESPath function is found only when an expression runs, so without a check at
load every record would be quarantined at the next pull; a 3,000-deep expression or a
deeply nested YAML file would end in a RecursionError traceback. Each is a ConfigError
naming the file and the rule, from `mapping check` and at start-up alike.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ehr_bridge.errors import ConfigError
from ehr_bridge.mapping import load_mapping

ROOT = Path(__file__).resolve().parents[2]
IAPTUS = ROOT / "mappings" / "iaptus.yaml"
RULE = "    presenting_problem: {path: presenting_problem, transform: [strip, upper]}\n"


def _with_rule(tmp_path: Path, rule: str) -> Path:
    text = IAPTUS.read_text("utf-8")
    assert RULE in text
    target = tmp_path / "iaptus.yaml"
    shutil.copy(IAPTUS, target)
    target.write_text(text.replace(RULE, rule), "utf-8")
    return target


def test_an_unknown_jmespath_function_is_refused_at_load_naming_the_rule(
    tmp_path: Path,
) -> None:
    path = _with_rule(tmp_path, "    presenting_problem: {path: 'uppercase(presenting_problem)'}\n")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    message = str(caught.value)
    assert "unknown JMESPath function uppercase" in message
    assert "presenting_problem" in message


def test_a_known_function_inside_a_nested_expression_still_loads(tmp_path: Path) -> None:
    path = _with_rule(
        tmp_path, "    presenting_problem: {path: \"join('', [to_string(presenting_problem)])\"}\n"
    )
    assert load_mapping(path).name


def test_an_unknown_function_deep_in_an_expression_is_found(tmp_path: Path) -> None:
    path = _with_rule(
        tmp_path, "    presenting_problem: {path: \"join('', [shout(presenting_problem)])\"}\n"
    )
    with pytest.raises(ConfigError, match="shout"):
        load_mapping(path)


def test_a_3000_deep_expression_is_a_config_error_not_a_recursion_traceback(
    tmp_path: Path,
) -> None:
    deep = "(" * 3000 + "presenting_problem" + ")" * 3000
    path = _with_rule(tmp_path, f"    presenting_problem: {{path: '{deep}'}}\n")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert "presenting_problem" in str(caught.value)


def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n", "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value)
