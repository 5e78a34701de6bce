"""Instruction data: read, validate, split and tokenize alpaca-style records.

Records are `{"instruction": str, "input": str (optional), "output": str}`; any
other field (e.g. `topic`) is kept but ignored by training. Files may be a JSON
list or JSON Lines (the original Cornucopia's `.json` samples are JSON Lines).
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value that the loss skips


class DataError(ValueError):
    """Bad input data; the message names the file, the record and the field."""


def _where(path, number, line=None) -> str:
    return f"{path}: record {number}" + (f" (line {line})" if line is not None else "")


def read_json_records(path) -> list[tuple[int | None, object]]:
    """Parse a JSON list or JSON Lines file into (line number or None, value) pairs."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})")
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected a JSON list or JSON Lines of records")
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}")
        return [(None, v) for v in values]
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((line_no, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}: line {line_no} is not valid JSON (column {e.colno}: {e.msg}); "
                f"the file is read as JSON Lines, one record per line. The line starts: {line.strip()[:60]!r}"
            )
    return rows


def validate_record(raw, path, number: int, line: int | None = None, require_output: bool = True) -> dict:
    """Check one record and return it with `input` (and a missing `output`) normalised to strings."""
    where = _where(path, number, line)
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected an object with 'instruction' and 'output', got {type(raw).__name__}")
    record = dict(raw)
    for field in ("instruction", "output") if require_output else ("instruction",):
        if field not in record:
            raise DataError(f"{where}: field '{field}' is missing")
        if not isinstance(record[field], str):
            raise DataError(f"{where}: field '{field}' must be a string, got {type(record[field]).__name__}")
        if not record[field].strip():
            raise DataError(f"{where}: field '{field}' is empty")
    for field in ("input", "output"):
        if record.get(field) is None:
            record[field] = ""
        elif not isinstance(record[field], str):
            raise DataError(f"{where}: field '{field}' must be a string, got {type(record[field]).__name__}")
    return record


def load_records(path, require_output: bool = True) -> list[dict]:
    """Read and validate every record of a data file; the first fault stops with a DataError.

    Test-case files for inference may leave out the reference `output`.
    """
    rows = read_json_records(path)
    if not rows:
        raise DataError(f"{path}: contains no records")
    return [validate_record(raw, path, n, line, require_output) for n, (line, raw) in enumerate(rows, start=1)]


def split_train_val(records: list[dict], val_set_size: int, seed: int = 42, path="data") -> tuple[list, list]:
    """Deterministic shuffle-split; `val_set_size` is a count of records (0: no validation)."""
    if val_set_size < 0:
        raise DataError(f"--val_set_size must be >= 0, got {val_set_size}")
    if val_set_size >= len(records):
        raise DataError(
            f"--val_set_size {val_set_size} is not smaller than the {len(records)} records in {path}; "
            f"use a smaller number, or 0 for no validation set"
        )
    if val_set_size == 0:
        return list(records), []
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    return shuffled[val_set_size:], shuffled[:val_set_size]


def tokenize_record(record: dict, prompter, tokenizer, cutoff_len: int,
                    train_on_inputs: bool = False, add_eos_token: bool = True) -> dict:
    """input_ids / attention_mask / labels for one record.

    Prompt and answer are tokenized separately so that the prompt tokens are
    exactly those seen at inference, and the mask boundary is exact.
    """
    prompt = prompter.generate_prompt(record["instruction"], record["input"])
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(record["output"], add_special_tokens=False)["input_ids"]
    if add_eos_token and tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + answer_ids)[:cutoff_len]
    n_prompt = min(len(prompt_ids), len(input_ids))
    labels = list(input_ids) if train_on_inputs else [IGNORE_INDEX] * n_prompt + input_ids[n_prompt:]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def build_dataset(records, prompter, tokenizer, cutoff_len, train_on_inputs=False, add_eos_token=True,
                  desc="Tokenizing"):
    """A `datasets.Dataset` of tokenized records; records left with nothing to learn are dropped."""
    from datasets import Dataset
    from tqdm.auto import tqdm

    rows, dropped = [], 0
    for record in tqdm(records, desc=desc, leave=False):
        row = tokenize_record(record, prompter, tokenizer, cutoff_len, train_on_inputs, add_eos_token)
        if all(label == IGNORE_INDEX for label in row["labels"]):
            dropped += 1
            continue
        rows.append(row)
    if dropped:
        logger.warning("%d record(s) dropped: the prompt alone fills --cutoff_len %d", dropped, cutoff_len)
    if not rows:
        raise DataError(f"No record has any answer token left within --cutoff_len {cutoff_len}; raise it")
    return Dataset.from_list(rows)
