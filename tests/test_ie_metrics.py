"""IE scoring: lenient parsing of answers and micro P/R/F1, checked against counts worked out by hand."""
from __future__ import annotations

import json

import pytest

from utils.ie import IEError, parse_answer, score_ie
from utils.ie.metrics import flat_scores


def row(task, gold, predicted):
    return {"task": task, "output": json.dumps(gold, ensure_ascii=False),
            "model_output": predicted if isinstance(predicted, str) else json.dumps(predicted, ensure_ascii=False)}


@pytest.mark.parametrize("text,task,expected", [
    ('{"公司": ["甲"]}', "ner", {"公司": ["甲"]}),
    ('答案：\n```json\n{"公司": ["甲"]}\n```\n以上。', "ner", {"公司": ["甲"]}),
    ('```\n[{"subject": "甲", "relation": "控股", "object": "乙"}]\n```', "re",
     [{"subject": "甲", "relation": "控股", "object": "乙"}]),
    ('抽取结果是 [{"subject": "甲", "relation": "控股", "object": "乙"}]，请参考。', "re",
     [{"subject": "甲", "relation": "控股", "object": "乙"}]),
    ('{"subject": "甲", "relation": "控股", "object": "乙"}', "re", [{"subject": "甲", "relation": "控股", "object": "乙"}]),
    ('[{"subject": "甲"', "re", None),                      # cut off: not JSON
    ('[]', "ner", None),                                     # NER answers are an object
    ('文本中的实体有：甲公司', "ner", None),
    ('说明{不是JSON} 然后 {"人名": ["张三"]}', "ner", {"人名": ["张三"]}),
    (None, "ee", None),
])
def test_parse_answer(text, task, expected):
    assert parse_answer(text, task) == expected


def test_ner_micro_f1_with_duplicates_empty_and_invalid_answers():
    rows = [
        # prediction said 招商银行 twice (counts once) and one wrong entity: 1 correct of 2 predicted, 2 gold
        row("ner", {"公司": ["招商银行", "平安银行"], "人名": []},
            '答案如下：```json\n{"公司": ["招商银行", "招商银行", "中信"], "人名": []}\n```'),
        row("ner", {"公司": [], "人名": ["张三"]}, "我不知道"),             # invalid: 0 predicted, 1 gold
        row("ner", {"公司": [], "人名": []}, {"公司": [], "人名": []}),     # empty and right: nothing counted
        row("ner", {"公司": ["华为"]}, 'The entities are {"公司": "华为"} done'),  # a string for a list: 1 of 1
        {"instruction": "QA", "output": "答案", "model_output": "答"},      # no task: not an IE record
    ]
    ner = score_ie(rows)["ner"]
    # correct 2, predicted 3, gold 4: P = 2/3, R = 1/2, F1 = 2PR/(P+R) = 4/7
    assert ner == {"cases": 4, "invalid": 1, "precision": 66.67, "recall": 50.0, "f1": 57.14,
                   "correct": 2, "predicted": 3, "gold": 4,
                   # 3 gold with items (the invalid answer is not an empty one), 1 gold empty and answered empty
                   "gold_filled": 3, "empty_on_filled": 0, "gold_empty": 1, "filled_on_empty": 0}


def test_empty_answers_where_the_gold_has_items_and_the_reverse_are_counted_apart():
    rows = [row("re", [{"subject": "甲", "relation": "控股", "object": "乙"}], "[]"),   # missed everything
            row("re", [{"subject": "甲", "relation": "控股", "object": "乙"}], "无"),    # invalid: not "empty"
            row("re", [], '[{"subject": "甲", "relation": "控股", "object": "乙"}]'),   # items where none are
            row("re", [], "[]"),
            row("ner", {"公司": ["甲"]}, {"公司": []}),                                    # NER: all lists empty
            row("ner", {"公司": []}, {"公司": ["甲"]})]
    scores = score_ie(rows)
    assert {k: scores["re"][k] for k in ("gold_filled", "empty_on_filled", "gold_empty", "filled_on_empty")} == \
        {"gold_filled": 2, "empty_on_filled": 1, "gold_empty": 2, "filled_on_empty": 1}
    assert {k: scores["ner"][k] for k in ("gold_filled", "empty_on_filled", "gold_empty", "filled_on_empty")} == \
        {"gold_filled": 1, "empty_on_filled": 1, "gold_empty": 1, "filled_on_empty": 1}


def test_re_strict_triples():
    rows = [
        row("re", [{"subject": "甲", "relation": "控股", "object": "乙"}, {"subject": "丙", "relation": "持股", "object": "乙"}],
            [{"subject": "甲", "relation": "控股", "object": "乙"}, {"subject": "乙", "relation": "控股", "object": "甲"},
             {"subject": "甲公司", "relation": "控股", "object": "乙"}]),        # reversed and longer name: wrong
        row("re", [], "[]"),
        row("re", [{"subject": "丁", "relation": "担保", "object": "戊"}],
            '{"subject": " 丁", "relation": "担保", "object": "戊"}'),            # one object alone, spaces stripped
        row("re", [], '[{"subject": "甲", "relation": "控股"}]'),                # incomplete triple: not a prediction
        row("re", [{"subject": "甲", "relation": "收购", "object": "乙"}], '[{"subject": "甲", "relation": "收购", "object": "乙"'),
    ]
    # correct 2, predicted 4, gold 4
    assert score_ie(rows)["re"] == {"cases": 5, "invalid": 1, "precision": 50.0, "recall": 50.0, "f1": 50.0,
                                    "correct": 2, "predicted": 4, "gold": 4, "gold_filled": 3,
                                    "empty_on_filled": 0, "gold_empty": 2, "filled_on_empty": 0}


def test_ee_event_and_argument_f1_with_a_repeated_role():
    rows = [
        row("ee", [{"event_type": "质押", "trigger": "质押", "arguments": {"质押方": ["甲", "乙"], "质权方": "丙"}}],
            [{"event_type": "质押", "trigger": "质押", "arguments": {"质押方": "甲", "质权方": "丙", "质押股份": "100万股"}}]),
        row("ee", [{"event_type": "股份回购", "trigger": "回购", "arguments": {"回购方": "丁"}},
                   {"event_type": "中标", "trigger": "中标", "arguments": {"中标公司": "戊"}}],
            [{"event_type": "股份回购", "trigger": "回购股份", "arguments": [{"role": "回购方", "argument": "丁"}]}]),
        row("ee", [], "[]"),
    ]
    ee = score_ie(rows)["ee"]
    # events: correct 1 (质押), predicted 2, gold 3 -> P 1/2, R 1/3, F1 2/5
    assert (ee["event_precision"], ee["event_recall"], ee["event_f1"]) == (50.0, 33.33, 40.0)
    assert (ee["event_correct"], ee["event_predicted"], ee["event_gold"]) == (1, 2, 3)
    # arguments: correct 3 (甲, 丙, 丁), predicted 4, gold 5 -> P 3/4, R 3/5, F1 2/3
    assert (ee["argument_precision"], ee["argument_recall"], ee["argument_f1"]) == (75.0, 60.0, 66.67)
    assert (ee["argument_correct"], ee["argument_predicted"], ee["argument_gold"]) == (3, 4, 5)
    assert ee["cases"] == 3 and ee["invalid"] == 0


def test_nothing_predicted_and_nothing_gold_scores_zero_not_an_error():
    assert score_ie([row("re", [], "无")])["re"] == {"cases": 1, "invalid": 1, "precision": 0.0, "recall": 0.0,
                                                     "f1": 0.0, "correct": 0, "predicted": 0, "gold": 0,
                                                     "gold_filled": 0, "empty_on_filled": 0, "gold_empty": 1,
                                                     "filled_on_empty": 0}
    assert score_ie([{"output": "答案", "model_output": "答"}]) == {}


def test_flat_scores_for_the_metrics_table():
    rows = [row("ner", {"公司": ["甲"]}, {"公司": ["甲"]}),
            row("ee", [{"event_type": "中标", "trigger": "中标", "arguments": {}}], "不知道")]
    assert flat_scores(score_ie(rows)) == {"ner-f1": 100.0, "ee-event-f1": 0.0, "ee-argument-f1": 0.0,
                                           "ie_invalid": 1}


def test_a_gold_answer_that_is_not_json_is_an_error_naming_the_record():
    with pytest.raises(IEError, match=r"record 2: field 'output' is not a re answer in JSON"):
        score_ie([row("re", [], "[]"), {"task": "re", "output": "甲控股乙", "model_output": "[]"}])
    with pytest.raises(IEError, match=r"record 1: field 'task' must be one of ner, re, ee, got 'qa'"):
        score_ie([{"task": "qa", "output": "x", "model_output": "y"}])


def test_score_command_reads_an_answers_file(tmp_path):
    from conftest import run_script

    answers = tmp_path / "answers.jsonl"
    rows = [{"instruction": "抽取实体", "input": "甲", **row("ner", {"公司": ["甲"]}, {"公司": ["甲", "乙"]})},
            {"instruction": "问", "input": "", "output": "答", "model_output": "答"}]
    answers.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    done = run_script("-m", "utils.ie", "score", answers)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["ner"] == {"cases": 1, "invalid": 0, "precision": 50.0, "recall": 100.0,
                                              "f1": 66.67, "correct": 1, "predicted": 2, "gold": 1,
                                              "gold_filled": 1, "empty_on_filled": 0, "gold_empty": 0,
                                              "filled_on_empty": 0}
