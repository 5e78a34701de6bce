import csv
import json

import pytest
import torch

from conftest import run_script
from utils.adapters import load_for_inference
from utils.exam import ExamError, evaluate_exam, extract_letter, letter_token_ids, load_exam


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def ceval_folder(root, answers=("A", "B", "C", "C")):
    header = ["id", "question", "A", "B", "C", "D", "answer"]
    write_csv(root / "dev" / "bank_dev.csv", header + ["explanation"],
              [[0, "存款保险最高偿付多少？", "20万", "50万", "100万", "不限", "B", "50万元"]])
    write_csv(root / "val" / "bank_val.csv", header,
              [[i, f"问题{i}", "甲", "乙", "丙", "丁", a] for i, a in enumerate(answers)])
    write_csv(root / "test" / "bank_test.csv", header, [[0, "无答案", "甲", "乙", "丙", "丁", ""]])
    return root


class RiggedModel(torch.nn.Module):
    """Always scores one token highest as the next token: the scorer must then choose that letter."""

    def __init__(self, vocab_size, favourite):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.vocab_size, self.favourite = vocab_size, favourite

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        logits[:, -1, self.favourite] = 5.0
        return type("Output", (), {"logits": logits})


def test_letter_scorer_picks_the_rigged_letter(tiny_model, tmp_path):
    _, tokenizer = load_for_inference(tiny_model)
    scored, shots = load_exam(ceval_folder(tmp_path))
    assert list(scored) == ["bank"] and len(scored["bank"]) == 4 and len(shots["bank"]) == 1
    for letter, expected in (("A", 25.0), ("C", 50.0), ("D", 0.0)):
        favourite = letter_token_ids(tokenizer)["ABCD".index(letter)]
        results = evaluate_exam(RiggedModel(len(tokenizer), favourite), tokenizer, scored, shots, k_shot=1)
        assert results["subjects"]["bank"]["accuracy"] == expected
        assert {d["chosen"] for d in results["details"]} == {letter}
        assert results["subjects"]["overall"] == {"accuracy": expected, "correct": int(expected / 25), "total": 4}


def test_generate_method_scores_the_letter_the_model_writes(tiny_model, tmp_path):
    """A real model made to write one letter whatever it is asked: --method generate must score exactly that letter."""
    model, tokenizer = load_for_inference(tiny_model)
    scored, shots = load_exam(ceval_folder(tmp_path))
    for letter, expected in (("C", 50.0), ("A", 25.0), ("D", 0.0)):
        favourite = letter_token_ids(tokenizer)["ABCD".index(letter)]

        def rig(module, inputs, output, favourite=favourite):
            output.logits[..., favourite] += 1000.0
            return output

        handle = model.register_forward_hook(rig)
        try:
            results = evaluate_exam(model, tokenizer, scored, shots, k_shot=1, method="generate")
        finally:
            handle.remove()
        assert {d["chosen"] for d in results["details"]} == {letter}
        assert results["subjects"]["overall"] == {"accuracy": expected, "correct": int(expected / 25), "total": 4}


def test_cmmlu_and_financeiq_layouts(tmp_path):
    write_csv(tmp_path / "dev" / "tax.csv", ["", "Question", "A", "B", "C", "D", "Answer"], [[0, "q", "1", "2", "3", "4", "A"]])
    write_csv(tmp_path / "test" / "tax.csv", ["", "Question", "A", "B", "C", "D", "Answer"],
              [[0, "q1", "1", "2", "3", "4", "D"], [1, "q2", "1", "2", "3", "4", "b"]])
    scored, shots = load_exam(tmp_path)
    assert [q.answer for q in scored["tax"]] == ["D", "B"] and shots["tax"][0].question == "q"


def test_cflue_json_scores_only_single_choice(tmp_path):
    path = tmp_path / "cflue.json"
    path.write_text(json.dumps([
        {"名称": "证券专项考试", "task": "单项选择题", "question": "复利终值公式？",
         "choices": "{'A': 'FV=PV(1+In)', 'B': 'PV=FV(1+In)', 'C': 'FV=PV(1+I)^n', 'D': 'PV=FV(1+I)^n'}", "answer": "C"},
        {"名称": "证券专项考试", "task": "多项选择题", "question": "多选", "choices": {"A": "1", "B": "2", "C": "3", "D": "4"},
         "answer": "AB"}], ensure_ascii=False), encoding="utf-8")
    scored, shots = load_exam(path)
    [q] = scored["证券专项考试"]
    assert q.options["C"] == "FV=PV(1+I)^n" and q.answer == "C" and shots == {}


def test_bad_exam_folders(tmp_path):
    with pytest.raises(ExamError, match="no such exam folder"):
        load_exam(tmp_path / "missing")
    write_csv(tmp_path / "val" / "x_val.csv", ["question", "A", "B", "C", "answer"], [["q", "1", "2", "3", "A"]])
    with pytest.raises(ExamError, match="missing column"):
        load_exam(tmp_path)


@pytest.mark.parametrize("text, letter", [("答案是C。", "C"), ("B. 因为……", "B"), ("我认为选D", "D"), ("答案：A", "A"),
                                          ("无法判断", "")])
def test_letter_extraction_from_generated_text(text, letter):
    assert extract_letter(text) == letter


def test_evaluate_command_scores_a_ceval_folder_by_path(tiny_model, tmp_path):
    folder = ceval_folder(tmp_path / "ceval")
    out = tmp_path / "out"
    for method in ("logits", "generate"):
        done = run_script("evaluate.py", "--base_model", tiny_model, "--exam_dir", folder, "--k_shot", "1",
                          "--method", method, "--output_dir", out)
        assert done.returncode == 0, done.stderr[-2000:]
        results = json.loads((out / "exam_results.json").read_text(encoding="utf-8"))
        assert results["subjects"]["overall"]["total"] == 4 and results["method"] == method
        assert "| bank |" in (out / "exam_results.md").read_text(encoding="utf-8")


def test_shipped_exam_and_general_set():
    from conftest import ROOT
    from utils.data import load_records

    scored, shots = load_exam(ROOT / "evaluation_data" / "fin_exam")
    assert len(scored) >= 4 and sum(len(q) for q in scored.values()) >= 40
    assert all(len(shots[s]) >= 5 for s in scored)
    for questions in scored.values():  # no letter may be a free pass
        letters = [q.answer for q in questions]
        assert max(letters.count(x) for x in "ABCD") <= len(letters) / 2
    general = load_records(ROOT / "evaluation_data" / "general.json")
    langs = [r["lang"] for r in general]
    assert len(general) >= 30 and langs.count("zh") >= 10 and langs.count("en") >= 10
