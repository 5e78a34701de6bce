"""`python -m utils.ie convert --format bio|boson|duie|finre|duee INPUT --output OUT.json [--schema FILE]`
`python -m utils.ie merge A.json B.json --output OUT.json` and `python -m utils.ie score ANSWERS.jsonl`:
the IE command line."""
from __future__ import annotations

import json

from utils.cli import run
from utils.data.records import load_records
from utils.ie.instructions import GROUP_SIZE, convert_file
from utils.ie.metrics import score_ie


def convert(input: str, output: str = "", format: str = "", schema: str = "", limit: int = 0, seed: int = 42,
            group_size: int = GROUP_SIZE, empty_share: float = None):
    """Convert INPUT, a corpus in its own format (--format bio, boson, duie, finre or duee), to instruction records.

    --schema: entity types (one per line, `LABEL 名称` to rename), DuIE's schema JSON Lines, FinRE's
    relation2id.txt or DuEE's event schema JSON Lines; without it the types are those found in INPUT.
    --limit N keeps N samples drawn with --seed; --group_size caps the types asked in one instruction;
    --empty_share S keeps at most the share S of records whose answer is empty (for training data; a test set
    keeps them all).
    """
    from utils.errors import UsageError

    if not format:
        raise UsageError("--format is required: bio, boson, duie, finre or duee")
    if not output:
        raise UsageError("--output OUT.json is required")
    summary = convert_file(format, input, output, schema or None, int(limit), int(seed), int(group_size),
                           None if empty_share is None else float(empty_share))
    print(json.dumps(summary, ensure_ascii=False))


def merge(*inputs: str, output: str = ""):
    """Concatenate converted files (JSON lists of records) into one OUTPUT, e.g. a test set of all three tasks."""
    from utils.errors import UsageError
    from utils.files import atomic_write_json

    if not inputs or not output:
        raise UsageError("usage: python -m utils.ie merge A.json B.json ... --output OUT.json")
    records = [record for path in inputs for record in load_records(path)]
    atomic_write_json(output, [{k: v for k, v in r.items() if k != "history" or v} for r in records], indent=1)
    print(json.dumps({"output": str(output), "records": len(records), "inputs": [str(p) for p in inputs]},
                     ensure_ascii=False))


def score(path: str):
    """F1 per IE task of an answers file (infer.py's JSONL: task, output, model_output), as JSON."""
    print(json.dumps(score_ie(load_records(path, require_output=False)), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    run({"convert": convert, "merge": merge, "score": score})
