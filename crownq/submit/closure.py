"""The import closure of an entry module: every module of one package that running it can import.

Computed from the source (ast), never listed by hand, so a module added to the recipe is bundled the
moment something imports it. Conservative by design: imports inside functions count (the pipeline
imports its stages lazily), only `if TYPE_CHECKING:` blocks are skipped (they never run). Importing
`a.b.c` runs `a/__init__.py` and `a/b/__init__.py` first, so parent packages are always included.
Modules outside the package are reported by their top-level name (the requirements).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path


class ClosureError(ValueError):
    """An import of the package that names no module file (a typo or a deleted module)."""


@dataclass(frozen=True)
class Closure:
    package: str
    modules: dict[str, Path]  # dotted name -> source file, sorted by name
    packages: frozenset[str]  # the names in `modules` that are packages (__init__.py)
    external: frozenset[str] = field(default_factory=frozenset)  # top-level third-party imports


def module_file(name: str, root: Path) -> tuple[Path, bool] | None:
    """(source file, is_package) of dotted `name` under `root` (the folder holding the package)."""
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[str, int, list[str]]]:
    """(module, relative level, imported names) of every import statement that can run."""
    found: list[tuple[str, int, list[str]]] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the body only runs under a type checker
            continue
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, [alias.name for alias in node.names]))
        stack.extend(ast.iter_child_nodes(node))
    return found


def _absolute(module: str, level: int, importer: str, importer_is_package: bool) -> str:
    if level == 0:
        return module
    parts = importer.split(".")
    base = parts if importer_is_package else parts[:-1]
    if level - 1 > len(base) - 1:
        raise ClosureError(f"{importer}: relative import of level {level} goes above the package")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_closure(entry: str, root: Path) -> Closure:
    """The modules of `entry`'s top-level package that running `entry` can import (entry included)."""
    package = entry.split(".")[0]
    stdlib = set(sys.stdlib_module_names)
    modules: dict[str, Path] = {}
    packages: set[str] = set()
    external: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in modules:
            continue
        found = module_file(name, root)
        if found is None:
            raise ClosureError(f"module {name} is imported but {root / name.replace('.', '/')}"
                               "(.py or /__init__.py) does not exist")
        path, is_package = found
        modules[name] = path
        if is_package:
            packages.add(name)
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for module, level, names in _imports(tree):
            target = _absolute(module, level, name, is_package)
            top = target.split(".")[0]
            if top != package:
                if top and top not in stdlib:
                    external.add(top)
                continue
            todo.append(target)
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            todo.extend(f"{target}.{n}" for n in names if n != "*" and module_file(f"{target}.{n}", root))
    return Closure(package, dict(sorted(modules.items())), frozenset(packages), frozenset(external))
