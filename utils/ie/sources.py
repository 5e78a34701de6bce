"""Readers for each IE corpus's own published format, giving samples (text + gold answers) and a schema.

NER   bio     character-per-line column files, `字 B-ORG`, blank line between sentences (MSRA, ResumeNER,
              Weibo; tags BIO, BIOES or BMES; `-DOCSTART-` lines are skipped)
      boson   BosonNER: one paragraph per line, entities marked inline as `{{type:text}}`
RE    duie    DuIE2.0 JSON Lines: `text`, `spo_list` of {subject, predicate, object{@value}, subject_type,
              object_type}; schema: JSON Lines {predicate, subject_type, object_type{@value}}
      finre   THUNLP Chinese_NRE lines (FinRE, SanWen): `head<TAB>tail<TAB>relation<TAB>sentence`, schema
              relation2id.txt (`relation id` per line); `NA` / `unknown` mean no relation; the lines of one
              sentence become one sample
EE    duee    DuEE1.0 / DuEE-fin JSON Lines: `text`, `event_list` of {event_type, trigger, arguments:
              [{role, argument}]}; schema: JSON Lines {event_type, role_list: [{role}]}

Every malformed line raises IEError naming the file, the line and the field.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from utils.ie.errors import IEError, where

# Entity labels used by the common NER corpora, in Chinese (the instructions are Chinese). A label that is not
# here is used as written, so `B-公司` needs no mapping.
ENTITY_LABELS = {
    "PER": "人名", "PERSON": "人名", "NR": "人名", "NAME": "人名", "PER.NAM": "人名", "PER.NOM": "人名",
    "ORG": "机构", "NT": "机构", "ORG.NAM": "机构", "ORG.NOM": "机构", "org_name": "机构",
    "LOC": "地点", "NS": "地点", "LOC.NAM": "地点", "LOC.NOM": "地点", "location": "地点", "GPE": "地缘政治实体",
    "GPE.NAM": "地缘政治实体", "TITLE": "职位", "EDU": "学历", "PRO": "专业", "RACE": "民族", "CONT": "国籍",
    "COMPANY": "公司", "company_name": "公司", "person_name": "人名", "time": "时间", "TIME": "时间",
    "DATE": "日期", "MONEY": "金额", "product_name": "产品", "PRODUCT": "产品",
}
NO_RELATION = ("NA", "unknown")  # FinRE writes `unknown`, SanWen and the other Chinese_NRE sets `NA`


@dataclass
class Sample:
    """One sentence (or document) with its gold answer.

    ner: answer = [(type, text)]; re: [(subject, relation, object)];
    ee: [(event_type, trigger, [(role, argument)])].
    """

    text: str
    answer: list
    line: int


@dataclass
class Schema:
    """The types an instruction can ask for, in order; `details` adds what an instruction shows of a type."""

    task: str
    types: list[str]
    details: dict[str, str] = field(default_factory=dict)  # type -> "（主体：公司，客体：公司）" etc.
    roles: dict[str, list[str]] = field(default_factory=dict)  # EE: event type -> roles

    def add(self, name: str) -> None:
        if name not in self.types:
            self.types.append(name)


def read_lines(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise IEError(f"{path}: file not found" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise IEError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise IEError(f"{path}: the file is empty")
    return text.splitlines()


def json_lines(path):
    """(line number, object) for each non-blank line of a JSON Lines file."""
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise IEError(f"{where(path, number)}: not valid JSON (column {e.colno}: {e.msg}); the file is read "
                          f"as JSON Lines, one object per line") from None
        if not isinstance(value, dict):
            raise IEError(f"{where(path, number)}: expected a JSON object, got {type(value).__name__}")
        yield number, value


def need_str(value, path, line, name, allow_empty=False) -> str:
    if not isinstance(value, str):
        got = "nothing" if value is None else type(value).__name__
        raise IEError(f"{where(path, line, name)}: expected a string, got {got}")
    if not allow_empty and not value.strip():
        raise IEError(f"{where(path, line, name)}: is empty")
    return value


def need_list(value, path, line, name) -> list:
    if not isinstance(value, list):
        got = "nothing" if value is None else type(value).__name__
        raise IEError(f"{where(path, line, name)}: expected a list, got {got}")
    return value


def unique(items):
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------- NER


def read_entity_schema(path) -> tuple[Schema, dict[str, str]]:
    """One type per line, `名称` or `LABEL 名称` (a corpus label and the name the instructions use)."""
    schema, labels = Schema("ner", []), {}
    for number, line in enumerate(read_lines(path), start=1):
        parts = line.split()
        if not parts or line.lstrip().startswith("#"):
            continue
        if len(parts) > 2:
            raise IEError(f"{where(path, number)}: expected `名称` or `LABEL 名称`, got {line.strip()!r}")
        labels[parts[0]] = parts[-1]
        schema.add(parts[-1])
    if not schema.types:
        raise IEError(f"{path}: the schema names no entity type")
    return schema, labels


def entity_name(label: str, labels: dict[str, str], schema: Schema, fixed: bool, path, line, name) -> str:
    type_name = labels.get(label) or ENTITY_LABELS.get(label) or label
    if fixed and type_name not in schema.types:
        raise IEError(f"{where(path, line, name)}: entity type {label!r} is not in the schema "
                      f"({', '.join(schema.types)})")
    schema.add(type_name)
    return type_name


TAG = re.compile(r"^([BIMES])[-_](.+)$")


def read_bio(path, schema_path=None) -> tuple[list[Sample], Schema]:
    """Character-per-line BIO / BIOES / BMES files; the token is the first column, the tag the last."""
    schema, labels = read_entity_schema(schema_path) if schema_path else (Schema("ner", []), {})
    fixed = bool(schema_path)
    samples, chars, spans, first = [], [], [], None
    open_span = None  # [type, start, line]

    def close():
        nonlocal open_span
        if open_span is not None:
            spans.append((open_span[0], open_span[1], len(chars)))
            open_span = None

    def finish():
        nonlocal chars, spans, first
        close()
        if chars:
            text = "".join(chars)
            samples.append(Sample(text, unique((t, text[a:b]) for t, a, b in spans), first))
        chars, spans, first = [], [], None

    for number, line in enumerate(read_lines(path), start=1):
        parts = line.split()
        if not parts:
            finish()
            continue
        if parts[0] == "-DOCSTART-":
            continue
        if len(parts) < 2:
            raise IEError(f"{where(path, number, 'tag')}: expected a character and its tag separated by a space "
                          f"or tab (`字 B-ORG`), got {line.strip()!r}")
        token, tag = parts[0], parts[-1]
        first = first or number
        if tag == "O":
            close()
            chars.append(token)
            continue
        match = TAG.match(tag)
        if not match:
            raise IEError(f"{where(path, number, 'tag')}: {tag!r} is not a tag; expected O or B-/I-/M-/E-/S- "
                          f"followed by a type, e.g. B-ORG")
        prefix, type_name = match.group(1), entity_name(match.group(2), labels, schema, fixed, path, number, "tag")
        continuing = open_span is not None and open_span[0] == type_name and prefix in "IME"
        if not continuing:
            close()  # an I-/E- without its B- (IOB1 style) starts an entity too
            open_span = [type_name, len(chars), number]
        chars.append(token)
        if prefix in "ES":
            close()
    finish()
    if not samples:
        raise IEError(f"{path}: contains no sentence")
    return samples, schema


BOSON = re.compile(r"\{\{([^{}:：]+)[:：]([^{}]*)\}\}")


def read_boson(path, schema_path=None) -> tuple[list[Sample], Schema]:
    """BosonNER: each non-blank line is a sample; `{{company_name:招商银行}}` marks an entity."""
    schema, labels = read_entity_schema(schema_path) if schema_path else (Schema("ner", []), {})
    fixed = bool(schema_path)
    samples = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        pieces, entities, at = [], [], 0
        for match in BOSON.finditer(line):
            gap = line[at:match.start()]
            for mark in ("{{", "}}"):
                if mark in gap:
                    col = at + gap.index(mark) + 1
                    raise IEError(f"{where(path, number, 'entity')}: column {col}: unmatched {mark!r}; entities are "
                                  f"written {{{{type:text}}}}")
            entity = match.group(2).strip()
            if not entity:
                raise IEError(f"{where(path, number, 'entity')}: column {match.start() + 1}: "
                              f"{match.group(0)!r} has no text")
            label = match.group(1).strip()
            entities.append((entity_name(label, labels, schema, fixed, path, number, "entity"), entity))
            pieces += [gap, entity]
            at = match.end()
        tail = line[at:]
        for mark in ("{{", "}}"):
            if mark in tail:
                col = at + tail.index(mark) + 1
                raise IEError(f"{where(path, number, 'entity')}: column {col}: unmatched or malformed {mark!r}; "
                              f"entities are written {{{{type:text}}}}")
        text = ("".join(pieces) + tail).strip()
        if text:
            samples.append(Sample(text, unique(entities), number))
    if not samples:
        raise IEError(f"{path}: contains no paragraph")
    return samples, schema


# ---------------------------------------------------------------- RE


def slot_value(value, path, line, name) -> str:
    """DuIE2.0 writes `{"@value": "..."}` (plus other slots of an n-ary relation); DuIE1.0 a plain string."""
    if isinstance(value, dict):
        return need_str(value.get("@value"), path, line, f"{name}.@value")
    return need_str(value, path, line, name)


def read_duie_schema(path) -> Schema:
    schema = Schema("re", [])
    for number, row in json_lines(path):
        predicate = need_str(row.get("predicate"), path, number, "predicate")
        subject_type = slot_value(row.get("subject_type"), path, number, "subject_type")
        object_type = slot_value(row.get("object_type"), path, number, "object_type")
        if predicate not in schema.types:
            schema.add(predicate)
            schema.details[predicate] = f"（主体：{subject_type}，客体：{object_type}）"
    if not schema.types:
        raise IEError(f"{path}: the schema names no relation")
    return schema


def read_duie(path, schema_path=None) -> tuple[list[Sample], Schema]:
    schema = read_duie_schema(schema_path) if schema_path else Schema("re", [])
    samples = []
    for number, row in json_lines(path):
        text = need_str(row.get("text"), path, number, "text")
        triples = []
        for k, spo in enumerate(need_list(row.get("spo_list"), path, number, "spo_list")):
            name = f"spo_list[{k}]"
            if not isinstance(spo, dict):
                raise IEError(f"{where(path, number, name)}: expected an object, got {type(spo).__name__}")
            subject = need_str(spo.get("subject"), path, number, f"{name}.subject")
            predicate = need_str(spo.get("predicate"), path, number, f"{name}.predicate")
            obj = slot_value(spo.get("object"), path, number, f"{name}.object")
            if schema_path and predicate not in schema.types:
                raise IEError(f"{where(path, number, f'{name}.predicate')}: {predicate!r} is not in the schema "
                              f"{schema_path}")
            if not schema_path and predicate not in schema.types:
                schema.add(predicate)
                if "subject_type" in spo and "object_type" in spo:
                    subject_type = slot_value(spo["subject_type"], path, number, f"{name}.subject_type")
                    object_type = slot_value(spo["object_type"], path, number, f"{name}.object_type")
                    schema.details[predicate] = f"（主体：{subject_type}，客体：{object_type}）"
            triples.append((subject, predicate, obj))
        samples.append(Sample(text, unique(triples), number))
    if not samples:
        raise IEError(f"{path}: contains no record")
    return samples, schema


def read_relation2id(path) -> Schema:
    schema = Schema("re", [])
    for number, line in enumerate(read_lines(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise IEError(f"{where(path, number)}: expected `relation id` (e.g. `unknown 0`), got {line.strip()!r}")
        if parts[0] not in NO_RELATION:
            schema.add(parts[0])
    if not schema.types:
        raise IEError(f"{path}: names no relation other than {' / '.join(NO_RELATION)}")
    return schema


def read_finre(path, schema_path=None) -> tuple[list[Sample], Schema]:
    """`head<TAB>tail<TAB>relation<TAB>sentence` per line; the lines of one sentence make one sample."""
    schema = read_relation2id(schema_path) if schema_path else Schema("re", [])
    by_sentence: dict[str, Sample] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 3) if line.count("\t") >= 3 else line.split(None, 3)
        if len(parts) < 4:
            raise IEError(f"{where(path, number)}: expected `head<TAB>tail<TAB>relation<TAB>sentence`, got "
                          f"{len(parts)} column(s)")
        head, tail, relation, sentence = (p.strip() for p in parts)
        for value, name in ((head, "head"), (tail, "tail"), (relation, "relation"), (sentence, "sentence")):
            if not value:
                raise IEError(f"{where(path, number, name)}: is empty")
        if relation not in NO_RELATION:
            if schema_path and relation not in schema.types:
                raise IEError(f"{where(path, number, 'relation')}: {relation!r} is not in {schema_path}")
            schema.add(relation)
        sample = by_sentence.setdefault(sentence, Sample(sentence, [], number))
        if relation not in NO_RELATION and (head, relation, tail) not in sample.answer:
            sample.answer.append((head, relation, tail))
    if not by_sentence:
        raise IEError(f"{path}: contains no line")
    return list(by_sentence.values()), schema


# ---------------------------------------------------------------- EE


def read_event_schema(path) -> Schema:
    schema = Schema("ee", [])
    for number, row in json_lines(path):
        event_type = need_str(row.get("event_type"), path, number, "event_type")
        roles = []
        for k, role in enumerate(need_list(row.get("role_list"), path, number, "role_list")):
            value = role.get("role") if isinstance(role, dict) else None
            roles.append(need_str(value, path, number, f"role_list[{k}].role"))
        schema.add(event_type)
        schema.roles[event_type] = unique(schema.roles.get(event_type, []) + roles)
    if not schema.types:
        raise IEError(f"{path}: the schema names no event type")
    for event_type, roles in schema.roles.items():
        schema.details[event_type] = f"（角色：{'、'.join(roles)}）" if roles else ""
    return schema


def read_duee(path, schema_path=None) -> tuple[list[Sample], Schema]:
    schema = read_event_schema(schema_path) if schema_path else Schema("ee", [])
    samples = []
    for number, row in json_lines(path):
        text = need_str(row.get("text"), path, number, "text")
        events = []
        for k, event in enumerate(need_list(row.get("event_list"), path, number, "event_list")):
            name = f"event_list[{k}]"
            if not isinstance(event, dict):
                raise IEError(f"{where(path, number, name)}: expected an object, got {type(event).__name__}")
            event_type = need_str(event.get("event_type"), path, number, f"{name}.event_type")
            trigger = need_str(event.get("trigger"), path, number, f"{name}.trigger")
            if schema_path and event_type not in schema.types:
                raise IEError(f"{where(path, number, f'{name}.event_type')}: {event_type!r} is not in the schema "
                              f"{schema_path}")
            arguments = []
            for j, arg in enumerate(need_list(event.get("arguments", []), path, number, f"{name}.arguments")):
                arg_name = f"{name}.arguments[{j}]"
                if not isinstance(arg, dict):
                    raise IEError(f"{where(path, number, arg_name)}: expected an object with role and argument")
                role = need_str(arg.get("role"), path, number, f"{arg_name}.role")
                value = need_str(arg.get("argument"), path, number, f"{arg_name}.argument")
                if schema_path and role not in schema.roles[event_type]:
                    raise IEError(f"{where(path, number, f'{arg_name}.role')}: {role!r} is not a role of "
                                  f"{event_type!r} in {schema_path} ({'、'.join(schema.roles[event_type])})")
                if not schema_path:
                    schema.roles.setdefault(event_type, [])
                    if role not in schema.roles[event_type]:
                        schema.roles[event_type].append(role)
                arguments.append((role, value))
            if not schema_path:
                schema.add(event_type)
                schema.roles.setdefault(event_type, [])
            events.append((event_type, trigger, unique(arguments)))
        samples.append(Sample(text, events, number))
    if not samples:
        raise IEError(f"{path}: contains no record")
    if not schema_path:
        for event_type, roles in schema.roles.items():
            schema.details[event_type] = f"（角色：{'、'.join(roles)}）" if roles else ""
    return samples, schema


READERS = {"bio": ("ner", read_bio), "boson": ("ner", read_boson), "duie": ("re", read_duie),
           "finre": ("re", read_finre), "duee": ("ee", read_duee)}
