"""The shape of the battgen package, read from its sources with ``ast`` (nothing is imported).

The import graph has a node per module of battgen (``battgen/x.py`` is ``battgen.x``, a package's
``__init__.py`` is the package) and an edge ``a -> b`` when ``a`` imports ``b`` anywhere: at
module level, inside a function (a lazy import) or under ``if TYPE_CHECKING:``. An import names
the module it loads: ``import battgen.x.y`` and ``from battgen.x import y`` (``y`` a module) point at
``battgen.x.y``; ``from battgen.x import name`` (``name`` not a module) and ``from battgen import
__version__`` point at ``battgen.x`` and ``battgen``; relative imports are resolved against the
importing module's package. The parent packages that Python also executes are not edges (every
module would then depend on ``battgen/__init__.py``).

The rules:

(a) no import cycle, lazy imports included;
(b) the science modules (everything except ``battgen.book*`` and ``battgen.cli``) never import
    ``battgen.book`` or its submodules: the book is a user of the package, not a part of it;
(c) no module is longer than :data:`MAX_LINES` lines unless :data:`LONG_MODULES` lists it with
    the single concern that justifies its length.

When first run it found one cycle (``battgen -> battgen.estimator -> battgen``, through
``__version__``; now ``battgen._version``) and ``battgen.features`` over the limit (granted its
single concern below).
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "battgen"
MAX_LINES = 450
LONG_MODULES: dict[str, str] = {
    "battgen.features": "turning a tester's workstep rows into pulse features: the level/width walk, its checks "
                        "and its one-line reports (reading the file is battgen.workstep, the protocol battgen.protocol)",
}
"""Modules allowed over :data:`MAX_LINES`, each with the one concern that keeps it long."""
NOT_SCIENCE = ("battgen.book", "battgen.cli")
"""The book tooling and the command line: the only modules that may import ``battgen.book``."""

# Findings of this test on the package, reported and NOT allowed: each shows as an expected failure
# (x) with its reason until the package is fixed. They are not in LONG_MODULES (no concern was
# granted) and a new cycle or a new long module fails at once.


# --------------------------------------------------------------------------- the checker


def module_files(root: Path, package: str = "battgen") -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _known(name: str, modules) -> str | None:
    """``name`` or its longest prefix (on dots) that is a module of the package, else None."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules) -> set[str]:
    """The package's modules that ``module`` (source ``path``) imports anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf8"), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {m for alias in node.names if (m := _known(alias.name, modules))}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..y import z
                if node.level - 1 > len(package) - 1:
                    raise ValueError(f"{path}: relative import beyond the top-level package")
                base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                target = full if full in modules else _known(base, modules)
                if target:
                    found.add(target)
    found.discard(module)
    return found


def import_graph(root: Path = PACKAGE_DIR, package: str = "battgen") -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module under ``root``."""
    modules = module_files(root, package)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component (Tarjan) that has one: the
    shortest way back to the component's alphabetically first module. Sorted by that module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(min(comp), comp, graph) for comp in sorted(components, key=min)]


def _cycle_through(start: str, comp: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest cycle from ``start`` back to itself inside ``comp`` (breadth-first)."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return path[::-1] + [start]
            if w in comp and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def book_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(science module, book module)`` for every import of the book by a science module."""
    def is_book(m: str) -> bool:
        return m == "battgen.book" or m.startswith("battgen.book.")

    def science(m: str) -> bool:
        return not any(m == p or m.startswith(p + ".") for p in NOT_SCIENCE)

    return sorted((a, b) for a, targets in graph.items() if science(a) for b in targets if is_book(b))


def long_modules(root: Path = PACKAGE_DIR, package: str = "battgen", limit: int = MAX_LINES) -> dict[str, int]:
    """``{module: line count}`` of the modules longer than ``limit`` lines."""
    counts = {m: len(p.read_text(encoding="utf8").splitlines()) for m, p in module_files(root, package).items()}
    return {m: n for m, n in sorted(counts.items()) if n > limit}


# --------------------------------------------------------------------------- the package's rules


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_every_kind_of_import(graph) -> None:
    assert {"battgen", "battgen.model", "battgen.evaluation", "battgen.evaluation.core", "battgen.book.glue"} <= set(graph)
    assert "battgen.model" in graph["battgen.train"]  # module level
    assert "battgen.evaluation.core" in graph["battgen.estimator"]  # from battgen.x.y import name
    assert "battgen.estimator" in graph["battgen.evaluation.leakfree"]  # inside a function
    assert "battgen.train" in graph["battgen.book.profiles"]  # under TYPE_CHECKING and inside a method
    assert "battgen.plotting" in graph["battgen.book.chapter"]  # from battgen import <module>
    assert "battgen.evaluation.paper" in graph["battgen.evaluation"]  # a package's __init__


def test_no_import_cycles(graph) -> None:
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in battgen (lazy imports count too):\n" + "\n".join(
        "  " + " -> ".join(c) for c in cycles)


def test_science_modules_never_import_the_book(graph) -> None:
    bad = book_imports(graph)
    assert not bad, "science modules import the book tooling (battgen.book is a user of the package, not a part):\n" + \
        "\n".join(f"  {a} imports {b}" for a, b in bad)


def _length_cases() -> list:
    """One case per module."""
    return [pytest.param(m, id=m) for m in module_files(PACKAGE_DIR)]


@pytest.mark.parametrize("module", _length_cases())
def test_module_is_short(module: str) -> None:
    n = len(module_files(PACKAGE_DIR)[module].read_text(encoding="utf8").splitlines())
    assert n <= MAX_LINES or module in LONG_MODULES, (
        f"{module} has {n} lines, over {MAX_LINES}: split it, or list it in LONG_MODULES with its single concern")


def test_the_allow_list_is_not_stale() -> None:
    modules = module_files(PACKAGE_DIR)
    over = long_modules()
    for m, concern in LONG_MODULES.items():
        assert m in modules, f"LONG_MODULES lists {m}, which does not exist"
        assert m in over, f"LONG_MODULES lists {m}, which is no longer over {MAX_LINES} lines: remove it"
        assert concern.strip(), f"LONG_MODULES[{m!r}]: state its single concern"


# --------------------------------------------------------------------------- the checker can fail


def test_find_cycles_on_synthetic_graphs() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    two = find_cycles({"x": {"y"}, "y": {"x"}, "p": {"q"}, "q": {"r"}, "r": {"p", "x"}})
    assert two == [["p", "q", "r", "p"], ["x", "y", "x"]]
    assert find_cycles({"s": {"s"}}) == [["s", "s"]]


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_cycles_book_imports_and_long_modules(tmp_path: Path) -> None:
    """A synthetic package with every kind of import the checker must see, parsed by the same code."""
    pkg = _write(tmp_path / "battgen", {
        "__init__.py": "from battgen.data import X\n",
        "data.py": "X = 1\n",
        "model.py": "from . import data\n\ndef f():\n    from .evaluation import core  # lazy, relative\n",
        "evaluation/__init__.py": "",
        "evaluation/core.py": "import battgen.model\nfrom ..book.glue import put\n",
        "book/__init__.py": "from battgen.book import glue\n",
        "book/glue.py": "from battgen import data\n\ndef put():\n    pass\n",
        "cli.py": "from battgen.book import put\n" + "\n" * 500,
    })
    g = import_graph(pkg)
    assert g["battgen"] == {"battgen.data"} and g["battgen.model"] == {"battgen.data", "battgen.evaluation.core"}
    assert g["battgen.evaluation.core"] == {"battgen.model", "battgen.book.glue"}
    assert g["battgen.book"] == {"battgen.book.glue"} and g["battgen.cli"] == {"battgen.book"}
    assert find_cycles(g) == [["battgen.evaluation.core", "battgen.model", "battgen.evaluation.core"]]
    assert book_imports(g) == [("battgen.evaluation.core", "battgen.book.glue")]  # the cli may, core may not
    assert long_modules(pkg) == {"battgen.cli": 501}
    with pytest.raises(AssertionError, match="battgen.evaluation.core -> battgen.model -> battgen.evaluation.core"):
        test_no_import_cycles(g)
    with pytest.raises(AssertionError, match="battgen.evaluation.core imports battgen.book.glue"):
        test_science_modules_never_import_the_book(g)
