"""F1 of IE answers: parse a model's answer leniently, then micro precision / recall / F1 per task.

Parsing: the JSON inside a ```json fence, else the whole answer, else the first JSON value found in the prose
that has the task's shape (an object for NER, a list for RE and EE; one RE/EE object alone counts as a list of
one). An answer with no such JSON is *invalid*: it predicts nothing (its gold items still count for recall)
and the number of invalid answers is reported.

Units, compared after stripping spaces at both ends, as sets per record (an item said twice counts once):
    ner  (type, text)
    re   (subject, relation, object), strict
    ee   events (event_type, trigger); arguments (event_type, role, text) - a role's list of texts gives one
         unit per text
Micro averages: true positives, predictions and gold items are summed over the records of a task first.
Scores are percentages (0-100), like the ROUGE scores beside them.

The two ways to get empty answers wrong are counted apart, since F1 alone does not show which one a model has:
`empty_on_filled` answers that extract nothing (valid JSON, no item) where the gold has items, of `gold_filled`
such cases; `filled_on_empty` answers with items where the gold is empty, of `gold_empty` such cases.
"""
from __future__ import annotations

import json
import re

from utils.ie.errors import IEError

FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
TASKS = ("ner", "re", "ee")


def _shaped(value, task):
    """The value in the task's shape, or None."""
    if task == "ner":
        return value if isinstance(value, dict) else None
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and ("relation" in value or "event_type" in value):
        return [value]
    return None


def parse_answer(text, task: str):
    """The JSON value of an answer in the task's shape, or None when there is none (an invalid answer)."""
    if not isinstance(text, str):
        return None
    candidates = [m.group(1) for m in FENCE.finditer(text)] + [text]
    for candidate in candidates:
        try:
            value = _shaped(json.loads(candidate.strip()), task)
        except json.JSONDecodeError:
            continue
        if value is not None:
            return value
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if (value := _shaped(value, task)) is not None:
            return value
    return None


def _text(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _texts(value) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [t for t in map(_text, values) if t]


def ner_units(value) -> set:
    units = set()
    for type_name, entities in (value or {}).items():
        units |= {(type_name.strip(), text) for text in _texts(entities)}
    return units


def re_units(value) -> set:
    units = set()
    for item in value or []:
        if isinstance(item, dict):
            triple = tuple(_text(item.get(key)) for key in ("subject", "relation", "object"))
            if all(triple):
                units.add(triple)
    return units


def ee_units(value) -> tuple[set, set]:
    events, arguments = set(), set()
    for item in value or []:
        if not isinstance(item, dict) or not _text(item.get("event_type")):
            continue
        event_type = _text(item["event_type"])
        events.add((event_type, _text(item.get("trigger")) or ""))
        args = item.get("arguments") or {}
        if isinstance(args, list):  # [{"role": ..., "argument": ...}], DuEE's own spelling
            pairs = [(a.get("role"), a.get("argument")) for a in args if isinstance(a, dict)]
        elif isinstance(args, dict):
            pairs = list(args.items())
        else:
            pairs = []
        for role, texts in pairs:
            if _text(role):
                arguments |= {(event_type, _text(role), text) for text in _texts(texts)}
    return events, arguments


def prf(correct: int, predicted: int, gold: int) -> dict:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision * 100, 2), "recall": round(recall * 100, 2), "f1": round(f1 * 100, 2),
            "correct": correct, "predicted": predicted, "gold": gold}


def _units(task, value) -> dict[str, set]:
    if task == "ner":
        return {"": ner_units(value)}
    if task == "re":
        return {"": re_units(value)}
    events, arguments = ee_units(value)
    return {"event_": events, "argument_": arguments}


def score_ie(rows: list[dict]) -> dict:
    """{task: {cases, invalid, precision, recall, f1, correct, predicted, gold}} over rows that carry `task`.

    EE has event_* and argument_* scores. Rows need `output` (the gold answer, canonical JSON) and
    `model_output`; rows without a task (QA) are left out.
    """
    counts: dict[str, dict] = {}
    for number, row in enumerate(rows, start=1):
        task = row.get("task")
        if not task:
            continue
        if task not in TASKS:
            raise IEError(f"record {number}: field 'task' must be one of {', '.join(TASKS)}, got {task!r}")
        gold_value = parse_answer(row.get("output"), task)
        if gold_value is None:
            raise IEError(f"record {number}: field 'output' is not a {task} answer in JSON: "
                          f"{str(row.get('output'))[:80]!r}")
        predicted_value = parse_answer(row.get("model_output"), task)
        tally = counts.setdefault(task, {"cases": 0, "invalid": 0, "gold_filled": 0, "empty_on_filled": 0,
                                         "gold_empty": 0, "filled_on_empty": 0})
        tally["cases"] += 1
        tally["invalid"] += predicted_value is None
        gold, predicted = _units(task, gold_value), _units(task, predicted_value)
        gold_has, predicted_has = any(gold.values()), any(predicted.values())
        if gold_has:
            tally["gold_filled"] += 1
            tally["empty_on_filled"] += predicted_value is not None and not predicted_has
        else:
            tally["gold_empty"] += 1
            tally["filled_on_empty"] += predicted_has
        for prefix, units in gold.items():
            for key, n in (("correct", len(units & predicted[prefix])), ("predicted", len(predicted[prefix])),
                           ("gold", len(units))):
                tally[prefix + key] = tally.get(prefix + key, 0) + n
    scores = {}
    for task, tally in counts.items():
        scores[task] = {key: tally[key] for key in ("cases", "invalid", "gold_filled", "empty_on_filled",
                                                    "gold_empty", "filled_on_empty")}
        for prefix in (("event_", "argument_") if task == "ee" else ("",)):
            for key, value in prf(tally[prefix + "correct"], tally[prefix + "predicted"],
                                  tally[prefix + "gold"]).items():
                scores[task][prefix + key] = value
    return scores


def flat_scores(scores: dict) -> dict[str, float]:
    """The headline numbers of score_ie for a one-row-per-model metrics table."""
    flat = {}
    for task, s in scores.items():
        if task == "ee":
            flat["ee-event-f1"], flat["ee-argument-f1"] = s["event_f1"], s["argument_f1"]
        else:
            flat[f"{task}-f1"] = s["f1"]
    if scores:
        flat["ie_invalid"] = sum(s["invalid"] for s in scores.values())
    return flat
