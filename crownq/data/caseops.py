"""CaseOps (`lossless_caps_caseops_v1`): a lossless rewrite of letter case into operator characters.

Capital letters double the vocabulary a tokenizer needs ("the", "The", "THE"); CaseOps lowercases
every maximal run of ASCII letters and records the case with four private-use characters, which the
tokenizer keeps as pieces of their own:

- an all-lowercase run is unchanged;
- a TitleCase run (first letter upper, the rest lower) becomes TITLE + the lowercase run;
- an all-uppercase run of >= 2 letters becomes ALLCAPS + the lowercase run;
- any other run: TITLE if its first letter is upper, then the lowercase letters with CAPNEXT before
  each later uppercase letter;
- a literal operator character in the input becomes ESC + that character.

Everything else (digits, punctuation, non-ASCII letters) passes through. `decode` inverts `encode`
exactly for every string. `original_byte_counts` walks a transformed text the way `decode` does and
says how many bytes of the original UTF-8 text each character stands for: the sidecar's rule.
"""

from __future__ import annotations

TITLE = "\ue001"
ALLCAPS = "\ue002"
CAPNEXT = "\ue003"
ESC = "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)
_OPERATOR_SET = frozenset(OPERATORS)

__all__ = [
    "ALLCAPS", "CAPNEXT", "ESC", "OPERATORS", "TITLE", "ByteCounter", "decode", "encode",
    "original_byte_counts",
]


def _is_ascii_letter(char: str) -> bool:
    return ("a" <= char <= "z") or ("A" <= char <= "Z")


def _encode_run(run: str) -> str:
    if run.islower():
        return run
    lower = run.lower()
    if run[0].isupper() and (len(run) == 1 or run[1:].islower()):
        return TITLE + lower
    if len(run) >= 2 and run.isupper():
        return ALLCAPS + lower
    parts = [TITLE, run[0].lower()] if run[0].isupper() else [run[0]]
    for char in run[1:]:
        parts.append(CAPNEXT + char.lower() if char.isupper() else char)
    return "".join(parts)


def encode(text: str) -> str:
    """The CaseOps form of `text` (lossless: `decode(encode(text)) == text`)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if _is_ascii_letter(char):
            j = i + 1
            while j < n and _is_ascii_letter(text[j]):
                j += 1
            out.append(_encode_run(text[i:j]))
            i = j
            continue
        out.append(ESC + char if char in _OPERATOR_SET else char)
        i += 1
    return "".join(out)


def decode(text: str) -> str:
    """Invert `encode`: apply every operator to the letters after it and drop the operators."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == ESC:
            if i + 1 < n:  # a dangling ESC at the very end (never produced by encode) is dropped
                out.append(text[i + 1])
            i += 2
        elif char == ALLCAPS:
            # Uppercase the whole run of letters that follows (encode ends it at a non-letter).
            j = i + 1
            while j < n and _is_ascii_letter(text[j]):
                j += 1
            out.append(text[i + 1 : j].upper())
            i = j
        elif char in (TITLE, CAPNEXT):
            # Uppercase the next character only; the rest of the run carries its own CAPNEXTs.
            if i + 1 < n:
                out.append(text[i + 1].upper())
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


class ByteCounter:
    """Original-text bytes of transformed characters, fed in order (state carries across calls).

    Operators count 0; the character after an ESC counts its own UTF-8 length whatever it is; any
    other character counts its UTF-8 length (so an ASCII letter counts 1 in either case). The state
    is the pending escape, so a document can be fed one token's text at a time.
    """

    def __init__(self) -> None:
        self.escaped = False

    def count(self, text: str) -> int:
        total = 0
        for char in text:
            if self.escaped:
                total += len(char.encode("utf-8"))
                self.escaped = False
            elif char in _OPERATOR_SET:
                self.escaped = char == ESC
            else:
                total += len(char.encode("utf-8"))
        return total

    def count_raw_bytes(self, n: int) -> int:
        """`n` bytes that are not an operator (byte-fallback pieces): each counts 1."""
        if n:
            self.escaped = False
        return n

    def reset(self) -> None:
        self.escaped = False


def original_byte_counts(transformed: str) -> list[int]:
    """Per character of a transformed text: how many bytes of the original it stands for."""
    counter = ByteCounter()
    return [counter.count(char) for char in transformed]
