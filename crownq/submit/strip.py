"""Shrink Python source before compression without changing what it does: drop comments, docstrings
and blank lines, one space per indentation level. Standard library only and deterministic, so every
machine counts the same code bytes (an external minifier would make the count depend on whether and
which version of it is installed).

Every result is checked: it must parse to the same syntax tree as the original minus its docstrings.
"""

from __future__ import annotations

import ast
import io
import tokenize

# Build tooling: a bundled run measures itself and never imports this (crownq/submit/closure.py).
BUNDLE_WHEN = 'never'


class StripError(ValueError):
    """The stripped text would not be the same program (never expected; the check is the guard)."""


def _docstring_nodes(tree: ast.AST) -> list[tuple[ast.Expr, bool]]:
    """(docstring statement, whether it is the only statement of its body)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0] if body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                found.append((first, len(body) == 1))
    return found


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for stmt, alone in _docstring_nodes(tree):
        # Replace in place: a body that was only a docstring becomes `pass`.
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and body[0] is stmt:
                node.body = [ast.Pass()] if alone else body[1:]
    return tree


def strip_source(source: str, name: str = "<source>") -> str:
    """`source` without comments, docstrings and blank lines, indented one space per level (string
    contents are never touched)."""
    tree = ast.parse(source, filename=name)
    lines = source.splitlines()
    drop: set[int] = set()  # 0-based line numbers to remove
    replace: dict[int, str] = {}
    for stmt, alone in _docstring_nodes(tree):
        start, end = stmt.lineno - 1, stmt.end_lineno - 1
        before = lines[start][: stmt.col_offset]
        after = lines[end][stmt.end_col_offset:]
        if before.strip() or after.strip().lstrip(";").strip() and not after.strip().startswith("#"):
            continue  # shares its line with code (`def f(): "doc"`): leave it, still correct
        drop.update(range(start, end + 1))
        if alone:
            replace[start] = before + "pass"
    # Lines a multi-line string (f-strings included) touches are kept byte for byte: trailing spaces
    # and "#" there belong to the string.
    protected: set[int] = set()
    first_lines: set[int] = set()  # where such a string starts: only the indentation may change
    for node in ast.walk(tree):
        if isinstance(node, (ast.Constant, ast.JoinedStr)) and node.end_lineno > node.lineno:
            protected.update(range(node.lineno, node.end_lineno))
            first_lines.add(node.lineno - 1)
    comments = {tok.start[0] - 1: tok.start[1]  # line -> column where its comment starts
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    out = []
    for i, line in enumerate(lines):
        if i in drop and i not in replace:
            continue
        if i in protected:
            out.append(line)
            continue
        line = replace.get(i, line)
        if i in comments and i not in first_lines:
            line = line[: comments[i]]
        if i not in first_lines:
            line = line.rstrip()
        indent = len(line) - len(line.lstrip(" "))
        if line.strip() and indent % 4 == 0:
            line = line[indent - indent // 4:]  # 4 spaces per level -> 1: same blocks, fewer bytes
        if line.strip():
            out.append(line)
    text = "\n".join(out) + "\n"
    _check_same_program(tree, text, name)
    return text


def _check_same_program(original: ast.Module, text: str, name: str) -> None:
    try:
        stripped = ast.parse(text, filename=name)
    except SyntaxError as exc:
        raise StripError(f"{name}: stripping comments/docstrings broke the syntax at line "
                         f"{exc.lineno}") from exc
    if ast.dump(_without_docstrings(original)) != ast.dump(stripped):
        raise StripError(f"{name}: the stripped source is not the same program as the original")
