"""IE F1 beside ROUGE: score_answers splits QA from IE rows; infer.py --score and the report carry the F1s."""
from __future__ import annotations

import json

import infer
from conftest import RECORDS, write_json
from utils.metrics import score_answers
from utils.report import metrics_markdown

NER_CASE = {"instruction": "找出文本中的公司实体。以JSON对象回答。", "input": "招商银行发布年报",
            "output": json.dumps({"公司": ["招商银行"]}, ensure_ascii=False), "task": "ner"}
RE_CASE = {"instruction": "抽取控股关系，以JSON列表回答。", "input": "甲集团控股乙银行",
           "output": json.dumps([{"subject": "甲集团", "relation": "控股", "object": "乙银行"}], ensure_ascii=False),
           "task": "re"}


def test_score_answers_gives_rouge_to_qa_rows_and_f1_to_ie_rows():
    rows = [{**RECORDS[0], "model_output": RECORDS[0]["output"]},
            {**NER_CASE, "model_output": '```json\n{"公司": ["招商银行"]}\n```'},
            {**RE_CASE, "model_output": "甲集团控股乙银行。"}]
    scores = score_answers(rows)
    assert scores["scored_cases"] == 1 and scores["rouge-l"] == 100.0  # the QA row alone
    assert scores["ner-f1"] == 100.0 and scores["re-f1"] == 0.0 and scores["ie_invalid"] == 1
    assert scores["ie_cases"] == 2 and scores["ie"]["re"]["gold"] == 1
    table = metrics_markdown({"base": scores})
    assert "NER F1" in table and "RE F1" in table and "IE invalid answers" in table and "EE event F1" not in table
    assert "| base | " in table and "100.00" in table


def test_infer_score_reports_ie_f1_per_task(tiny_model, tmp_path):
    cases = write_json(tmp_path / "mixed.json", [RECORDS[0], NER_CASE, RE_CASE])
    infer.main(base_model=tiny_model, infer_data_path=str(cases), output_path=str(tmp_path / "a.jsonl"),
               max_new_tokens=8, score=True)
    rows = [json.loads(line) for line in open(tmp_path / "a.jsonl", encoding="utf-8")]
    assert [r.get("task") for r in rows] == [None, "ner", "re"]
    scores = json.loads((tmp_path / "a.scores.json").read_text(encoding="utf-8"))
    assert scores["scored_cases"] == 1 and scores["ie_cases"] == 2
    assert set(scores["ie"]) == {"ner", "re"} and scores["ie"]["ner"]["gold"] == 1
    # the tiny random model writes no JSON: both IE answers are invalid, so nothing is predicted
    assert scores["ie_invalid"] == 2 and scores["ner-f1"] == scores["re-f1"] == 0.0
