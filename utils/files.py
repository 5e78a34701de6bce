"""Atomic writes: a file appears under its real name complete, or not at all."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write to a temporary file in the same folder, flush it to disk, then rename it over PATH."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path, value, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=indent) + "\n")


def atomic_write_jsonl(path, rows) -> Path:
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
