"""The import direction of docs/architecture.md, read from the source of every module: each
import (inside functions and ``if TYPE_CHECKING:`` blocks too) goes to the module's own package
or to a lower layer, ``memory`` reads no recipe and loads no model, and no two packages import
each other in a circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "peftkit"
MAP = ROOT / "docs" / "architecture.md"
TOP = "peftkit"
"""The root's entry points (``__init__``, ``__main__``, ``cli``, ``testing``) as one package."""


def layers() -> dict[str, int]:
    """Each package's layer, from the table of docs/architecture.md."""
    found = {}
    for number, packages in re.findall(r"^\| (\d+) \| ([^|]+) \|", MAP.read_text(), re.M):
        for name in re.findall(r"`([\w.]+)`", packages):
            found[name] = int(number)
    return found


def package_of(module: str) -> str:
    """``peftkit.recipes.rules`` is in ``recipes``; the root's modules are in ``peftkit``."""
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return TOP


def imports(path: Path) -> list[tuple[int, str]]:
    """Every peftkit module the file ``path`` imports, with its line."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imports_of(path.read_text(encoding="utf-8"), here)


def imports_of(source: str, here: str) -> list[tuple[int, str]]:
    """Every peftkit module ``source`` (a module of the package ``here``) imports, with its
    line: at the top, in functions, under ``if TYPE_CHECKING:``; ``from peftkit import
    recipes`` is an import of ``peftkit.recipes``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            for alias in node.names:
                named = f"{base}.{alias.name}"
                is_module = (ROOT / named.replace(".", "/")).is_dir() or (
                    ROOT / f"{named.replace('.', '/')}.py"
                ).is_file()
                found.append((node.lineno, named if is_module else base))
    return [(line, name) for line, name in found if name == TOP or name.startswith(f"{TOP}.")]


def edges() -> list[tuple[str, str, str]]:
    """(importing package, imported package, where) for every import across packages."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for line, name in imports(path):
            if package_of(module) != package_of(name):
                where = f"{path.relative_to(ROOT)}:{line} imports {name}"
                found.append((package_of(module), package_of(name), where))
    return found


def test_the_map_places_every_package():
    """A new folder of peftkit gets a layer in the map before it gets code."""
    placed = layers()
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders | {TOP} == set(placed), sorted(folders ^ (set(placed) - {TOP}))
    assert placed[TOP] == max(placed.values()) and placed["core"] == min(placed.values())


def test_the_scan_sees_imports_in_functions_and_for_type_checkers_only():
    """The premises: the imports that break a layering most easily are seen, and the scan
    finds the imports of the real code."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from peftkit.recipes.base import Recipe\n"
        "def shape():\n"
        "    from peftkit import data\n"
        "    from .shapes import ModelShape\n"
        "    import peftkit.run.loading\n"
    )
    found = sorted(name for _, name in imports_of(source, "peftkit.memory"))
    expected = ["peftkit.data", "peftkit.memory.shapes", "peftkit.recipes.base"]
    assert found == [*expected, "peftkit.run.loading"]
    assert ("recipes", "memory") in {(p, n) for p, n, _ in edges()}  # recipes/base.py


def test_no_package_imports_a_higher_layer_or_its_own():
    """Downward only: a package of layer n imports packages of layers below n."""
    placed = layers()
    wrong = [
        f"{where} (layer {placed[importer]} -> {placed[imported]})"
        for importer, imported, where in edges()
        if placed[imported] >= placed[importer]
    ]
    assert not wrong, "\n".join(wrong)


def test_memory_reads_no_recipe_and_loads_no_model():
    found = [
        where
        for importer, imported, where in edges()
        if importer == "memory" and (imported == "recipes" or "peftkit.run.loading" in where)
    ]
    assert not found, found


@pytest.mark.parametrize("start", sorted(layers()))
def test_no_circle_of_packages(start: str):
    """No package reaches itself again by following imports across packages."""
    graph: dict[str, set[str]] = {}
    for importer, imported, _ in edges():
        graph.setdefault(importer, set()).add(imported)
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        package = todo.pop()
        assert package != start, f"{start} imports itself through {sorted(seen)}"
        if package not in seen:
            seen.add(package)
            todo.extend(graph.get(package, ()))


def test_no_package_binds_a_name_over_its_own_module():
    """``import peftkit.memory.plan as m`` once gave the function ``plan``: a name a package
    binds is never one of its submodules, so a name found by grep is the one meant."""
    clashes = []
    for init in PACKAGE.rglob("__init__.py"):
        folder = init.parent
        modules = {p.stem for p in folder.glob("*.py")} | {
            p.name for p in folder.iterdir() if (p / "__init__.py").is_file()
        }
        bound = set()
        for node in ast.parse(init.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom | ast.Import):
                bound |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                bound.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                bound |= {t.id for t in targets if isinstance(t, ast.Name)}
        clashes += [f"{init.relative_to(ROOT)}: {name}" for name in sorted(bound & modules)]
    assert not clashes, clashes
