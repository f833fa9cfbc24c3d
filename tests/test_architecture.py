"""The layering of docs/architecture.md, checked on the source: imports only point down.

Every ``import`` in ``genaug/`` and ``training/`` is read with ``ast`` (function-level imports
included, ``if TYPE_CHECKING:`` blocks excluded) and three rules are checked:

1. A package imports only from packages of a lower layer (or itself); nothing in the library
   except the CLI imports the ``training`` application, and ``training`` never imports the CLI.
2. No import cycle between modules (``from genaug.x import y`` inside ``genaug.x`` counts as
   an edge to ``genaug/x/__init__.py``: submodules import their siblings directly).
3. No import of another package's private (``_name``) module; ``training`` uses only public
   modules. ``genaug.io`` and ``genaug.exceptions`` belong to the root package, which every
   library package may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Lowest first. A package may import from its own layer's package and any earlier layer.
LAYERS = (
    ("genaug.io", "genaug._moved", "genaug.exceptions"),
    ("genaug.data",),
    ("genaug.classifier",),
    ("genaug.cache",),
    ("genaug.sources",),
    ("genaug.sampling",),
    # Deprecated names of cache and sampling, kept for one release (genaug._moved).
    ("genaug.synthetic", "genaug.balance"),
    ("genaug.loaders",),
    ("genaug.generation",),
    ("genaug.live",),
    ("genaug.evidence",),
    ("genaug.export",),
    ("training",),
    ("genaug.cli",),
)
RANK = {package: rank for rank, group in enumerate(LAYERS) for package in group}
ROOT_MODULES = {"genaug.io", "genaug._moved", "genaug.exceptions"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_of(module: str) -> str | None:
    """The layered package of a module: ``genaug.loaders._tfdata`` -> ``genaug.loaders``."""
    parts = module.split(".")
    for depth in (2, 1):
        if ".".join(parts[:depth]) in RANK:
            return ".".join(parts[:depth])
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> list[str]:
    """Every genaug/training module ``path`` imports; ``from a import b`` gives ``a.b`` when
    ``a.b`` is a module, else ``a``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    candidate = f"{child.module}.{alias.name}"
                    found.append(candidate if is_module(candidate) else child.module)
            visit(child)

    visit(tree)
    return [name for name in found if name.split(".")[0] in ("genaug", "training")]


def is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def source_files():
    for top in ("genaug", "training"):
        yield from sorted((ROOT / top).rglob("*.py"))


def graph():
    edges = {}
    for path in source_files():
        edges[module_name(path)] = (path, imports_of(path))
    return edges


def layer_violations(edges) -> list[str]:
    """One line per offending (file, imported module) pair, sorted."""
    out = set()
    for module, (path, imports) in edges.items():
        source = package_of(module)
        if source is None:
            continue
        for target in imports:
            target_package = package_of(target)
            if target_package is None or target_package == source:
                continue
            where = f"{path.relative_to(ROOT)} imports {target}"
            if RANK[target_package] > RANK[source]:
                out.add(f"upward: {where}")
            private = [p for p in target.split(".")[1:] if p.startswith("_")]
            if private and target not in ROOT_MODULES:
                out.add(f"private: {where}")
            elif private and source == "training":
                out.add(f"private: {where}")
    return sorted(out)


def cycles(edges) -> list[str]:
    """Strongly connected components with more than one module (Tarjan)."""
    adjacency = {m: sorted({t for t in imports if t in edges and t != m})
                 for m, (_, imports) in edges.items()}
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def connect(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in adjacency[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                out.append("cycle: " + " <-> ".join(sorted(component)))

    for node in sorted(adjacency):
        if node not in index:
            connect(node)
    return out


def test_every_package_has_a_layer():
    packages = sorted(".".join(p.parent.relative_to(ROOT).parts)
                      for p in (ROOT / "genaug").glob("*/__init__.py"))
    undeclared = [p for p in packages if p not in RANK]
    assert not undeclared, f"packages missing from LAYERS: {undeclared}"


def test_imports_point_down_without_cycles_or_private_reach():
    edges = graph()
    problems = sorted(set(layer_violations(edges) + cycles(edges)))
    assert not problems, "architecture violations:\n" + "\n".join(problems)


def test_checker_catches_each_kind_of_violation(tmp_path, monkeypatch):
    """The rules themselves: a tiny tree with one violation of each kind."""
    files = {
        "genaug/__init__.py": "",
        "genaug/data/__init__.py": "from genaug.loaders import thing\n",  # upward
        "genaug/loaders/__init__.py": "from genaug.loaders._a import thing\n",
        "genaug/loaders/_a.py": "from genaug.loaders._b import other\nthing = 1\n",
        "genaug/loaders/_b.py": "from genaug.loaders._a import thing\nother = 2\n",  # cycle
        "genaug/live/__init__.py": "from genaug.loaders._a import thing\n",  # private
        "training/__init__.py": "",
        "genaug/evidence/__init__.py": "import training\n",  # library imports the application
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    edges = graph()
    problems = layer_violations(edges) + cycles(edges)
    text = "\n".join(problems)
    assert "upward: genaug/data/__init__.py imports genaug.loaders" in text
    assert "upward: genaug/evidence/__init__.py imports training" in text
    assert "private: genaug/live/__init__.py imports genaug.loaders._a" in text
    assert "cycle: genaug.loaders._a <-> genaug.loaders._b" in text
