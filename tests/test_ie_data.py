"""The shipped IE samples in instruction_data/ie/source/: each file is well formed in its corpus's own format,
every annotated string occurs in its sentence, labels come from the schema, the sizes the issue asks for,
and no sentence is shared between the training and the held-out files.

The parsers here are deliberately independent of utils.ie (a second reading of each format), so a converter
bug and a data bug cannot hide each other."""
import json
import re
from collections import Counter

import pytest

from conftest import ROOT

SRC = ROOT / "instruction_data" / "ie" / "source"
SPLITS = ("train", "test")
DUEE_FIN_TYPES = {"质押", "解除质押", "股份回购", "中标", "高管变动", "亏损", "企业收购", "企业融资", "被约谈",
                  "公司上市", "股东增持", "股东减持", "企业破产"}


def entity_types(name):
    """`LABEL 名称` per line: the corpus's tag and the type name the instructions use."""
    return dict(line.split(" ") for line in (SRC / name).read_text(encoding="utf-8").splitlines())


def read_bio(path):
    """[(sentence, [(type, text), ...])] from a character-per-line BIO file; asserts it is well formed."""
    types = entity_types("ner_bio_types.txt")
    out, chars, tags = [], [], []
    lines = path.read_text(encoding="utf-8").split("\n")
    for n, line in enumerate(lines + [""], 1):
        if not line.strip():
            if chars:
                out.append(("".join(chars), spans(chars, tags, path, n)))
                chars, tags = [], []
            continue
        ch, tag = line.split(" ")  # exactly one character, one space, one tag
        assert len(ch) == 1, (path.name, n, line)
        assert tag == "O" or (tag[:2] in ("B-", "I-") and tag[2:] in types), (path.name, n, tag)
        chars.append(ch)
        tags.append(tag)
    return out


def spans(chars, tags, path, n):
    found, cur = [], None
    for ch, tag in zip(chars, tags):
        if tag.startswith("I-"):
            assert cur and cur[0] == tag[2:], (path.name, n, "I- without a matching B-")
            cur[1].append(ch)
            continue
        if cur:
            found.append((cur[0], "".join(cur[1])))
        cur = [tag[2:], [ch]] if tag.startswith("B-") else None
    if cur:
        found.append((cur[0], "".join(cur[1])))
    return found


BOSON = re.compile(r"\{\{([a-z_]+):([^{}]+?)\}\}")


def read_boson(path):
    types = entity_types("ner_boson_types.txt")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), (path.name, n, "blank line")
        ents = BOSON.findall(line)
        plain = BOSON.sub(lambda m: m.group(2), line)
        assert "{{" not in plain and "}}" not in plain, (path.name, n, "unbalanced markup")
        assert ents and all(t in types for t, _ in ents), (path.name, n, ents)
        out.append((plain, ents))
    return out


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_duie(path):
    schema = {(s["predicate"], s["subject_type"], s["object_type"]["@value"])
              for s in read_jsonl(SRC / "re_duie_schema.json")}
    out = []
    for rec in read_jsonl(path):
        text = rec["text"]
        assert rec["spo_list"], text
        for spo in rec["spo_list"]:
            assert (spo["predicate"], spo["subject_type"], spo["object_type"]["@value"]) in schema, spo
            assert spo["subject"] in text and spo["object"]["@value"] in text, (text, spo)
        out.append((text, rec["spo_list"]))
    return out


def read_finre(path):
    relations = {}
    for line in (SRC / "re_finre_relation2id.txt").read_text(encoding="utf-8").splitlines():
        name, rid = line.split(" ")
        relations[name] = int(rid)
    assert sorted(relations.values()) == list(range(len(relations))) and relations["unknown"] == 0
    by_sentence = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        head, tail, rel, sentence = line.split("\t")
        assert rel in relations, (path.name, n, rel)
        assert head != tail and head in sentence and tail in sentence, (path.name, n, line)
        by_sentence.setdefault(sentence, []).append((head, rel, tail))
    return list(by_sentence.items())


def read_duee(path):
    schema = {s["event_type"]: {r["role"] for r in s["role_list"]} for s in read_jsonl(SRC / "ee_duee_schema.json")}
    assert set(schema) == DUEE_FIN_TYPES
    out = []
    for rec in read_jsonl(path):
        text = rec["text"]
        assert rec["event_list"], text
        for ev in rec["event_list"]:
            assert ev["event_type"] in schema and ev["trigger"] in text, (text, ev)
            roles = [a["role"] for a in ev["arguments"]]
            assert len(roles) == len(set(roles)), (text, ev)  # one argument per role: answers map role -> text
            for arg in ev["arguments"]:
                assert arg["role"] in schema[ev["event_type"]] and arg["argument"] in text, (text, arg)
        out.append((text, rec["event_list"]))
    return out


TASKS = {
    "ner": [("ner_bio_{}.txt", read_bio), ("ner_boson_{}.txt", read_boson)],
    "re": [("re_duie_{}.jsonl", read_duie), ("re_finre_{}.txt", read_finre)],
    "ee": [("ee_duee_{}.jsonl", read_duee)],
}


def sentences(task, split):
    return [text for pattern, reader in TASKS[task] for text, _ in reader(SRC / pattern.format(split))]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_sources_parse_with_annotations_inside_their_sentences_and_meet_the_sizes(task):
    train, test = sentences(task, "train"), sentences(task, "test")
    assert len(set(train)) >= 60 and len(set(test)) >= 30, (len(set(train)), len(set(test)))


@pytest.mark.parametrize("task", sorted(TASKS))
def test_no_sentence_is_shared_between_training_and_held_out_sources(task):
    train, test = sentences(task, "train"), sentences(task, "test")
    assert len(train) == len(set(train)), Counter(train).most_common(1)  # no duplicate within a split either
    assert not set(train) & set(test)


def test_bio_entities_match_the_sentence_and_cover_every_type():
    recs = read_bio(SRC / "ner_bio_train.txt")
    types = Counter(t for _, ents in recs for t, _ in ents)
    assert set(types) == set(entity_types("ner_bio_types.txt"))
    assert all(text in sent for sent, ents in recs for _, text in ents)


def test_every_event_type_and_relation_appears_in_training_and_held_out_files():
    for split in SPLITS:
        events = {ev["event_type"] for _, evs in read_duee(SRC / f"ee_duee_{split}.jsonl") for ev in evs}
        assert events == DUEE_FIN_TYPES, (split, DUEE_FIN_TYPES - events)
        predicates = {spo["predicate"] for _, spos in read_duie(SRC / f"re_duie_{split}.jsonl") for spo in spos}
        schema = {s["predicate"] for s in read_jsonl(SRC / "re_duie_schema.json")}
        assert predicates == schema, (split, schema - predicates)
    finre_train = {rel for _, triples in read_finre(SRC / "re_finre_train.txt") for _, rel, _ in triples}
    assert "unknown" in finre_train and len(finre_train) >= 8


def test_no_held_out_sentence_appears_in_any_task_s_training_sources():
    train = {s for task in TASKS for s in sentences(task, "train")}
    test = {s for task in TASKS for s in sentences(task, "test")}
    assert not train & test, sorted(train & test)[:3]


# ---------------------------------------------------------------- the converted records in instruction_data/ie/

IE = ROOT / "instruction_data" / "ie"
CONVERTED = {  # file written by scripts/build_ie_data.sh -> (format, source stem, schema file)
    "ner_bio": ("bio", "ner_bio_{}.txt", "ner_bio_types.txt"),
    "ner_boson": ("boson", "ner_boson_{}.txt", "ner_boson_types.txt"),
    "re_duie": ("duie", "re_duie_{}.jsonl", "re_duie_schema.json"),
    "re_finre": ("finre", "re_finre_{}.txt", "re_finre_relation2id.txt"),
    "ee_duee": ("duee", "ee_duee_{}.jsonl", "ee_duee_schema.json"),
}
SEED = 42  # build_ie_data.sh's default; the test set uses SEED + 1
EMPTY_SHARE = 0.25  # build_ie_data.sh's default cap on empty answers in the training files


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def regenerate(name, split, seed):
    from utils.ie.instructions import read_samples, records_from_samples

    fmt, pattern, schema = CONVERTED[name]
    task, samples, schema = read_samples(fmt, SRC / pattern.format(split), SRC / schema)
    return records_from_samples(task, samples, schema, seed, empty_share=EMPTY_SHARE if split == "train" else None)


def test_shipped_records_are_what_the_converters_make_of_the_sources():
    """Stale converted files (a source edited without rerunning scripts/build_ie_data.sh) fail here."""
    for name in CONVERTED:
        assert load(IE / f"{name}.json") == regenerate(name, "train", SEED), name
    assert load(IE / "ie_test.json") == [r for name in CONVERTED for r in regenerate(name, "test", SEED + 1)]


def test_held_out_ie_set_shares_no_sentence_with_the_training_records_and_has_30_per_task():
    train = {r["input"] for name in CONVERTED for r in load(IE / f"{name}.json")}
    test = load(IE / "ie_test.json")
    assert not train & {r["input"] for r in test}
    per_task = Counter()
    for task in ("ner", "re", "ee"):
        per_task[task] = len({r["input"] for r in test if r["task"] == task})
    assert min(per_task.values()) >= 30, per_task
    assert all(json.loads(r["output"]) is not None for r in test)  # canonical JSON answers
