"""The import closure of an entry module: every module of one package that running it can import.

Computed from the source (ast), never listed by hand, so a module added to the recipe is bundled the
moment something imports it. Conservative by design: imports inside functions count (the pipeline
imports its stages lazily), only `if TYPE_CHECKING:` blocks are skipped (they never run). Importing
`a.b.c` runs `a/__init__.py` and `a/b/__init__.py` first, so parent packages are always included.
Modules outside the package are reported by their top-level name (the requirements).

Configuration-specific closures: a module whose source assigns a string to `BUNDLE_WHEN` at top level
(e.g. `BUNDLE_WHEN = "cfg.eval.lora_ttt.enabled"`) is part of the closure for a configuration only when
that expression is true of it (`cfg` = the resolved configuration; "never" = build tooling that no
bundled run executes). An excluded module is left out with everything only it imports, and the
closure records why, so the bundle's importer can name the switch if the module is ever asked for. A
module that stays in must not import an excluded one at top level (that import would run whatever the
switch says): such a pair is a ClosureError at build time, so gating can only be done with lazy imports
on the path that the switch turns on.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Build tooling: a bundled run measures itself and never imports this.
BUNDLE_WHEN = "never"


class ClosureError(ValueError):
    """An import of the package that names no module file (a typo or a deleted module)."""


@dataclass(frozen=True)
class Closure:
    package: str
    modules: dict[str, Path]  # dotted name -> source file, sorted by name
    packages: frozenset[str]  # the names in `modules` that are packages (__init__.py)
    external: frozenset[str] = field(default_factory=frozenset)  # top-level third-party imports
    excluded: dict[str, str] = field(default_factory=dict)  # gated module -> its BUNDLE_WHEN (false here)


class _Attrs:
    """Attribute access over a nested mapping (`cfg.eval.lora_ttt.enabled`) for BUNDLE_WHEN."""

    def __init__(self, data, path: str = "cfg") -> None:
        self._data, self._path = data, path

    def __getattr__(self, key: str):
        if key.startswith("_") or not isinstance(self._data, dict) or key not in self._data:
            raise ClosureError(f"{self._path}.{key} is not in the configuration")
        value = self._data[key]
        return _Attrs(value, f"{self._path}.{key}") if isinstance(value, dict) else value


def bundle_condition(tree: ast.Module) -> str | None:
    """The module's top-level `BUNDLE_WHEN = "..."`, or None (always bundled)."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "BUNDLE_WHEN"):
            if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                raise ClosureError("BUNDLE_WHEN must be a string literal")
            return node.value.value
    return None


def condition_holds(condition: str, config: dict, module: str) -> bool:
    if condition == "never":
        return False
    try:
        return bool(eval(condition, {"__builtins__": {}}, {"cfg": _Attrs(config)}))  # noqa: S307 - own source
    except ClosureError as exc:
        raise ClosureError(f"{module}: BUNDLE_WHEN {condition!r}: {exc}") from None


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


def _imports(tree: ast.AST) -> list[tuple[str, int, list[str], bool]]:
    """(module, relative level, imported names, runs at import time) of every import that can run."""
    found: list[tuple[str, int, list[str], bool]] = []
    stack: list[tuple[ast.AST, bool]] = [(tree, True)]
    while stack:
        node, at_import = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((n, at_import) for n in node.orelse)  # the body only runs under a type checker
            continue
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0, [], at_import) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, [alias.name for alias in node.names], at_import))
        inside = at_import and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((child, inside) for child in ast.iter_child_nodes(node))
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


def import_closure(entry: str, root: Path, config: dict | None = None) -> Closure:
    """The modules of `entry`'s top-level package that running `entry` can import (entry included);
    with `config`, without the modules whose BUNDLE_WHEN is false for it."""
    package = entry.split(".")[0]
    stdlib = set(sys.stdlib_module_names)
    modules: dict[str, Path] = {}
    packages: set[str] = set()
    external: set[str] = set()
    excluded: dict[str, str] = {}
    eager: list[tuple[str, str]] = []  # (importer, imported) pairs that run at import time
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in modules or name in excluded:
            continue
        found = module_file(name, root)
        if found is None:
            raise ClosureError(f"module {name} is imported but {root / name.replace('.', '/')}"
                               "(.py or /__init__.py) does not exist")
        path, is_package = found
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        condition = bundle_condition(tree)
        if config is not None and condition is not None and not condition_holds(condition, config, name):
            excluded[name] = condition
            continue
        modules[name] = path
        if is_package:
            packages.add(name)
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        for module, level, names, at_import in _imports(tree):
            target = _absolute(module, level, name, is_package)
            top = target.split(".")[0]
            if top != package:
                if top and top not in stdlib:
                    external.add(top)
                continue
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            targets = [target] + [f"{target}.{n}" for n in names
                                  if n != "*" and module_file(f"{target}.{n}", root)]
            todo.extend(targets)
            if at_import:
                eager.extend((name, t) for t in targets)
    for importer, imported in eager:
        if importer in modules and imported in excluded:
            raise ClosureError(
                f"{importer} imports {imported} at import time, but {imported} is bundled only when "
                f"{excluded[imported]!r}, which is false for this configuration: import it inside the "
                "function that needs it")
    return Closure(package, dict(sorted(modules.items())), frozenset(packages), frozenset(external),
                   dict(sorted(excluded.items())))
