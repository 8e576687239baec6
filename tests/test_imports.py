"""The import graph of the house: no loop inside ``abaw/`` (function-level imports included),
recipes that import neither ``abaw.commands`` nor each other, an asset cache that knows
nothing of the LSD steps."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``path`` imports, at any depth of the file (functions
    included). ``from a.b import c`` counts as ``a.b.c`` when that is a module, else ``a.b``."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return {name for name in found if name in known}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_loop_and_only_a_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_function_level_imports_are_seen(tmp_path: Path) -> None:
    source = REPO / "abaw" / "_probe_for_test.py"
    try:
        source.write_text("def f():\n    from abaw.formats import readers\n    import abaw.vocab\n")
        known = set(_modules("abaw")) | {"abaw._probe_for_test"}
        assert imports_of(source, known) == {"abaw.formats.readers", "abaw.vocab"}
    finally:
        source.unlink()


def test_no_import_loop_in_the_package() -> None:
    modules = _modules("abaw")
    graph = {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}
    assert len(graph) > 50
    cycle = find_cycle(graph)
    assert cycle is None, "import loop: " + " -> ".join(cycle)


#: the evidence table (``make ablate``) is a table of the other tables: it reuses their rows
#: and run names, and imports exactly those table modules — never a recipe
TABLE_OF_TABLES = {"challenges.ablate": {"challenges.last_mile", "challenges.lsd_ablation",
                                         "challenges.mtl_baselines"}}


def test_recipes_import_neither_commands_nor_each_other() -> None:
    recipes = _modules("challenges")
    known = set(recipes) | set(_modules("abaw"))
    for name, path in recipes.items():
        imported = imports_of(path, known)
        assert not {m for m in imported if m.startswith("abaw.commands")}, name
        assert {m for m in imported if m.startswith("challenges")} == \
            TABLE_OF_TABLES.get(name, set()), name


def test_the_asset_cache_knows_nothing_of_the_lsd_steps() -> None:
    modules = _modules("abaw")
    imported = imports_of(modules["abaw.assets"], set(modules))
    assert not {m for m in imported if m.startswith("abaw.lsd")}
