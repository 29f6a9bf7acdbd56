"""The import graph keeps the layers of shared/ARCHITECTURE.md: they only point down.

cli -> sync -> adapters -> store -> domain, with config, errors, logs, retry and runtime at
the ground. A module may import its own package or any lower layer, never a higher one,
and no modules may import each other in a circle. Imports under ``TYPE_CHECKING`` count
too: a circle kept only for the type checker is still a circle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "ehr_bridge"
#: the layer of each top-level part of the package; a part may import only lower layers
LAYERS: dict[str, int] = {
    "__main__": 9,
    "cli": 8,
    "demo": 7,
    "observability": 7,
    "sync": 6,
    "adapters": 5,
    "reports": 4,
    "security": 4,
    "mapping": 3,
    "sim": 3,
    "store": 3,
    "domain": 2,
    "config": 1,
    "errors": 0,
    "logs": 1,
    "retry": 1,
    "runtime": 1,
    "__init__": 1,
}
#: modules whose layer is not their package's, and why
MODULE_LAYERS: dict[str, int] = {
    # reduces foreign error text to what is safe to keep; stdlib only, so under everything
    "ehr_bridge.security.foreign_text": 0,
    # creates files 0600 and folders 0700 for every layer, the log included; stdlib only
    "ehr_bridge.security.files": 0,
    # primitives the store and the adapters build on: they import only config and errors
    "ehr_bridge.security.crypto": 1,
    "ehr_bridge.security.limits": 1,
    # TLS, OAuth2 and bounded reads for the adapters (on config and limits)
    "ehr_bridge.security.transport": 2,
    # drives whole daemons in a demo work folder: above demo, used only by benchmarks
    "ehr_bridge.sim.chaos": 8,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path, module: str) -> set[str]:
    """The ehr_bridge modules ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text("utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {name: _imports(path, name) for name, path in MODULES.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    return MODULE_LAYERS.get(module, LAYERS[_part(module)])


def test_every_part_of_the_package_has_a_layer() -> None:
    assert {_part(m) for m in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_point_down(module: str) -> None:
    part = _part(module)
    upward = [
        target
        for target in GRAPH[module]
        if (_part(target) != part or target in MODULE_LAYERS) and _layer(target) >= _layer(module)
    ]
    assert not upward, f"{module} (layer {_layer(module)}) imports up or across: {upward}"


def test_adapters_never_import_the_engine() -> None:
    offenders = {
        m: sorted(t for t in GRAPH[m] if _part(t) == "sync")
        for m in MODULES
        if _part(m) == "adapters"
    }
    assert not {m: t for m, t in offenders.items() if t}


def test_no_modules_import_each_other_in_a_circle() -> None:
    """Package faces (``__init__``) only hand names on, so they are not followed."""
    graph = {
        m: {t for t in targets if MODULES[t].name != "__init__.py"}
        for m, targets in GRAPH.items()
        if MODULES[m].name != "__init__.py"
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            pytest.fail(f"import circle: {' -> '.join(cycle)}")
