"""IE converters: each corpus format -> instruction records with canonical JSON answers; malformed input -> error."""
from __future__ import annotations

import json

import pytest

from conftest import run_script
from utils.data.records import load_records
from utils.ie import IEError, convert_file
from utils.ie.instructions import PHRASINGS, records_from_samples
from utils.ie.sources import Sample, Schema, read_bio, read_boson, read_duee, read_duie, read_finre


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path, rows):
    return write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def convert(tmp_path, fmt, source, schema=None, **kw):
    out = tmp_path / "out.json"
    convert_file(fmt, source, out, schema, **kw)
    records = json.loads(out.read_text(encoding="utf-8"))
    # the project's own reader accepts what the converter writes (and adds an empty history)
    assert [{k: v for k, v in r.items() if k != "history"} for r in load_records(out)] == records
    return records


# ---------------------------------------------------------------- NER: BIO / BIOES / BMES


def test_bio_sentences_and_entities(tmp_path):
    source = write(tmp_path / "bio.txt", "招 B-ORG\n商 I-ORG\n银 I-ORG\n行 I-ORG\n增 O\n持 O\n\n\n"
                                         "张\tB-PER\n三\tI-PER\n任\tO\n董 B-TITLE\n事 I-TITLE\n长 I-TITLE\n")
    samples, schema = read_bio(source)
    assert [(s.text, s.answer, s.line) for s in samples] == [
        ("招商银行增持", [("机构", "招商银行")], 1), ("张三任董事长", [("人名", "张三"), ("职位", "董事长")], 9)]
    assert schema.types == ["机构", "人名", "职位"]
    records = convert(tmp_path, "bio", source)
    assert [json.loads(r["output"]) for r in records] == [{"机构": ["招商银行"], "人名": [], "职位": []},
                                                           {"机构": [], "人名": ["张三"], "职位": ["董事长"]}]
    assert all(r["task"] == "ner" and "机构、人名、职位" in r["instruction"] for r in records)
    assert records[1]["input"] == "张三任董事长"


def test_bioes_and_bmes_tags_and_an_i_without_b(tmp_path):
    # BIOES: S- single, E- closes; BMES (ResumeNER): M- inside; an I- after O starts an entity (IOB1).
    source = write(tmp_path / "bioes.txt", "平 B-公司\n安 E-公司\n和 O\n宁 S-地点\n的 O\n李 B-人名\n小 M-人名\n明 E-人名\n"
                                           "与 O\n王 I-人名\n五 I-人名\n王 O\n五 O\n")
    samples, _ = read_bio(source)
    assert samples[0].text == "平安和宁的李小明与王五王五"
    assert samples[0].answer == [("公司", "平安"), ("地点", "宁"), ("人名", "李小明"), ("人名", "王五")]


def test_adjacent_entities_of_one_type_stay_apart(tmp_path):
    samples, _ = read_bio(write(tmp_path / "b.txt", "甲 B-公司\n乙 B-公司\n丙 I-公司\n"))
    assert samples[0].answer == [("公司", "甲"), ("公司", "乙丙")]


def test_bio_schema_renames_labels_fixes_the_order_and_refuses_other_types(tmp_path):
    schema = write(tmp_path / "types.txt", "# 实体类型\nPER 人名\nORG 公司\n金额\n")
    source = write(tmp_path / "bio.txt", "华 B-ORG\n为 I-ORG\n")
    records = convert(tmp_path, "bio", source, schema)
    assert json.loads(records[0]["output"]) == {"人名": [], "公司": ["华为"], "金额": []}
    bad = write(tmp_path / "bad.txt", "华 B-ORG\n为 I-ORG\n\n三 B-LOC\n")
    with pytest.raises(IEError, match=r"bad.txt: line 4: field 'tag': entity type 'LOC' is not in the schema"):
        read_bio(bad, schema)


@pytest.mark.parametrize("text,message", [
    ("招 B-ORG\n商\n", r"line 2: field 'tag': expected a character and its tag"),
    ("招 B-ORG\n商 X-ORG\n", r"line 2: field 'tag': 'X-ORG' is not a tag"),
    ("招 BORG\n", r"line 1: field 'tag': 'BORG' is not a tag"),
])
def test_bio_malformed_lines_name_file_line_and_field(tmp_path, text, message):
    with pytest.raises(IEError, match="bio.txt: " + message):
        read_bio(write(tmp_path / "bio.txt", text))


# ---------------------------------------------------------------- NER: BosonNER


def test_boson_inline_entities(tmp_path):
    source = write(tmp_path / "boson.txt", "{{time:2024年3月}}，{{company_name:招商银行}}在{{location:深圳}}发布年报。\n\n"
                                           "{{person_name:王五}}出任{{公司:平安银行}}行长，{{person_name:王五}}表示……\n")
    samples, schema = read_boson(source)
    assert [(s.text, s.answer, s.line) for s in samples] == [
        ("2024年3月，招商银行在深圳发布年报。", [("时间", "2024年3月"), ("公司", "招商银行"), ("地点", "深圳")], 1),
        ("王五出任平安银行行长，王五表示……", [("人名", "王五"), ("公司", "平安银行")], 3)]
    assert schema.types == ["时间", "公司", "地点", "人名"]


@pytest.mark.parametrize("line,message", [
    ("{{company_name:招商银行}}与{{person_name:王五", r"line 1: field 'entity': column 23: unmatched or malformed '\{\{'"),
    ("招商银行}}发布", r"line 1: field 'entity': column 5: unmatched or malformed '\}\}'"),
    ("{{company_name:}}发布", r"line 1: field 'entity': column 1: '\{\{company_name:\}\}' has no text"),
    ("{{公司 招商银行}}发布", r"line 1: field 'entity': column 1: unmatched or malformed '\{\{'"),
])
def test_boson_malformed_markup(tmp_path, line, message):
    with pytest.raises(IEError, match="boson.txt: " + message):
        read_boson(write(tmp_path / "boson.txt", line + "\n"))


# ---------------------------------------------------------------- RE: DuIE2.0

DUIE_SCHEMA = [{"object_type": {"@value": "公司"}, "predicate": p, "subject_type": "公司"}
               for p in ("控股", "持股", "收购", "担保", "合作", "起诉", "供应")] + [
    {"object_type": {"@value": "公司"}, "predicate": "任职", "subject_type": "人物"}]


def duie_row(text, *spos):
    return {"text": text, "spo_list": [{"predicate": p, "object_type": {"@value": "公司"}, "subject_type": "公司",
                                        "object": {"@value": o}, "subject": s} for s, p, o in spos]}


def test_duie_with_a_large_schema_is_asked_in_groups_of_six(tmp_path):
    schema = jsonl(tmp_path / "schema.json", DUIE_SCHEMA)
    source = jsonl(tmp_path / "duie.json", [
        duie_row("甲公司控股乙公司，张三任职于乙公司。", ("甲公司", "控股", "乙公司"), ("张三", "任职", "乙公司"),
                 ("甲公司", "控股", "乙公司")),
        duie_row("丙公司与丁公司无往来。")])
    records = convert(tmp_path, "duie", source, schema)
    assert len(records) == 4  # 2 sentences x 2 groups (6 + 2 relations)
    assert "控股（主体：公司，客体：公司）" in records[0]["instruction"] and "任职" not in records[0]["instruction"]
    assert "任职（主体：人物，客体：公司）" in records[1]["instruction"]
    assert [json.loads(r["output"]) for r in records] == [
        [{"subject": "甲公司", "relation": "控股", "object": "乙公司"}],
        [{"subject": "张三", "relation": "任职", "object": "乙公司"}], [], []]


def test_duie_reads_a_plain_string_object_and_finds_types_without_schema(tmp_path):
    row = {"text": "甲收购乙", "spo_list": [{"subject": "甲", "predicate": "收购", "object": "乙"}]}
    samples, schema = read_duie(jsonl(tmp_path / "d.json", [row]))
    assert samples[0].answer == [("甲", "收购", "乙")] and schema.types == ["收购"]


@pytest.mark.parametrize("row,message", [
    ({"text": "甲", "spo_list": [{"subject": "甲", "predicate": "控股", "object": {"value": "乙"}}]},
     r"line 2: field 'spo_list\[0\].object.@value': expected a string, got nothing"),
    ({"text": "甲", "spo_list": [{"subject": "甲", "predicate": "欠款", "object": {"@value": "乙"}}]},
     r"line 2: field 'spo_list\[0\].predicate': '欠款' is not in the schema"),
    ({"text": "甲"}, r"line 2: field 'spo_list': expected a list, got nothing"),
    ({"text": "", "spo_list": []}, r"line 2: field 'text': is empty"),
])
def test_duie_malformed_records(tmp_path, row, message):
    schema = jsonl(tmp_path / "schema.json", DUIE_SCHEMA)
    source = jsonl(tmp_path / "duie.json", [duie_row("甲控股乙", ("甲", "控股", "乙")), row])
    with pytest.raises(IEError, match="duie.json: " + message):
        read_duie(source, schema)


def test_duie_invalid_json_line(tmp_path):
    source = write(tmp_path / "duie.json", json.dumps(duie_row("甲", ("甲", "控股", "乙"))) + "\n{\"text\": \n")
    with pytest.raises(IEError, match=r"duie.json: line 2: not valid JSON"):
        read_duie(source)


# ---------------------------------------------------------------- RE: FinRE / SanWen (Chinese_NRE)


def test_finre_groups_the_lines_of_a_sentence_and_drops_no_relation(tmp_path):
    rel = write(tmp_path / "relation2id.txt", "unknown 0\n控股 1\n持股 2\n")
    source = write(tmp_path / "finre.txt",
                   "甲集团\t乙银行\t控股\t甲集团控股乙银行，丙基金持股乙银行。\n"
                   "丙基金\t乙银行\t持股\t甲集团控股乙银行，丙基金持股乙银行。\n"
                   "丁公司\t戊公司\tunknown\t丁公司和戊公司同日发布公告。\n"
                   "甲集团\t丙基金\tNA\t甲集团控股乙银行，丙基金持股乙银行。\n")
    samples, schema = read_finre(source, rel)
    assert schema.types == ["控股", "持股"]
    assert [(s.text, s.answer, s.line) for s in samples] == [
        ("甲集团控股乙银行，丙基金持股乙银行。", [("甲集团", "控股", "乙银行"), ("丙基金", "持股", "乙银行")], 1),
        ("丁公司和戊公司同日发布公告。", [], 3)]
    records = convert(tmp_path, "finre", source, rel)
    assert [json.loads(r["output"]) for r in records] == [
        [{"subject": "甲集团", "relation": "控股", "object": "乙银行"},
         {"subject": "丙基金", "relation": "持股", "object": "乙银行"}], []]


@pytest.mark.parametrize("line,message", [
    ("甲\t乙\t控股\n", r"line 2: expected `head<TAB>tail<TAB>relation<TAB>sentence`, got 3 column"),
    ("甲\t乙\t并购\t甲并购乙\n", r"line 2: field 'relation': '并购' is not in"),
    ("甲\t\t控股\t甲控股乙\n", r"line 2: field 'tail': is empty"),
])
def test_finre_malformed_lines(tmp_path, line, message):
    rel = write(tmp_path / "relation2id.txt", "unknown 0\n控股 1\n")
    source = write(tmp_path / "finre.txt", "甲\t乙\t控股\t甲控股乙\n" + line)
    with pytest.raises(IEError, match="finre.txt: " + message):
        read_finre(source, rel)


def test_relation2id_malformed(tmp_path):
    rel = write(tmp_path / "relation2id.txt", "unknown 0\n控股\n")
    with pytest.raises(IEError, match=r"relation2id.txt: line 2: expected `relation id`"):
        read_finre(write(tmp_path / "f.txt", "甲\t乙\t控股\t甲控股乙\n"), rel)


# ---------------------------------------------------------------- EE: DuEE / DuEE-fin

EVENT_SCHEMA = [{"event_type": "质押", "role_list": [{"role": r} for r in ("质押方", "质权方", "质押股票/股份数量")]},
                {"event_type": "股份回购", "role_list": [{"role": r} for r in ("回购方", "回购金额")]}]


def test_duee_repeated_roles_become_a_list(tmp_path):
    schema = jsonl(tmp_path / "schema.json", EVENT_SCHEMA)
    source = jsonl(tmp_path / "duee.json", [
        {"id": "1", "text": "甲公司与乙公司将所持股份质押给丙银行，共1000万股。", "event_list": [
            {"event_type": "质押", "trigger": "质押", "arguments": [
                {"role": "质押方", "argument": "甲公司", "argument_start_index": 0},
                {"role": "质押方", "argument": "乙公司"}, {"role": "质权方", "argument": "丙银行"},
                {"role": "质押股票/股份数量", "argument": "1000万股"}, {"role": "质权方", "argument": "丙银行"}]}]},
        {"id": "2", "text": "丁公司公告称将回购股份。", "event_list": [
            {"event_type": "股份回购", "trigger": "回购", "arguments": [{"role": "回购方", "argument": "丁公司"}]}]}])
    records = convert(tmp_path, "duee", source, schema)
    assert "质押（角色：质押方、质权方、质押股票/股份数量）；股份回购（角色：回购方、回购金额）" in records[0]["instruction"]
    assert [json.loads(r["output"]) for r in records] == [
        [{"event_type": "质押", "trigger": "质押",
          "arguments": {"质押方": ["甲公司", "乙公司"], "质权方": "丙银行", "质押股票/股份数量": "1000万股"}}],
        [{"event_type": "股份回购", "trigger": "回购", "arguments": {"回购方": "丁公司"}}]]


@pytest.mark.parametrize("event,message", [
    ({"event_type": "质押", "trigger": "质押", "arguments": [{"role": "出质人", "argument": "甲"}]},
     r"line 1: field 'event_list\[0\].arguments\[0\].role': '出质人' is not a role of '质押'"),
    ({"event_type": "中标", "trigger": "中标", "arguments": []},
     r"line 1: field 'event_list\[0\].event_type': '中标' is not in the schema"),
    ({"event_type": "质押", "arguments": []}, r"line 1: field 'event_list\[0\].trigger': expected a string"),
    ({"event_type": "质押", "trigger": "质押", "arguments": [{"role": "质押方"}]},
     r"line 1: field 'event_list\[0\].arguments\[0\].argument': expected a string, got nothing"),
])
def test_duee_malformed_events(tmp_path, event, message):
    schema = jsonl(tmp_path / "schema.json", EVENT_SCHEMA)
    with pytest.raises(IEError, match="duee.json: " + message):
        read_duee(jsonl(tmp_path / "duee.json", [{"text": "甲质押", "event_list": [event]}]), schema)


def test_a_file_with_no_type_and_no_schema_is_an_error(tmp_path):
    with pytest.raises(IEError, match=r"finre.txt: no type to ask for"):
        convert_file("finre", write(tmp_path / "finre.txt", "甲\t乙\tNA\t甲和乙\n"), tmp_path / "o.json")
    assert not (tmp_path / "o.json").exists()


def test_duee_without_schema_collects_types_and_roles(tmp_path):
    source = jsonl(tmp_path / "duee.json", [{"text": "甲中标", "event_list": [
        {"event_type": "中标", "trigger": "中标", "arguments": [{"role": "中标公司", "argument": "甲"}]}]}])
    _, schema = read_duee(source)
    assert schema.types == ["中标"] and schema.roles == {"中标": ["中标公司"]}


# ---------------------------------------------------------------- phrasing, seed, limit, command


def test_the_seed_chooses_among_several_phrasings():
    samples = [Sample(f"句子{k}", [], k) for k in range(40)]
    schema = Schema("ner", ["公司", "人名"])
    first = [r["instruction"] for r in records_from_samples("ner", samples, schema, seed=1)]
    assert first == [r["instruction"] for r in records_from_samples("ner", samples, schema, seed=1)]
    assert first != [r["instruction"] for r in records_from_samples("ner", samples, schema, seed=2)]
    assert len(set(first)) == len(PHRASINGS["ner"]) >= 3


def test_limit_draws_samples_with_the_seed_in_file_order(tmp_path):
    source = write(tmp_path / "bio.txt", "\n\n".join(f"{c} B-公司\n涨 O" for c in "甲乙丙丁戊己庚辛") + "\n")
    inputs = [r["input"] for r in convert(tmp_path, "bio", source, limit=3, seed=7)]
    assert len(inputs) == 3 and inputs == sorted(inputs, key=lambda text: "甲乙丙丁戊己庚辛".index(text[0]))
    assert inputs == [r["input"] for r in convert(tmp_path, "bio", source, limit=3, seed=7)]


def test_command_converts_and_a_malformed_line_leaves_no_output(tmp_path):
    good = write(tmp_path / "good.txt", "招 B-ORG\n商 I-ORG\n")
    out = tmp_path / "ie" / "ner.json"
    done = run_script("-m", "utils.ie", "convert", "--format", "bio", good, "--output", out, "--seed", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["records"] == 1
    assert json.loads(json.loads(out.read_text(encoding="utf-8"))[0]["output"]) == {"机构": ["招商"]}

    bad = write(tmp_path / "bad.txt", "招 B-ORG\n商 I-ORG\n\n银\n")
    out2 = tmp_path / "ie" / "bad.json"
    done = run_script("-m", "utils.ie", "convert", "--format", "bio", bad, "--output", out2)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: line 4: field 'tag': expected a character and its tag separated by a space or tab "
        f"(`字 B-ORG`), got '银'")
    assert not out2.exists() and sorted(p.name for p in out.parent.iterdir()) == ["ner.json"]


def test_merge_concatenates_converted_files_into_one_test_set(tmp_path):
    ner = tmp_path / "ner.json"
    convert_file("bio", write(tmp_path / "bio.txt", "甲 B-公司\n"), ner)
    ee = tmp_path / "ee.json"
    convert_file("duee", jsonl(tmp_path / "duee.json", [{"text": "乙中标", "event_list": [
        {"event_type": "中标", "trigger": "中标", "arguments": []}]}]), ee)
    out = tmp_path / "test.json"
    done = run_script("-m", "utils.ie", "merge", ner, ee, "--output", out)
    assert done.returncode == 0, done.stderr[-2000:]
    merged = json.loads(out.read_text(encoding="utf-8"))
    assert merged == json.loads(ner.read_text(encoding="utf-8")) + json.loads(ee.read_text(encoding="utf-8"))
    assert [r["task"] for r in merged] == ["ner", "ee"]


def test_the_checker_does_not_call_the_groups_of_one_sentence_duplicates(tmp_path):
    from utils.data.check import check_file

    schema = jsonl(tmp_path / "schema.json", DUIE_SCHEMA)
    source = jsonl(tmp_path / "duie.json", [
        duie_row("甲集团控股乙银行，持股比例为百分之五十一。", ("甲集团", "控股", "乙银行")),
        duie_row("甲集团控股乙银行，持股比例为百分之五十二。", ("甲集团", "控股", "乙银行"))])
    out = tmp_path / "re.json"
    convert_file("duie", source, out, schema)
    problems = check_file(out).problems
    # 4 records: each sentence asked in two groups (not duplicates of each other); the second sentence nearly
    # repeats the first, which both of its records report
    assert [(p.number, "near duplicate of record 1" in p.message) for p in problems] == [(3, True), (4, True)]


def test_empty_share_caps_the_records_with_an_empty_answer():
    # 2 relation types asked one per record (group_size 1): each sentence has one, so half the records are empty.
    schema = Schema("re", ["控股", "担保"])
    samples = [Sample(f"甲{k}控股乙{k}", [(f"甲{k}", "控股", f"乙{k}")], k) for k in range(12)]
    everything = records_from_samples("re", samples, schema, seed=1, group_size=1)
    assert sum(r["output"] == "[]" for r in everything) == 12
    capped = records_from_samples("re", samples, schema, seed=1, group_size=1, empty_share=0.25)
    # 12 filled records; at most 0.25 of all: 4 empty (4 / 16), drawn with the seed, the rest kept in order
    assert sum(r["output"] == "[]" for r in capped) == 4 and len(capped) == 16
    assert [r for r in capped if r["output"] != "[]"] == [r for r in everything if r["output"] != "[]"]
    assert capped == records_from_samples("re", samples, schema, seed=1, group_size=1, empty_share=0.25)
    assert sum(r["output"] == "[]" for r in records_from_samples("re", samples, schema, seed=1, group_size=1,
                                                                  empty_share=0.0)) == 0
    with pytest.raises(IEError, match="--empty_share"):
        records_from_samples("re", samples, schema, empty_share=1.0)
