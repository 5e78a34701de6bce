"""Several data files in one run: `--data_path a.json,b.json:200,c.json:2.5`.

Each comma-separated item is a data file (or `datasets` name), optionally followed by `:N` or `:W`:
    path        every record, once
    path:N      N records (a whole number): drawn without replacement when N <= the file's records; above that
                every record repeats N // size times and the rest is drawn (upsampling)
    path:W      a weight (a number with a decimal point, e.g. 0.5 or 2.0): round(W x size) records, drawn the same way
The seed drives every draw (one stream per item), so a run is reproducible; records keep file order within an
item and items keep their order (training shuffles anyway). Each file is checked on its own, so an error names it.
"""
from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass

from utils.data.check import load_checked_records
from utils.data.records import DataError

logger = logging.getLogger(__name__)

COUNT = re.compile(r"^\d+$")
WEIGHT = re.compile(r"^(\d+\.\d*|\.\d+)$")


@dataclass
class MixItem:
    path: str
    count: int | None = None
    weight: float | None = None

    def __str__(self) -> str:
        return self.path + (f":{self.count}" if self.count is not None else
                            f":{self.weight}" if self.weight is not None else "")


def parse_data_path(spec) -> list[MixItem]:
    """`a.json,b.json:200,c.json:2.0` -> items; a list or tuple (fire's parsing of `[a,b]`) is accepted too."""
    if isinstance(spec, (list, tuple)):
        spec = ",".join(str(s) for s in spec)
    spec = str(spec or "").strip().strip("[]")
    if not spec:
        raise DataError("--data_path is empty; give a data file, or several as a,b:N,c:W")
    items = []
    for k, part in enumerate(spec.split(","), start=1):
        part = part.strip().strip("'\"")
        if not part:
            raise DataError(f"--data_path {spec!r}: item {k} is empty (two commas in a row?)")
        path, _, suffix = part.rpartition(":")
        if path and COUNT.match(suffix):
            if int(suffix) < 1:
                raise DataError(f"--data_path item {part!r}: the number of records must be at least 1")
            items.append(MixItem(path, count=int(suffix)))
        elif path and WEIGHT.match(suffix):
            if float(suffix) <= 0:
                raise DataError(f"--data_path item {part!r}: the weight must be above 0")
            items.append(MixItem(path, weight=float(suffix)))
        elif path and suffix and re.match(r"^[-+\d.eE]+$", suffix):
            raise DataError(f"--data_path item {part!r}: after ':' give a whole number of records (200) or a "
                            f"weight with a decimal point (0.5, 2.0)")
        else:
            items.append(MixItem(part))
    return items


def draw(records: list, wanted: int, rng: random.Random) -> list:
    """`wanted` records: whole copies of the list, then a draw without replacement of the rest, in file order."""
    copies, rest = divmod(wanted, len(records))
    chosen = sorted(rng.sample(range(len(records)), rest))
    return [r for _ in range(copies) for r in records] + [records[k] for k in chosen]


def mix(loaded: list[tuple[MixItem, list]], seed: int = 42) -> tuple[list, list[dict]]:
    """The mixed records and, per item, what was used: {path, records_in_file, used, count | weight}."""
    records, info = [], []
    for k, (item, rows) in enumerate(loaded):
        if not rows:
            raise DataError(f"{item.path}: no usable record to draw from")
        if item.count is not None:
            wanted = item.count
        elif item.weight is not None:
            wanted = max(1, round(item.weight * len(rows)))
        else:
            wanted = len(rows)
        chosen = rows if wanted == len(rows) else draw(rows, wanted, random.Random(f"{seed}:{k}:{item.path}"))
        records += chosen
        entry = {"path": item.path, "records_in_file": len(rows), "used": len(chosen)}
        if item.count is not None:
            entry["count"] = item.count
        if item.weight is not None:
            entry["weight"] = item.weight
        info.append(entry)
    return records, info


def load_data_mix(spec, seed: int = 42) -> tuple[list[dict], list[dict]]:
    """finetune.py's data: every file of the mix checked (errors name the file), then drawn with the seed."""
    items = parse_data_path(spec)
    records, info = mix([(item, load_checked_records(item.path)) for item in items], seed)
    if len(items) > 1 or info[0]["used"] != info[0]["records_in_file"]:
        logger.info("Data mix (seed %d): %s -> %d records", seed,
                    ", ".join(f"{i['path']} {i['used']}/{i['records_in_file']}" for i in info), len(records))
    return records, info
