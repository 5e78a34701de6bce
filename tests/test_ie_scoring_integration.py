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


def test_infer_score_reports_the_f1_of_the_json_a_trained_adapter_writes(tiny_model, tmp_path):
    """An adapter trained (seconds) to write these cases' JSON answers: infer --score parses what it wrote and
    scores it; a wrong scorer, or answers cut at a marker, would not give these F1s."""
    import finetune

    adapter = tmp_path / "ie"
    finetune.train(base_model=tiny_model, data_path=str(write_json(tmp_path / "train.json", [NER_CASE, RE_CASE] * 3)),
                   output_dir=str(adapter), load_8bit=False, micro_batch_size=2, batch_size=2, learning_rate=2e-2,
                   max_steps=60, save_steps=60, cutoff_len=256, warmup_steps=0, lora_dropout=0.0, bf16=False)
    cases = write_json(tmp_path / "mixed.json", [RECORDS[0], NER_CASE, RE_CASE])
    infer.main(base_model=tiny_model, lora_weights=str(adapter), infer_data_path=str(cases),
               output_path=str(tmp_path / "a.jsonl"), max_new_tokens=128, score=True)
    rows = [json.loads(line) for line in open(tmp_path / "a.jsonl", encoding="utf-8")]
    assert [r.get("task") for r in rows] == [None, "ner", "re"]
    assert [r["model_output"] for r in rows[1:]] == [NER_CASE["output"], RE_CASE["output"]]  # learned by heart
    scores = json.loads((tmp_path / "a.scores.json").read_text(encoding="utf-8"))
    assert scores["scored_cases"] == 1 and scores["ie_cases"] == 2 and scores["ie_invalid"] == 0
    assert scores["ner-f1"] == scores["re-f1"] == 100.0
    assert scores["ie"]["ner"]["correct"] == scores["ie"]["ner"]["gold"] == 1
