"""The dependency rule of docs/architecture.md, checked on every import of ``src/``.

The layer table between the ``import-layers`` markers of docs/architecture.md is the rule (one
row a layer, lowest first; an entry is a package of ``candlecast``, a dotted module placed in
another layer than its package, or ``candlecast`` itself, the version module). Every ``import``
statement counts: at module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = "candlecast"

Layers = list[tuple[str, ...]]


def read_layers(text: str) -> Layers:
    """The table rows between the markers: the backticked entries of each row's first cell."""
    match = re.search(r"<!-- import-layers:start.*?-->(.*?)<!-- import-layers:end -->", text,
                      re.DOTALL)
    assert match, "docs/architecture.md has no import-layers table"
    layers: Layers = []
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        entries = tuple(re.findall(r"`([\w.]+)`", cells[0])) if cells else ()
        if entries:
            layers.append(entries)
    return layers


def module_files(src: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module below ``src/<package>`` by dotted name (a package is its ``__init__``)."""
    out: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(src: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports. ``from p import name`` counts as an
    import of ``p.name`` when that is a module, else of ``p``; ``import a.b.c`` as the longest
    module prefix. A parent package that Python runs first is not counted."""
    files = module_files(src, package)

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        here = module.split(".") if is_package else module.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here[: len(here) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                         for a in node.names]
            else:
                continue
            for name in names:
                if name == package or name.startswith(package + "."):
                    found = known(name)
                    if found is not None and found != module:
                        targets.add(found)
        graph[module] = targets
    return graph


def _full(entry: str, package: str) -> str:
    return entry if entry == package else f"{package}.{entry}"


def entry_of(module: str, layers: Layers, package: str = PACKAGE) -> tuple[str, int] | None:
    """The most specific table entry covering ``module`` and its layer (the root entry covers
    the root module only, so a package missing from the table is reported, not absorbed)."""
    best: tuple[str, int] | None = None
    for index, entries in enumerate(layers):
        for entry in entries:
            full = _full(entry, package)
            covers = module == full or (full != package and module.startswith(full + "."))
            if covers and (best is None or len(full) > len(_full(best[0], package))):
                best = (entry, index)
    return best


def unplaced(graph: Mapping[str, Iterable[str]], layers: Layers,
             package: str = PACKAGE) -> list[str]:
    return sorted(m for m in graph if entry_of(m, layers, package) is None)


def against_direction(graph: Mapping[str, Iterable[str]], layers: Layers,
                      package: str = PACKAGE) -> list[str]:
    """Imports from a module to one of a different entry in the same or a higher layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        here = entry_of(module, layers, package)
        for target in sorted(targets):
            there = entry_of(target, layers, package)
            if here is None or there is None or here[0] == there[0]:
                continue
            if there[1] >= here[1]:
                where = "the same layer as" if there[1] == here[1] else "a higher layer than"
                bad.append(f"{module} ({here[0]}) imports {target} ({there[0]}), which is in "
                           f"{where} {here[0]}")
    return bad


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# --------------------------------------------------------------------------- the real tree


@pytest.fixture(scope="module")
def layers() -> Layers:
    return read_layers(DOC.read_text())


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SRC)


def test_the_table_names_real_packages_once(layers: Layers) -> None:
    entries = [e for row in layers for e in row]
    assert len(layers) >= 10 and {"data", "features", "models", "training", "ops"} <= set(entries)
    assert len(entries) == len(set(entries)), f"an entry is in two layers: {entries}"
    modules = set(module_files(SRC))
    missing = [e for e in entries if _full(e, PACKAGE) not in modules]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_the_stated_direction_is_the_issues_chain(layers: Layers) -> None:
    """data -> features -> models -> training -> backtest -> serving/trading -> ops."""
    chain = ["data", "features", "models", "training", "backtest", "trading", "ops"]
    positions = [next(i for i, row in enumerate(layers) if name in row) for name in chain]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert any({"serving", "trading"} <= set(row) for row in layers)


def test_every_module_of_src_is_in_a_layer(graph: dict[str, set[str]], layers: Layers) -> None:
    assert not unplaced(graph, layers), (
        "modules in no layer of docs/architecture.md (add their package to one row): "
        f"{unplaced(graph, layers)}")


def test_no_import_circle_in_src(graph: dict[str, set[str]]) -> None:
    assert len(graph) > 100
    assert cycles(graph) == []


def test_every_import_follows_the_layer_order(graph: dict[str, set[str]],
                                              layers: Layers) -> None:
    assert sum(len(t) for t in graph.values()) > 300  # the walk saw the imports
    bad = against_direction(graph, layers)
    assert not bad, "imports against docs/architecture.md's direction:\n" + "\n".join(bad)


# --------------------------------------------------------------------------- the checker


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "src"


def test_the_checker_finds_circles_back_arrows_peers_and_strays(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low/__init__.py": "",
        "pkg/low/a.py": "def f():\n    from pkg.high import b  # lazy still counts\n",
        "pkg/high/__init__.py": "from . import b\n",
        "pkg/high/b.py": "from ..low import a\nfrom typing import TYPE_CHECKING\n"
                         "if TYPE_CHECKING:\n    from pkg.peer import c\n",
        "pkg/peer/__init__.py": "import pkg.low.a\n",
        "pkg/peer/c.py": "",
        "pkg/stray.py": "",
    })
    graph = import_graph(src, "pkg")
    assert graph["pkg.low.a"] == {"pkg.high.b"}
    assert graph["pkg.high.b"] == {"pkg.low.a", "pkg.peer.c"}
    assert graph["pkg.high"] == {"pkg.high.b"}
    assert graph["pkg.peer"] == {"pkg.low.a"} and graph["pkg.peer.c"] == set()
    assert cycles(graph) == [["pkg.high.b", "pkg.low.a"]]
    layers: Layers = [("pkg",), ("low",), ("high", "peer")]
    assert unplaced(graph, layers, "pkg") == ["pkg.stray"]
    bad = against_direction(graph, layers, "pkg")
    assert len(bad) == 2
    assert bad[0].startswith("pkg.high.b (high) imports pkg.peer.c (peer), which is in the same")
    assert bad[1].startswith("pkg.low.a (low) imports pkg.high.b (high), which is in a higher")


def test_a_dotted_entry_moves_one_module(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/conf.py": "from pkg.ops.config import X\n",
        "pkg/ops/__init__.py": "",
        "pkg/ops/config.py": "X = 1\n",
        "pkg/ops/run.py": "from pkg.conf import X\nfrom pkg.ops.config import X as Y\n",
    })
    graph = import_graph(src, "pkg")
    assert against_direction(graph, [("pkg",), ("ops",), ("conf",)], "pkg") == [
        "pkg.ops.run (ops) imports pkg.conf (conf), which is in a higher layer than ops"]
    assert against_direction(graph, [("pkg", "ops.config"), ("conf",), ("ops",)], "pkg") == []


# --------------------------------------------------------------------------- module size

MAX_LINES = 600
REASON = "longer than 600 lines because"
#: known exceptions while they are being rewritten, each with who and why (remove when done)
IN_REWRITE: dict[str, str] = {}


def test_no_module_is_over_600_lines_without_a_reason_at_its_top() -> None:
    """A module a person can read in one sitting; a longer one says why in its docstring."""
    long = []
    for folder in ("src", "flows", "bench", "bentos", "feature_repo", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if ".cache" in path.parts:
                continue
            text = path.read_text()
            if text.count("\n") > MAX_LINES and str(path.relative_to(ROOT)) not in IN_REWRITE:
                doc = ast.get_docstring(ast.parse(text)) or ""
                if REASON not in doc.lower():
                    long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not long, f"over {MAX_LINES} lines with no '{REASON} ...' in the docstring: {long}"
