import json

from conftest import RECORDS, run_script, write_json
from test_exam import ceval_folder
from utils.comparison import markdown_table, model_specs


def test_specs_cover_base_each_adapter_and_extra_pairs():
    specs = model_specs("B", ["runs/a", "other/a"], ["q=Q@runs/x", "plain=P"])
    assert [(s.label, s.base_model, s.lora_weights) for s in specs] == [
        ("base", "B", None), ("a", "B", "runs/a"), ("a-2", "B", "other/a"), ("q", "Q", "runs/x"), ("plain", "P", None)]


def test_markdown_table_has_a_row_per_question_and_a_column_per_model():
    cases = [{"instruction": "问|题", "input": "", "output": "参考\n答案"}, {"instruction": "二", "input": "x", "output": ""}]
    answers = {"base": [{"model_output": "甲"}, {"model_output": ""}], "ft": [{"model_output": "乙|"}, {"model_output": "丁"}]}
    lines = markdown_table(cases, answers).strip().splitlines()
    assert lines[0] == "| # | 问题 | 参考答案 | base | ft |"
    assert lines[2] == "| 1 | 问\\|题 | 参考<br>答案 | 甲 | 乙\\| |"
    assert lines[3] == "| 2 | 二<br>（x） | — | — | 丁 |"
    assert len(lines) == 4


def test_comparison_script_runs_base_and_adapter(tiny_model, tmp_path):

    data = write_json(tmp_path / "train.json", RECORDS)
    out = tmp_path / "lora"
    done = run_script("finetune.py", "--base_model", tiny_model, "--data_path", data, "--output_dir", out,
                      "--load_8bit", "False", "--max_steps", "6", "--learning_rate", "1e-2", "--micro_batch_size", "2",
                      "--batch_size", "2", "--cutoff_len", "128")
    assert done.returncode == 0, done.stderr[-2000:]
    cases = write_json(tmp_path / "cases.json", RECORDS[:3])
    report_dir = tmp_path / "cmp" / "nested"
    exam = ceval_folder(tmp_path / "exam")
    done = run_script("compare.py", "--base_model", tiny_model, "--lora_weights", out, "--infer_data_path", cases,
                      "--output_dir", report_dir, "--max_new_tokens", "6", "--general_data_path", data,
                      "--exam_dir", exam, "--k_shot", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    table = (report_dir / "comparison.md").read_text(encoding="utf-8")
    assert "| # | 问题 | 参考答案 | base | lora |" in table
    for case in RECORDS[:3]:
        assert case["instruction"] in table
    assert len((report_dir / "base.jsonl").read_text().splitlines()) == 3
    assert len((report_dir / "lora.jsonl").read_text().splitlines()) == 3
    metrics = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))["models"]
    assert list(metrics) == ["base", "lora"]
    for m in metrics.values():
        for key in ("fin_loss", "general_loss", "rouge-l", "char-rouge-l", "bleu-4", "exam_accuracy", "tokens_per_second"):
            assert isinstance(m[key], (int, float)), key
    # The adapter was trained on these very records: it must predict them better than the base.
    assert metrics["lora"]["general_loss"] < metrics["base"]["general_loss"]
    rows = (report_dir / "metrics.md").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("| model | held-out fin. loss") and [r.split(" | ")[0] for r in rows[2:]] == ["| base", "| lora"]
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert page.count("<table>") == 3 and 'src="data:image/png;base64,' in page and "什么是股票？" in page
    assert page.index("Did fine-tuning help?") < page.index("指标 / Metrics")
    # The report opens with the verdict: the tiny base has no chat template, so it was asked in the training one.
    assert table.index("Did fine-tuning help?") < table.index("## 指标 / Metrics")
    assert metrics["base"]["template"] == metrics["lora"]["template"] == "fin_qa"
    summary = table[table.index("Did fine-tuning help?"):table.index("## 模型 / Models")]
    fin_row = next(line for line in summary.splitlines() if line.startswith("| held-out financial loss"))
    base_cell, lora_cell = fin_row.split(" | ")[1:3]
    assert float(base_cell) == round(metrics["base"]["fin_loss"], 3)
    assert lora_cell.startswith(f"{metrics['lora']['fin_loss']:.3f} ")
    assert ("✓" in lora_cell) == (metrics["lora"]["fin_loss"] < metrics["base"]["fin_loss"])
