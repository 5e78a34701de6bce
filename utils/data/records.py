"""Instruction data: read, validate and split instruction records.

Records are alpaca-style `{"instruction": str, "input": str (optional), "output": str}`,
optionally with `"history": [[question, answer], ...]` for earlier turns of a
conversation, or ShareGPT-style `{"conversations": [{"from": "human", "value": ...}, ...]}`.
Other fields (e.g. `topic`) are kept but ignored by training. Files may be a JSON
list, JSON Lines (the original Cornucopia's `.json` samples are JSON Lines) or CSV
with the columns instruction,input,output.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import datasets

from utils.errors import CornucopiaError

logger = logging.getLogger(__name__)


class DataError(CornucopiaError, ValueError):
    """Bad input data; the message names the file, the record and the field."""


@dataclass
class Problem:
    """One thing wrong with one record (or with the file, when `number` is None)."""

    path: str
    number: int | None
    line: int | None
    message: str
    fatal: bool = True  # False: usable, but worth a look (duplicates, truncation)

    def __str__(self) -> str:
        if self.number is None:
            where = f" line {self.line}" if self.line else ""
        else:
            where = f" record {self.number}" + (f" (line {self.line})" if self.line else "")
        return f"{self.path}:{where}: {self.message}" if where else f"{self.path}: {self.message}"


@dataclass
class Row:
    number: int
    line: int | None
    raw: object


def _json_rows(path: Path, text: str) -> tuple[list[Row], list[Problem]]:
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}")
        return [Row(n, None, v) for n, v in enumerate(values, start=1)], []
    rows, problems = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        number = len(rows) + len(problems) + 1
        try:
            rows.append(Row(number, line_no, json.loads(line)))
        except json.JSONDecodeError as e:
            problems.append(Problem(str(path), None, line_no,
                                    f"not valid JSON (column {e.colno}: {e.msg}); the file is read as JSON Lines, "
                                    f"one record per line. The line starts: {line.strip()[:60]!r}"))
    return rows, problems


def _csv_rows(path: Path, text: str) -> tuple[list[Row], list[Problem]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "instruction" not in reader.fieldnames:
        raise DataError(f"{path}: a CSV data file needs a header row with the columns instruction,input,output "
                        f"(found: {', '.join(reader.fieldnames or []) or 'no header'})")
    rows = []
    for number, raw in enumerate(reader, start=1):
        extra = raw.pop(None, None)
        row = Row(number, reader.line_num, raw)
        if extra:
            row.raw = {**raw, "__extra_cells__": extra}
        rows.append(row)
    return rows, []


def _dataset_rows(name: str) -> tuple[list[Row], list[Problem]]:
    """A data set from the `datasets` library by name (its train split), when the hub is reachable."""
    try:
        loaded = datasets.load_dataset(name, split="train")
    except Exception as err:  # the hub's errors come in many library-specific types
        raise DataError(
            f"{name}: no such data file, and loading it as a `datasets` data set failed "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). Give the path of a "
            f"JSON, JSON Lines or CSV file."
        ) from err
    return [Row(n, None, dict(r)) for n, r in enumerate(loaded, start=1)], []


def read_rows(path) -> tuple[list[Row], list[Problem]]:
    """Parse a JSON list, JSON Lines or CSV file (or a `datasets` name) into rows and per-line problems."""
    path_str = str(path)
    path = Path(path)
    if not path.exists() and path_str.count("/") == 1 and not path_str.startswith((".", "/")) \
            and not path.suffix:
        return _dataset_rows(path_str)
    if not path.is_file():
        raise DataError(f"{path}: data file not found" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})")
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected a JSON list, JSON Lines or CSV of records")
    rows, problems = (_csv_rows if path.suffix.lower() == ".csv" else _json_rows)(path, text)
    if not rows and not problems:
        raise DataError(f"{path}: contains no records")
    return rows, problems


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "bot": "assistant", "system": "system"}


def _from_sharegpt(raw: dict) -> tuple[dict | None, str | None]:
    """ShareGPT `conversations` -> history + last question/answer; or (None, what is wrong)."""
    turns = raw["conversations"]
    if not isinstance(turns, list) or not turns:
        return None, "field 'conversations' must be a non-empty list of turns"
    messages = []
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return None, f"field 'conversations[{k}]' must be an object with 'from' and 'value'"
        role = SHAREGPT_ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
        text = turn.get("value", turn.get("content"))
        if role is None:
            return None, f"field 'conversations[{k}].from' must be human/user or gpt/assistant"
        if not isinstance(text, str) or not text.strip():
            return None, f"field 'conversations[{k}].value' must be a non-empty string"
        if role != "system":
            messages.append((role, text))
    if len(messages) < 2 or len(messages) % 2 or any(
            role != ("user" if k % 2 == 0 else "assistant") for k, (role, _) in enumerate(messages)):
        return None, "field 'conversations' must alternate human, gpt, human, gpt ... and end with a gpt turn"
    pairs = [[messages[k][1], messages[k + 1][1]] for k in range(0, len(messages), 2)]
    record = {key: value for key, value in raw.items() if key != "conversations"}
    record.update(instruction=pairs[-1][0], input="", output=pairs[-1][1], history=pairs[:-1])
    return record, None


def record_problems(raw, require_output: bool = True) -> tuple[dict | None, list[str]]:
    """Normalise one raw record; returns (record or None, [what is wrong, naming the field])."""
    if not isinstance(raw, dict):
        return None, [f"expected an object with 'instruction' and 'output', got {type(raw).__name__}"]
    if "conversations" in raw:
        record, problem = _from_sharegpt(raw)
        return record, [problem] if problem else []
    record, problems = dict(raw), []
    if record.pop("__extra_cells__", None):
        problems.append("the CSV row has more cells than the header has columns")
    for field in ("instruction", "output") if require_output else ("instruction",):
        if field not in record:
            problems.append(f"field '{field}' is missing")
        elif not isinstance(record[field], str):
            problems.append(f"field '{field}' must be a string, got {type(record[field]).__name__}")
        elif not record[field].strip():
            problems.append(f"field '{field}' is empty")
    optional = ("input",) if require_output else ("input", "output")
    for field in optional:
        if record.get(field) is None:
            record[field] = ""
        elif not isinstance(record[field], str):
            problems.append(f"field '{field}' must be a string, got {type(record[field]).__name__}")
    history = record.get("history") or []
    if not isinstance(history, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(t, str) and t.strip() for t in p)
            for p in history):
        problems.append("field 'history' must be a list of [question, answer] pairs of non-empty strings")
    else:
        record["history"] = [list(p) for p in history]
    return (None if problems else record), problems


def check_rows(path, require_output: bool = True) -> tuple[list[Row], list[Problem]]:
    """Every usable record (as a Row holding the normalised record), and every fatal problem of the file."""
    rows, problems = read_rows(path)
    usable = []
    for row in rows:
        record, messages = record_problems(row.raw, require_output)
        problems += [Problem(str(path), row.number, row.line, m) for m in messages]
        if record is not None:
            usable.append(Row(row.number, row.line, record))
    return usable, problems


def load_records(path, require_output: bool = True) -> list[dict]:
    """Read and validate every record of a data file; any unusable record stops with a DataError.

    Test-case files for inference may leave out the reference `output`.
    """
    rows, problems = check_rows(path, require_output)
    raise_if_unusable(path, problems)
    return [row.raw for row in rows]


def raise_if_unusable(path, problems: list[Problem]) -> None:
    """One DataError listing the unusable records (the first ten), if there are any."""
    fatal = [p for p in problems if p.fatal]
    if fatal:
        shown = "\n".join(str(p) for p in fatal[:10])
        more = f"\n... and {len(fatal) - 10} more (run `python -m utils.data check {path}`)" if len(fatal) > 10 else ""
        raise DataError(shown + more)


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
