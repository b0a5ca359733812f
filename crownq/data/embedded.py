"""The embedded dataset: CPython's own documentation, tokenized into official-format shards.

Built on first use so the default run needs no download: gather documents (corpus.py), hold out a
validation split by document, train a sentencepiece BPE tokenizer on the train documents with the
challenge's options, and write `train_*.bin` / `val_*.bin` shards (BOS before every document, no
EOS). The result is cached in a folder keyed by a hash of every input and option and rebuilt only
when one changes. The build happens in a temporary folder renamed into place, so an interrupted or
concurrent build never leaves a half-written dataset behind.

With `caseops`, every document goes through the CaseOps transform (caseops.py) before the tokenizer
is trained and applied, the four operators are reserved as pieces (ids 4-7, as in the published
CaseOps tokenizer), and each validation shard gets its byte sidecar (sidecar.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from crownq.data import caseops, corpus
from crownq.data.shards import read_shard_header, write_shard
from crownq.data.sidecar import PieceTable, sidecar_name, stream_byte_counts, write_sidecar

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.data.source == "embedded"'

# Bump when the builder's output for the same inputs changes (invalidates every cache folder).
BUILDER_VERSION = 1
BOS_ID = 1
META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.model"
# Trainer options of the challenge's tokenizer script (see docs/data.md). byte_fallback=True makes
# the byte accounting exact on this corpus. num_threads is pinned: sentencepiece's BPE trainer gives
# a different model for a different thread count, and the build must not depend on the machine.
SENTENCEPIECE_OPTIONS = {
    "model_type": "bpe",
    "character_coverage": 0.999,
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": 0,
    "bos_id": BOS_ID,
    "eos_id": 2,
    "unk_id": 3,
    "hard_vocab_limit": False,
    "num_threads": 1,
}
# 256 byte pieces + 4 special ids leave room for merges only above this.
MIN_VOCAB_SIZE = 300


@dataclass(frozen=True)
class EmbeddedOptions:
    vocab_size: int = 1024
    min_corpus_bytes: int = 2_000_000
    val_fraction: float = 0.1
    shard_tokens: int = 250_000
    caseops: bool = False  # CaseOps-transform the text and write the validation byte sidecar

    def validate(self) -> None:
        if not MIN_VOCAB_SIZE <= self.vocab_size <= 65536:
            raise ValueError(
                f"embedded data: vocab_size must lie in [{MIN_VOCAB_SIZE}, 65536] (256 byte pieces + 4 "
                f"special ids + merges, uint16 shards), got {self.vocab_size}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"embedded data: val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.min_corpus_bytes <= 0 or self.shard_tokens <= 0:
            raise ValueError(
                f"embedded data: min_corpus_bytes ({self.min_corpus_bytes}) and shard_tokens "
                f"({self.shard_tokens}) must be positive"
            )


def default_data_dir() -> Path:
    """User data folder: $CROWNQ_DATA_DIR, else ~/.cache/crownq."""
    configured = os.environ.get("CROWNQ_DATA_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "crownq"


def build_key(options: EmbeddedOptions) -> str:
    """Hash of everything the build output depends on: sources, options, tool versions."""
    import sentencepiece

    inputs = {
        "builder_version": BUILDER_VERSION,
        "python": platform.python_version(),
        "sources": corpus.source_fingerprint(),
        "sentencepiece": sentencepiece.__version__,
        "numpy_endianness": sys.byteorder,
        "options": _key_options(options),
        "sentencepiece_options": SENTENCEPIECE_OPTIONS,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _key_options(options: EmbeddedOptions) -> dict:
    # caseops enters the key only when on, so the builds made before it existed stay valid.
    found = asdict(options)
    if not options.caseops:
        del found["caseops"]
    return found


def default_output_dir(options: EmbeddedOptions, key: str) -> Path:
    kind = f"sp{options.vocab_size}-caseops" if options.caseops else f"sp{options.vocab_size}"
    return default_data_dir() / "embedded" / f"{kind}-{key[:16]}"


def is_valid_build(folder: Path, key: str) -> bool:
    """A finished build with this key whose listed files all exist with valid shard headers."""
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key or not (folder / TOKENIZER_FILE).is_file():
            return False
        for name, count in meta["shards"].items():
            if read_shard_header(folder / name) != count:
                return False
    except (ValueError, KeyError, OSError):
        return False
    return True


def is_validation_document(doc_id: str, val_fraction: float) -> bool:
    # A hash of the document's name, not its position, so adding a source file moves no other document.
    bucket = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2.0**64
    return bucket < val_fraction


def split_documents(
    documents: list[corpus.Document], val_fraction: float
) -> tuple[list[corpus.Document], list[corpus.Document]]:
    train = [d for d in documents if not is_validation_document(d.doc_id, val_fraction)]
    val = [d for d in documents if is_validation_document(d.doc_id, val_fraction)]
    if len(documents) < 2:
        raise ValueError(
            f"embedded data: need at least 2 documents for a train/val split, got {len(documents)}"
        )
    if not val or not train:
        # Tiny corpora (tests): still hold out one whole document.
        documents_by_hash = sorted(documents, key=lambda d: hashlib.sha256(d.doc_id.encode()).digest())
        val = documents_by_hash[:1]
        train = [d for d in documents if d is not val[0]]
    return train, val


def train_tokenizer(train_documents: list[corpus.Document], vocab_size: int,
                    caseops_on: bool = False) -> bytes:
    import sentencepiece as spm

    # The trainer treats each line as a sentence (it never learns a piece across a newline).
    lines = [line for d in train_documents for line in d.text.split("\n") if line.strip()]
    # CaseOps: the operators are whole pieces right after the special ids (4-7), never merged.
    reserved = {"user_defined_symbols": list(caseops.OPERATORS)} if caseops_on else {}
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        minloglevel=2,
        **SENTENCEPIECE_OPTIONS,
        **reserved,
    )
    return model.getvalue()


def _write_split(folder: Path, prefix: str, token_ids: list[list[int]], shard_tokens: int,
                 pieces: PieceTable | None = None) -> dict[str, int]:
    """Concatenate BOS + tokens of every document and cut the stream into shards; with `pieces`,
    write each shard's byte sidecar too."""
    lengths = [len(ids) + 1 for ids in token_ids]
    stream = np.empty(sum(lengths), dtype=np.uint16)
    position = 0
    for ids in token_ids:
        stream[position] = BOS_ID
        stream[position + 1 : position + 1 + len(ids)] = ids
        position += len(ids) + 1
    counts = stream_byte_counts(stream, pieces) if pieces is not None else None
    shards = {}
    for index, start in enumerate(range(0, len(stream), shard_tokens)):
        name = f"{prefix}_{index:06d}.bin"
        chunk = stream[start : start + shard_tokens]
        write_shard(folder / name, chunk)
        shards[name] = len(chunk)
        if counts is not None:
            write_sidecar(folder / sidecar_name(name), counts[start : start + shard_tokens])
            shards[sidecar_name(name)] = len(chunk)
    return shards


def _build_into(folder: Path, options: EmbeddedOptions, key: str, progress: bool) -> None:
    import sentencepiece as spm

    started = time.perf_counter()
    log = (
        (lambda msg: tqdm.write(f"[crownq-data] {msg}", file=sys.stderr)) if progress else (lambda msg: None)
    )
    with tqdm(total=4, desc="embedded corpus", unit="stage", disable=not progress, file=sys.stderr) as bar:
        bar.set_postfix_str("gathering CPython documentation")
        documents = corpus.gather_documents(options.min_corpus_bytes)
        train_docs, val_docs = split_documents(documents, options.val_fraction)
        original_train = train_docs
        text_bytes = sum(len(d.text.encode("utf-8")) for d in documents)
        log(f"{len(documents)} documents, {text_bytes:,} bytes ({len(val_docs)} held out for validation)")
        bar.update()
        if options.caseops:
            train_docs = [corpus.Document(d.doc_id, caseops.encode(d.text)) for d in train_docs]
        bar.set_postfix_str(f"training BPE tokenizer (vocab {options.vocab_size})")
        model_bytes = train_tokenizer(train_docs, options.vocab_size, options.caseops)
        (folder / TOKENIZER_FILE).write_bytes(model_bytes)
        processor = spm.SentencePieceProcessor(model_proto=model_bytes)
        bar.update()
        bar.set_postfix_str("tokenizing")
        train_ids = processor.encode([d.text for d in train_docs])
        val_ids = processor.encode([caseops.encode(d.text) if options.caseops else d.text for d in val_docs])
        bar.update()
        bar.set_postfix_str("writing shards")
        shards = _write_split(folder, "train", train_ids, options.shard_tokens)
        pieces = PieceTable.from_processor(processor) if options.caseops else None
        shards.update(_write_split(folder, "val", val_ids, options.shard_tokens, pieces))
        bar.update()
    meta = {
        "key": key,
        "builder_version": BUILDER_VERSION,
        "python": platform.python_version(),
        "options": asdict(options),
        "tokenizer_vocab_size": processor.get_piece_size(),
        "documents": {"train": len(train_docs), "val": len(val_docs)},
        "text_bytes": {  # of the original text (before CaseOps), as bpb is charged
            "train": sum(len(d.text.encode("utf-8")) for d in original_train),
            "val": sum(len(d.text.encode("utf-8")) for d in val_docs),
        },
        "shards": shards,
        "val_documents": [d.doc_id for d in val_docs],
    }
    # No timestamp in meta.json: two builds of the same inputs must be byte-identical.
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    seconds = time.perf_counter() - started
    tokens = {name: n for name, n in shards.items() if "_bytes_" not in name}  # not the sidecars
    log(f"built in {seconds:.1f} s: {sum(tokens.values()):,} tokens in {len(tokens)} shards"
        + (f" + {len(shards) - len(tokens)} byte sidecar(s)" if len(shards) > len(tokens) else ""))


def build_embedded(
    options: EmbeddedOptions | None = None,
    out_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Return the folder of the embedded dataset, building it first when missing or stale."""
    options = options or EmbeddedOptions()
    options.validate()
    if out_dir:
        _check_replaceable(Path(out_dir).expanduser())  # before the slow part: fail at once
    key = build_key(options)
    folder = Path(out_dir).expanduser() if out_dir else default_output_dir(options, key)
    if not force and is_valid_build(folder, key):
        return folder
    _check_replaceable(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=folder.parent))
    try:
        _build_into(staging, options, key, progress)
        os.chmod(staging, 0o755)  # mkdtemp creates 0700; a shared cache must be readable by others
        _install(staging, folder, key, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _check_replaceable(folder: Path) -> None:
    """Only an earlier build (or an empty folder) may be replaced: never delete a user's files."""
    if folder.is_dir() and any(folder.iterdir()) and not (folder / META_FILE).is_file():
        raise FileExistsError(
            f"embedded data: {folder} exists and is not an embedded-dataset folder (no {META_FILE}): "
            "refusing to replace it; choose another output folder"
        )
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"embedded data: {folder} exists and is a file, expected a folder")


def _install(staging: Path, folder: Path, key: str, force: bool) -> None:
    """Move a finished build into place; the old folder is removed only after the new one is ready."""
    if folder.exists():
        if not force and is_valid_build(folder, key):
            return  # another process (e.g. another rank) finished the same build first: keep theirs
        _check_replaceable(folder)
        retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.replace(folder, retired / "data")
        try:
            os.replace(staging, folder)
        except OSError:
            os.replace(retired / "data", folder)  # put the old build back rather than lose it
            raise
        finally:
            shutil.rmtree(retired, ignore_errors=True)
        return
    try:
        os.replace(staging, folder)
    except OSError:
        # Lost a race with a concurrent build that created the folder meanwhile.
        if not is_valid_build(folder, key):
            raise
