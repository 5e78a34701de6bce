"""IE samples -> instruction records `{instruction, input, output, task}` whose answer is canonical JSON.

The instruction names the types asked (entity types; relations with their subject/object types; event types
with their roles). A schema of more than GROUP_SIZE types is asked in groups of at most GROUP_SIZE, one record
per group, a type absent from the sentence answered empty (as IEPile does), so every record can be scored on its
own. Answers (json.dumps, ensure_ascii=False):

    ner  {"公司": ["招商银行"], "人名": []}                     every asked type, entities in order of appearance
    re   [{"subject": "A", "relation": "控股", "object": "B"}]  [] when none of the asked relations holds
    ee   [{"event_type": "质押", "trigger": "质押", "arguments": {"质押方": "A", "质权方": ["B", "C"]}}]
         a role with several arguments in one event has a list of them, in order; a role with one, the string
"""
from __future__ import annotations

import json
import logging
import random

from utils.files import atomic_write_json
from utils.ie.errors import IEError
from utils.ie.metrics import parse_answer
from utils.ie.sources import READERS, Sample, Schema

logger = logging.getLogger(__name__)

GROUP_SIZE = 6
FORMATS = tuple(READERS)

PHRASINGS = {
    "ner": [
        "从下面的文本中找出以下类型的实体：{types}。以JSON对象回答，键为实体类型，值为该类型实体的列表；文本中没有的类型给空列表。",
        "请识别文本里属于这些类型的命名实体：{types}。输出JSON：{{\"类型\": [\"实体\", ...]}}，每个类型都要列出，没有则为[]。",
        "命名实体识别。实体类型：{types}。请按JSON格式列出文本中每种类型的实体（原文照抄），不存在的类型值为空列表。",
        "阅读下面的句子，抽取其中的{types}实体，用JSON对象给出答案：类型作键，实体列表作值，找不到的类型写[]。",
    ],
    "re": [
        "从下面的文本中抽取以下关系的三元组：{types}。以JSON列表回答，每项为{{\"subject\": 主体, \"relation\": 关系, \"object\": 客体}}；没有这些关系时回答[]。",
        "关系抽取。候选关系：{types}。请找出文本中成立的关系，输出JSON列表，元素含subject、relation、object三个键；若不存在则输出[]。",
        "请判断文本中实体之间是否存在这些关系：{types}。把成立的关系写成JSON列表[{{\"subject\": ..., \"relation\": ..., \"object\": ...}}]，没有则为[]。",
        "阅读下面的句子，按给定的关系类型（{types}）抽取（主体，关系，客体）三元组，用JSON列表回答，无则回答[]。",
    ],
    "ee": [
        "从下面的文本中抽取以下类型的事件：{types}。以JSON列表回答，每个事件为{{\"event_type\": 事件类型, \"trigger\": 触发词, \"arguments\": {{角色: 论元}}}}，一个角色有多个论元时写成列表；没有这些事件时回答[]。",
        "事件抽取。事件类型及其角色：{types}。请输出JSON列表，每项含event_type、trigger和arguments（角色到原文文本的映射，多个论元用列表）；若无事件则输出[]。",
        "请找出文本中发生的下列事件：{types}。对每个事件给出类型、触发词和各角色的论元，写成JSON列表[{{\"event_type\": ..., \"trigger\": ..., \"arguments\": {{...}}}}]，没有则为[]。",
        "阅读下面的文本，按给定的事件类型和角色（{types}）抽取事件，用JSON列表回答；同一角色有多个论元时用列表，无事件回答[]。",
    ],
}


def answer_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def ner_answer(sample: Sample, group: list[str]):
    return {t: [text for kind, text in sample.answer if kind == t] for t in group}


def re_answer(sample: Sample, group: list[str]):
    return [{"subject": s, "relation": r, "object": o} for s, r, o in sample.answer if r in group]


def ee_answer(sample: Sample, group: list[str]):
    events = []
    for event_type, trigger, arguments in sample.answer:
        if event_type not in group:
            continue
        by_role: dict[str, list[str]] = {}
        for role, text in arguments:
            by_role.setdefault(role, []).append(text)
        events.append({"event_type": event_type, "trigger": trigger,
                       "arguments": {role: texts[0] if len(texts) == 1 else texts for role, texts in by_role.items()}})
    return events


ANSWERS = {"ner": ner_answer, "re": re_answer, "ee": ee_answer}


def groups(types: list[str], size: int = GROUP_SIZE) -> list[list[str]]:
    return [types[k:k + size] for k in range(0, len(types), size)]


def describe(schema: Schema, group: list[str]) -> str:
    return "；".join(t + schema.details.get(t, "") for t in group) if schema.details else "、".join(group)


def is_empty_answer(task: str, value) -> bool:
    """Nothing to extract: RE/EE `[]`, NER every asked type with an empty list."""
    return not any(value.values()) if task == "ner" else not value


def records_from_samples(task: str, samples: list[Sample], schema: Schema, seed: int = 42,
                         group_size: int = GROUP_SIZE, empty_share: float | None = None) -> list[dict]:
    """One record per (sample, group of at most `group_size` types); the phrasing is drawn with `seed`.

    `empty_share` caps the share of records whose answer is empty (a group asking for types the sentence lacks):
    the excess is dropped, drawn with `seed` (IEPile samples its negatives the same way). A small model trained on
    all of them learns that `[]` is usually right; None keeps every record (a test set must).
    """
    if group_size < 1:
        raise IEError(f"--group_size must be at least 1, got {group_size}")
    if empty_share is not None and not 0 <= empty_share < 1:
        raise IEError(f"--empty_share must be at least 0 and below 1, got {empty_share}")
    if not schema.types:
        raise IEError("no type to ask for: the data has no entity, relation or event and no --schema was given")
    rng = random.Random(seed)
    phrasings = PHRASINGS[task]
    records, empty = [], []
    for sample in samples:
        for group in groups(schema.types, group_size):
            instruction = rng.choice(phrasings).format(types=describe(schema, group))
            answer = ANSWERS[task](sample, group)
            if is_empty_answer(task, answer):
                empty.append(len(records))
            records.append({"instruction": instruction, "input": sample.text, "output": answer_json(answer),
                            "task": task})
    if empty_share is not None:
        # keep k empty records so that k / (filled + k) <= empty_share
        filled = len(records) - len(empty)
        keep = min(len(empty), int(empty_share * filled / (1 - empty_share)))
        dropped = set(empty) - set(random.Random(seed).sample(empty, keep))
        records = [r for k, r in enumerate(records) if k not in dropped]
    return records


def empty_answer_share(records: list[dict]) -> float:
    """The share (0-1) of records whose answer is empty."""
    empty = sum(is_empty_answer(r["task"], parse_answer(r["output"], r["task"])) for r in records)
    return empty / len(records) if records else 0.0


def read_samples(fmt: str, path, schema_path=None) -> tuple[str, list[Sample], Schema]:
    if fmt not in READERS:
        raise IEError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    task, reader = READERS[fmt]
    samples, schema = reader(path, schema_path)
    return task, samples, schema


def convert_file(fmt: str, path, output, schema_path=None, limit: int = 0, seed: int = 42,
                 group_size: int = GROUP_SIZE, empty_share: float | None = None) -> dict:
    """Read PATH in FORMAT, write the instruction records to OUTPUT (a JSON list, atomically); returns a summary.

    --limit N keeps N samples drawn with the seed (in file order); 0 keeps all. --empty_share caps the share of
    records with an empty answer (records_from_samples).
    """
    task, samples, schema = read_samples(fmt, path, schema_path)
    if not schema.types:
        raise IEError(f"{path}: no type to ask for: the file has no entity, relation or event; give the types "
                      f"with --schema")
    total = len(samples)
    if limit and limit < 0:
        raise IEError(f"--limit must be 0 (all) or a positive number of samples, got {limit}")
    if limit and limit < total:
        keep = sorted(random.Random(seed).sample(range(total), limit))
        samples = [samples[k] for k in keep]
    records = records_from_samples(task, samples, schema, seed, group_size, empty_share)
    atomic_write_json(output, records, indent=1)
    summary = {"format": fmt, "task": task, "input": str(path), "output": str(output), "samples": len(samples),
               "samples_in_file": total, "records": len(records), "types": len(schema.types),
               "groups_per_sample": len(groups(schema.types, group_size)),
               "answers": sum(len(s.answer) for s in samples),
               "empty_answer_share": round(empty_answer_share(records), 3)}
    logger.info("Read %d %s samples from %s (%s, %d types); wrote %d records to %s", len(samples), task, path, fmt,
                len(schema.types), len(records), output)
    return summary
