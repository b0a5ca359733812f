"""One configuration -> one self-contained `train_gpt.py`: crownq's modules (exactly the import closure
of the recipe's entry, crownq.submit.runtime, for this configuration: modules gated off by BUNDLE_WHEN
are left out and named) as strings served by a meta-path importer, the resolved configuration frozen
as JSON, and a two-line main. Its size is the run's code bytes (crownq.quant.budget).

Modes (`quantizer.code_bytes_mode`):
- raw: the file as rendered, comments and docstrings included (the record counted raw code);
- compressed: comments/docstrings/blank lines dropped (crownq.submit.strip), then the smaller of
  lzma and brotli, base85, in a two-line self-extracting wrapper (how later records counted code).

Rendering is deterministic: the same sources and configuration give the same bytes on every machine.
Standard library only (brotli when present), so the budget can use it without importing the stack.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from crownq.submit.closure import Closure, import_closure
from crownq.submit.strip import strip_source
from crownq.submit.wrapper import wrap

# Build tooling: a bundled run measures itself and never imports this (crownq/submit/closure.py).
BUNDLE_WHEN = 'never'

ENTRY = "crownq.submit.runtime"
MODES = ("raw", "compressed")
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding crownq/
_FINDER = '''
class _Bundle(_a.MetaPathFinder, _a.Loader):
    """Imports crownq.* from _M only: a module missing from the bundle fails, never falls back."""
    crownq_bundle = True
    def __init__(self, mode, script, text):
        self.mode, self.script, self.text = mode, script, text
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] != "crownq":
            return None
        if name in _X:
            raise ModuleNotFoundError(f"{name} is not in this bundle: it is bundled only when {_X[name]}, "
                                      "which is false for the frozen configuration", name=name)
        if name not in _M:
            raise ModuleNotFoundError(f"{name} is not in this bundle", name=name)
        return _u.spec_from_loader(name, self, origin="bundle", is_package=name in _P)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        name = module.__name__
        file = "<bundle>/" + name.replace(".", "/") + ("/__init__.py" if name in _P else ".py")
        module.__file__ = file
        _l.cache[file] = (len(_M[name]), None, _M[name].splitlines(True), file)
        exec(compile(_M[name], file, "exec"), module.__dict__)
'''


class BundleError(ValueError):
    """A bundle cannot be built for this configuration (bad mode, unrepresentable source)."""


@dataclass(frozen=True)
class Bundle:
    mode: str
    program: bytes  # the Python program (raw mode: the file itself)
    file: bytes  # what ships as train_gpt.py and is counted
    modules: tuple[str, ...]
    external: frozenset[str]

    @property
    def size(self) -> int:
        return len(self.file)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.file).hexdigest()


def _literal(text: str) -> str:
    """`text` as a triple-quoted literal that evaluates to exactly `text` and stays readable."""
    if "\r" in text or "\0" in text:
        raise BundleError("source holds a carriage return or NUL byte, which a bundled literal cannot keep")
    body = text.replace("\\", "\\\\").replace('"""', '""\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    return '"""\\\n' + body + '"""'


def render(sources: dict[str, str], packages: frozenset[str], config: dict, mode: str,
           excluded: dict[str, str] | None = None) -> str:
    """The bundle program: header, module table, frozen config, importer, main. `excluded`: the
    configuration-gated modules left out, with their conditions (named if one is asked for)."""
    lines = [
        f'"""crownq submission ({mode} bundle): train, calibrate, export, reload and score one',
        "configuration. Run: SEED=1337 torchrun --standalone --nproc_per_node=8 train_gpt.py",
        '(1 CPU process: python train_gpt.py). Data: DATA_PATH / TOKENIZER_PATH or ./data/."""',
        "import importlib.abc as _a, importlib.util as _u, json as _j, linecache as _l, sys as _s",
        f"_P = {sorted(packages)!r}",
        f"_X = {dict(sorted((excluded or {}).items()))!r}",
        "_M = {}",
    ]
    for name in sorted(sources):
        lines.append(f"_M[{name!r}] = {_literal(sources[name])}")
    config_text = json.dumps(config, indent=1, sort_keys=True, allow_nan=False)
    lines.append(f"CONFIG = _j.loads({_literal(config_text)})")
    lines.append(_FINDER.strip("\n"))
    lines.append('_s.meta_path.insert(0, _Bundle(CONFIG["quantizer"]["code_bytes_mode"], __file__, '
                 'globals().get("_SRC")))')
    lines.append('if __name__ == "__main__":')
    lines.append(f"    from {ENTRY} import main")
    lines.append("    main(CONFIG)")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=16)
def _closure(stamp: tuple, config_json: str | None = None) -> Closure:
    return import_closure(ENTRY, PACKAGE_PARENT, None if config_json is None else json.loads(config_json))


def _stamp() -> tuple:
    """(path, mtime, size) of every package source: the closure is recomputed only when one changes."""
    root = PACKAGE_PARENT / "crownq"
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*.py")))


def build_bundle(config: dict, mode: str) -> Bundle:
    """The bundle of this package's current source for a resolved configuration (crownq.results
    digest_payload: no seed, logger, launcher or machine-local paths)."""
    if mode not in MODES:
        raise BundleError(f"quantizer.code_bytes_mode={mode!r}: expected one of {', '.join(MODES)}")
    return _build(json.dumps(config, sort_keys=True), mode, _stamp())


@lru_cache(maxsize=16)
def _build(config_json: str, mode: str, stamp: tuple) -> Bundle:
    closure = _closure(stamp, config_json)
    sources = {name: path.read_text(encoding="utf-8") for name, path in closure.modules.items()}
    if mode == "compressed":
        sources = {name: strip_source(text, str(closure.modules[name])) for name, text in sources.items()}
    program = render(sources, closure.packages, json.loads(config_json), mode, closure.excluded)
    _check_table(program, sources)
    program = program.encode("utf-8")
    file = program if mode == "raw" else wrap(program)
    return Bundle(mode, program, file, tuple(closure.modules), closure.external)


def _check_table(program: str, sources: dict[str, str]) -> None:
    """The module table must hold exactly the sources, byte for byte (guards the literal escaping)."""
    table = {}
    for node in ast.parse(program).body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)
                and isinstance(node.targets[0].value, ast.Name) and node.targets[0].value.id == "_M"):
            table[ast.literal_eval(node.targets[0].slice)] = ast.literal_eval(node.value)
    if table != sources:
        wrong = sorted(k for k in set(table) | set(sources) if table.get(k) != sources.get(k))
        raise BundleError(f"bundle module table differs from the sources for {wrong[:5]}")
