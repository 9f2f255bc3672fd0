"""The import map of ``talprov/``: no circle, and no arrow from a lower layer up.

The layer order is written once, in docs/architecture.md's ``layers`` block; this
test reads it from there, so the map and the code cannot disagree. Every import
counts, including those inside functions and under ``TYPE_CHECKING``: a circle
that only type checkers see is still a circle in the design.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "talprov"
MAP = ROOT / "docs" / "architecture.md"


def read_layers() -> list[list[str]]:
    """The ``layers`` block: one layer per line, lowest first, modules after ':'."""
    match = re.search(r"```text layers\n(.*?)```", MAP.read_text(), re.S)
    assert match, "docs/architecture.md has no ```text layers block"
    layers = []
    for line in match.group(1).splitlines():
        if ":" not in line:
            continue
        names = line.split(":", 1)[1].split("#", 1)[0].replace(",", " ").split()
        layers.append([n if n.startswith("talprov") else f"talprov.{n}" for n in names])
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every talprov module ``path`` imports (``from a import b`` counts a.b if it is one)."""
    own = module_name(path)
    package = own.split(".") if path.name == "__init__.py" else own.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {name for name in found if name == "talprov" or name.startswith("talprov.")}


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {t for t in imports_of(path) if t in modules and t != name}
    return graph


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, names in enumerate(layers):
        for name in names:
            # The package itself (``talprov``) holds only its own __init__.
            matches = module == name or (name != "talprov" and module.startswith(name + "."))
            if matches and (best is None or len(name) > best[0]):
                best = (len(name), index)
    return None if best is None else best[1]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None (iterative DFS)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop()
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph[nxt])))
    return None


def test_every_module_has_a_layer() -> None:
    layers = read_layers()
    missing = sorted(m for m in import_graph() if layer_of(m, layers) is None)
    assert not missing, f"modules in no layer of docs/architecture.md: {missing}"


def test_no_import_reaches_up_a_layer() -> None:
    layers = read_layers()
    upward = []
    for module, targets in sorted(import_graph().items()):
        here = layer_of(module, layers)
        for target in sorted(targets):
            there = layer_of(target, layers)
            if here is not None and there is not None and there > here:
                upward.append(f"{module} (layer {here}) -> {target} (layer {there})")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_circle_between_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_import_circle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        top = ".".join(module.split(".")[:2])
        packages.setdefault(top, set()).update(
            ".".join(t.split(".")[:2]) for t in targets)
    graph = {p: {t for t in ts if t != p and t in packages} for p, ts in packages.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "package circle: " + " -> ".join(cycle or [])


def test_the_checker_finds_a_circle() -> None:
    # The checker itself must be able to fail.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
