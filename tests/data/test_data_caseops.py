"""The CaseOps transform: the spec's worked examples, exact inversion on arbitrary Unicode (operator
characters included) and on every embedded-corpus document, and the original-byte counts."""

from __future__ import annotations

import random

import pytest

from crownq.data import caseops, corpus
from crownq.data.caseops import ALLCAPS, CAPNEXT, ESC, TITLE

# Letters of both cases, the operators themselves, non-ASCII letters whose case must not be touched
# (including ones whose upper/lower forms differ in length), digits, spaces, newlines, an emoji.
ALPHABET = list("aAbBzZqQ09 _-'\n\t") + list(caseops.OPERATORS) + list("éÉßİıǅﬃ▁\u2581😀中")


def _random_text(rng: random.Random) -> str:
    length = rng.randrange(0, 40)
    if rng.random() < 0.2:  # any code point at all (surrogates excluded: not encodable text)
        return "".join(chr(rng.choice([rng.randrange(0x20, 0xD800), rng.randrange(0xE000, 0x110000)]))
                       for _ in range(length))
    return "".join(rng.choice(ALPHABET) for _ in range(length))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The NASA Launch", f"{TITLE}the {ALLCAPS}nasa {TITLE}launch"),
        ("iPhone OpenAI", f"i{CAPNEXT}phone {TITLE}open{CAPNEXT}a{CAPNEXT}i"),
        # A literal operator in the input is escaped, ESC itself included.
        (f"a{TITLE}b {ESC}", f"a{ESC}{TITLE}b {ESC}{ESC}"),
        ("A I x", f"{TITLE}a {TITLE}i x"),  # one capital letter is TitleCase, not ALLCAPS
        ("ABc aB", f"{TITLE}a{CAPNEXT}bc a{CAPNEXT}b"),
        # Non-ASCII letters are untouched and end an ASCII letter run ("É" + "COLE").
        ("NASA's café ÉCOLE 42", f"{ALLCAPS}nasa's café É{ALLCAPS}cole 42"),
    ],
)
def test_worked_examples(text, expected):
    assert caseops.encode(text) == expected
    assert caseops.decode(expected) == text


def test_original_byte_counts_of_the_worked_examples():
    encoded = caseops.encode("The NASA Launch")
    counts = caseops.original_byte_counts(encoded)
    assert [c for ch, c in zip(encoded, counts) if ch in caseops.OPERATORS] == [0, 0, 0]
    assert sum(counts) == 15
    escaped = caseops.encode(f"x{ALLCAPS}é")  # x ESC ALLCAPS é: the escaped operator counts its 3 bytes
    assert caseops.original_byte_counts(escaped) == [1, 0, 3, 2]


def _check_round_trip(text: str) -> None:
    encoded = caseops.encode(text)
    assert caseops.decode(encoded) == text
    assert sum(caseops.original_byte_counts(encoded)) == len(text.encode("utf-8"))
    # Outside literal operators (which stay, escaped) no ASCII capital survives the transform.
    assert not any("A" <= ch <= "Z" for ch in encoded)


def test_round_trip_seeded_random_unicode():
    rng = random.Random(20260427)
    for _ in range(3000):
        _check_round_trip(_random_text(rng))


def test_round_trip_hypothesis():
    hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (seeded test runs)")
    strategies = pytest.importorskip("hypothesis.strategies")

    mixed = strategies.text(alphabet=strategies.sampled_from(ALPHABET), max_size=60)
    anything = strategies.text(alphabet=strategies.characters(blacklist_categories=("Cs",)), max_size=60)

    @hypothesis.settings(max_examples=400, deadline=None, database=None)
    @hypothesis.given(strategies.one_of(mixed, anything))
    def check(text):
        _check_round_trip(text)

    check()


def test_decode_is_not_the_identity():
    # Guards the round-trip tests: a transform that changed nothing would pass them.
    assert caseops.encode("Hello") != "Hello" and caseops.decode(f"{TITLE}hello") == "Hello"


def test_round_trip_on_every_embedded_document():
    documents = corpus.gather_documents(2_000_000)
    changed = 0
    for document in documents:
        encoded = caseops.encode(document.text)
        assert caseops.decode(encoded) == document.text, document.doc_id
        assert sum(caseops.original_byte_counts(encoded)) == len(document.text.encode("utf-8"))
        changed += encoded != document.text
    assert len(documents) > 400 and changed > 0.9 * len(documents)
