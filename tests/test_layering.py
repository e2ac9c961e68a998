"""The package layering, read from the source: no import loops, and each layer imports only
the layers below it. Imports inside functions count (a lazy import is still a dependency);
imports under ``if TYPE_CHECKING:`` do not."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"

# What each part may import, besides itself. Parts not named here (the application, the cart,
# the command line...) may import anything below them; the loop check covers them.
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "wakeups": set(),
    "telemetry": {"domain"},
    "stores": {"domain", "wakeups"},
    "serialization": {"domain", "stores"},
    "testing": {"domain", "stores"},
}
BACKENDS = ("memory", "sqlite", "postgres", "nats")
# Who may name a backend package from outside it (its public face only, never its modules):
# the stores' own index and URL opener, and Signal's default store.
BACKEND_USERS = {"eventsignal.stores", "eventsignal.stores.urls", "eventsignal.application"}


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for path in (SOURCE / "eventsignal").rglob("*.py"):
        module = ".".join(path.relative_to(SOURCE).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        hidden = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("eventsignal"):
                found[module].add(str(node.module))
            elif isinstance(node, ast.Import):
                found[module].update(a.name for a in node.names if a.name.startswith("eventsignal"))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "eventsignal"


def _part_graph(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports.items():
        for target in targets:
            if _part(target) != _part(module) and _part(module) != "eventsignal":
                graph[_part(module)].add(_part(target))
    return graph


def _loops(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Every part that can reach itself, with one path back."""
    for start in sorted(graph):
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    yield [*path, start]
                    stack.clear()
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))


def test_no_import_loop_between_parts() -> None:
    assert list(_loops(_part_graph(_imports()))) == []


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_low_layer_imports_only_what_is_below_it(part: str) -> None:
    used = _part_graph(_imports()).get(part, set())
    assert used <= ALLOWED[part], f"{part} imports {sorted(used - ALLOWED[part])}"


def test_nothing_outside_a_backend_knows_its_insides() -> None:
    strays = []
    for module, targets in _imports().items():
        for backend in BACKENDS:
            home = f"eventsignal.stores.{backend}"
            if module == home or module.startswith(home + "."):
                continue
            for target in targets:
                if target.startswith(home + ".") or (
                    target == home and module not in BACKEND_USERS
                ):
                    strays.append(f"{module} -> {target}")
    assert strays == []


def test_the_checks_see_the_imports_they_judge() -> None:
    imports = _imports()
    assert "eventsignal.stores.base" in imports["eventsignal.application"]
    assert "eventsignal.domain.errors" in imports["eventsignal.stores.base"]
    graph = _part_graph(imports)
    assert "stores" in graph["subscriptions"]
    assert list(_loops({"a": {"b"}, "b": {"c"}, "c": {"a"}})) != []
