"""Raw text for continued pre-training: read documents, tokenize, pack into equal blocks (as transformers' run_clm).

Inputs are `.txt` files (one document per file, or documents separated by blank lines), JSON Lines files
(`.jsonl`, one object per line with a `text` string), or folders of them. Several inputs are mixed with a comma
list, each optionally limited to N documents: `instruction_data/pretrain,notes.jsonl:200`.

Every document's tokens are followed by EOS, all documents are concatenated, and the stream is cut into blocks of
`block_size` tokens; only the tail shorter than a block is dropped. Every token is learned (labels = input_ids).
"""
from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from tqdm.auto import tqdm

from utils.data.records import DataError

logger = logging.getLogger(__name__)

SUFFIXES = (".txt", ".jsonl")
BLANK_LINES = re.compile(r"\n[ \t\u3000]*\n\s*")


@dataclass
class Document:
    path: str
    line: int  # where the document starts in its file (1-based)
    text: str


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 text ({err.reason} at byte {err.start}); "
                        f"save the file as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected text (.txt) or JSON Lines with a 'text' field (.jsonl)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _txt_documents(path: Path, text: str) -> list[Document]:
    """Documents separated by one or more blank lines; a file without blank lines is one document."""
    docs, start = [], 0
    for match in [*BLANK_LINES.finditer(text), None]:
        end = match.start() if match else len(text)
        chunk = text[start:end]
        if chunk.strip():
            leading = len(chunk) - len(chunk.lstrip())
            line = text.count("\n", 0, start + leading) + 1
            docs.append(Document(str(path), line, chunk.strip()))
        start = match.end() if match else len(text)
    return docs


def _jsonl_documents(path: Path, text: str) -> list[Document]:
    docs = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {number}: not valid JSON (column {err.colno}: {err.msg}); "
                            f"a .jsonl file has one object with a 'text' field per line") from None
        if not isinstance(value, dict) or "text" not in value:
            raise DataError(f"{path}: line {number}: no 'text' field; each line must be an object like "
                            f'{{"text": "..."}}')
        if not isinstance(value["text"], str) or not value["text"].strip():
            raise DataError(f"{path}: line {number}: field 'text' must be a non-empty string")
        docs.append(Document(str(path), number, value["text"].strip()))
    return docs


def read_documents(path) -> list[Document]:
    """The documents of one .txt or .jsonl file, or of every such file under a folder (sorted by path)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"{path}: the folder holds no .txt or .jsonl file")
        return [doc for file in files for doc in read_documents(file)]
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{path}: raw text must be .txt (documents separated by blank lines) or .jsonl "
                        f"(a 'text' field per line), or a folder of them")
    text = _read_text(path)
    return _txt_documents(path, text) if path.suffix.lower() == ".txt" else _jsonl_documents(path, text)


def parse_sources(spec) -> list[tuple[str, int | None]]:
    """`a,b:200` -> [("a", None), ("b", 200)]: each input with the number of documents to take (None: all)."""
    parts = list(spec) if isinstance(spec, (list, tuple)) else str(spec).split(",")
    sources = []
    for part in (str(p).strip() for p in parts):
        if not part:
            continue
        name, _, count = part.rpartition(":")
        if name and count.isdigit():
            if int(count) < 1:
                raise DataError(f"{part}: the number of documents after ':' must be at least 1")
            sources.append((name, int(count)))
        else:
            sources.append((part, None))
    if not sources:
        raise DataError("--data_path is empty: give .txt/.jsonl files or folders, comma-separated")
    return sources


def load_corpus(spec, seed: int = 42) -> list[Document]:
    """Every input's documents (a seeded sample of N where `path:N` asks for it), in the order given."""
    documents = []
    for path, count in parse_sources(spec):
        docs = read_documents(path)
        if count is not None:
            if count > len(docs):
                raise DataError(f"{path}:{count}: asks for {count} documents, but {path} has only {len(docs)}")
            docs = random.Random(seed).sample(docs, count)
        logger.info("Raw text %s: %d documents, %d characters", path, len(docs), sum(len(d.text) for d in docs))
        documents += docs
    return documents


def pack_blocks(token_lists: list[list[int]], eos_token_id: int, block_size: int) -> list[list[int]]:
    """Concatenate the documents, each followed by EOS, and cut the stream into blocks; only the tail is dropped."""
    if block_size < 2:
        raise DataError(f"--block_size must be at least 2, got {block_size}")
    stream = [token for tokens in token_lists for token in [*tokens, eos_token_id]]
    usable = len(stream) // block_size * block_size
    return [stream[i:i + block_size] for i in range(0, usable, block_size)]


def build_block_dataset(documents: list[Document], tokenizer, block_size: int) -> tuple[Dataset, dict]:
    """(dataset of input_ids / attention_mask / labels blocks, counts); labels equal input_ids: every token learned."""
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token to put between documents")
    token_lists = []
    step = 64
    for start in tqdm(range(0, len(documents), step), desc="Tokenizing raw text", leave=False):
        batch = [doc.text for doc in documents[start:start + step]]
        token_lists += tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
    blocks = pack_blocks(token_lists, tokenizer.eos_token_id, block_size)
    tokens = sum(len(t) + 1 for t in token_lists)
    if not blocks:
        raise DataError(f"the corpus has {tokens} tokens, fewer than one --block_size {block_size}; "
                        f"add text or lower --block_size")
    counts = {"documents": len(documents), "characters": sum(len(d.text) for d in documents), "tokens": tokens,
              "blocks": len(blocks), "dropped_tail_tokens": tokens - len(blocks) * block_size}
    logger.info("Packed %d documents (%d characters, %d tokens with EOS) into %d blocks of %d tokens; "
                "%d tail tokens dropped", counts["documents"], counts["characters"], tokens, len(blocks), block_size,
                counts["dropped_tail_tokens"])
    dataset = Dataset.from_dict({"input_ids": blocks, "attention_mask": [[1] * block_size for _ in blocks],
                                 "labels": [list(b) for b in blocks]})
    return dataset, counts
