"""Real English prose that ships with every CPython install, gathered deterministically.

Sources, in this fixed order: the pydoc topic pages (`pydoc_data/topics.py`: the language reference
text behind `help()`), the docstrings of the standard-library modules (module, class and function
docstrings, read by parsing the source files with `ast`, never by importing them, so no module side
effects run), the prose text files (LICENSE.txt, idlelib's README/NEWS), and last, only if still
short of the requested size, the docstrings of the test suite (absent from some distro builds).
Files are visited in sorted order and duplicate documents are dropped, so the same Python
installation always gives the same documents.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.data.source == "embedded"'

# Folders of the stdlib that hold tests, vendored or generated code rather than documentation.
_TEST_PARTS = {"test", "tests", "idle_test"}
_SKIPPED_PARTS = {"site-packages", "dist-packages", "lib2to3", "__pycache__"}
# Docstrings shorter than this are mostly one-liners ("Return self.") that add little prose.
MIN_DOCSTRING_CHARS = 40
# A module document needs some substance to be worth a BOS of its own.
MIN_DOCUMENT_CHARS = 200


@dataclass(frozen=True)
class Document:
    doc_id: str  # stable name: "topic:<name>" or "module:<relative path>"
    text: str


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _topics_file(stdlib: Path) -> Path:
    return stdlib / "pydoc_data" / "topics.py"


def stdlib_source_files(stdlib: Path | None = None, tests: bool = False) -> list[Path]:
    """The .py files whose docstrings are used (library or test-suite ones), in sorted order."""
    stdlib = stdlib or stdlib_dir()
    files = []
    # os.walk with pruning: site-packages (torch & co.) is far larger than the stdlib itself.
    for folder, subfolders, names in os.walk(stdlib):
        pruned = _SKIPPED_PARTS if tests else _SKIPPED_PARTS | _TEST_PARTS
        subfolders[:] = [name for name in subfolders if name not in pruned]
        in_test_suite = bool(_TEST_PARTS.intersection(Path(folder).relative_to(stdlib).parts))
        if in_test_suite == tests:
            files.extend(Path(folder) / name for name in names if name.endswith(".py"))
    topics = _topics_file(stdlib)
    return sorted((p for p in files if p != topics), key=lambda p: p.relative_to(stdlib).as_posix())


def prose_text_files(stdlib: Path | None = None) -> list[Path]:
    stdlib = stdlib or stdlib_dir()
    files = [stdlib / "LICENSE.txt", *(stdlib / "idlelib").glob("*.txt")]
    return sorted((p for p in files if p.is_file()), key=lambda p: p.relative_to(stdlib).as_posix())


def source_fingerprint(stdlib: Path | None = None) -> str:
    """Cheap digest of every input file (path, size, mtime): changes when the sources change."""
    stdlib = stdlib or stdlib_dir()
    digest = hashlib.sha256()
    inputs = [_topics_file(stdlib), *stdlib_source_files(stdlib), *prose_text_files(stdlib)]
    for path in inputs + stdlib_source_files(stdlib, tests=True):
        if path.exists():
            stat = path.stat()
            digest.update(
                f"{path.relative_to(stdlib).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()


def _topic_documents(stdlib: Path) -> Iterator[Document]:
    topics_file = _topics_file(stdlib)
    if not topics_file.exists():
        return
    # topics.py is a single dict literal: evaluate it as a literal instead of importing it.
    tree = ast.parse(topics_file.read_bytes(), filename=str(topics_file))
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            topics = ast.literal_eval(node.value)
            for name in sorted(topics):
                yield Document(f"topic:{name}", topics[name].strip())


def _module_document(path: Path, stdlib: Path) -> Document | None:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return None  # a stdlib file this interpreter cannot parse holds no usable prose
    parts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node)
            if docstring and len(docstring) >= MIN_DOCSTRING_CHARS:
                parts.append(docstring.strip())
    text = "\n\n".join(dict.fromkeys(parts))  # drop repeats inside a module, keep the order
    if len(text) < MIN_DOCUMENT_CHARS:
        return None
    return Document(f"module:{path.relative_to(stdlib).as_posix()}", text)


def iter_documents(stdlib: Path | None = None) -> Iterator[Document]:
    """Every document in the fixed order (topics first), without duplicates."""
    stdlib = stdlib or stdlib_dir()
    seen: set[str] = set()
    for document in _topic_documents(stdlib):
        if document.text and document.text not in seen:
            seen.add(document.text)
            yield document
    for document in _docstring_and_text_documents(stdlib):
        if document.text not in seen:
            seen.add(document.text)
            yield document


def _docstring_and_text_documents(stdlib: Path) -> Iterator[Document]:
    for path in stdlib_source_files(stdlib):
        document = _module_document(path, stdlib)
        if document is not None:
            yield document
    for path in prose_text_files(stdlib):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if len(text) >= MIN_DOCUMENT_CHARS:
            yield Document(f"text:{path.relative_to(stdlib).as_posix()}", text)
    for path in stdlib_source_files(stdlib, tests=True):
        document = _module_document(path, stdlib)
        if document is not None:
            yield document


def gather_documents(min_bytes: int, stdlib: Path | None = None) -> list[Document]:
    """Documents in order until at least `min_bytes` of UTF-8 text; error if the install has less."""
    documents: list[Document] = []
    total = 0
    for document in iter_documents(stdlib):
        documents.append(document)
        total += len(document.text.encode("utf-8"))
        if total >= min_bytes:
            return documents
    raise RuntimeError(
        f"the Python installation at {stdlib or stdlib_dir()} ships only {total} bytes of documentation "
        f"text: expected at least min_corpus_bytes={min_bytes} (lower data.min_corpus_bytes)"
    )
