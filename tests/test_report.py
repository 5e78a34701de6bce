import json

from utils.report import metrics_markdown, write_report

METRICS = {"base": {"fin_loss": 2.5061, "rouge-l": 3.65, "exam_accuracy": 25.0},
           "lora": {"fin_loss": 2.149, "rouge-l": 13.67, "exam_accuracy": 27.5, "general_loss": 2.2}}
CASES = [{"instruction": "什么是<b>LPR</b>？", "input": "", "output": "贷款市场报价利率。"}]
ANSWERS = {"base": [{"model_output": "不知道"}], "lora": [{"model_output": "LPR是贷款市场报价利率。"}]}


def test_metrics_table_has_only_present_columns_and_a_dash_for_gaps():
    lines = metrics_markdown(METRICS).strip().splitlines()
    assert lines[0] == "| model | held-out fin. loss ↓ | general loss ↓ | ROUGE-L | exam acc. (%) |"
    assert lines[2] == "| base | 2.506 | — | 3.65 | 25.0 |"
    assert lines[3] == "| lora | 2.149 | 2.200 | 13.67 | 27.5 |"


def test_report_files_hold_the_figures_and_escape_the_page(tmp_path):
    paths = write_report(tmp_path, METRICS, CASES, ANSWERS, "| answers |\n", {"cases": 1})
    assert set(paths) == {"metrics_md", "metrics_json", "comparison_md", "html"}
    saved = json.loads(paths["metrics_json"].read_text(encoding="utf-8"))
    assert saved == {"settings": {"cases": 1}, "models": METRICS}
    assert paths["comparison_md"].read_text(encoding="utf-8").endswith("| answers |\n")
    page = paths["html"].read_text(encoding="utf-8")
    assert "什么是&lt;b&gt;LPR&lt;/b&gt;？" in page and "<b>LPR</b>" not in page
    assert "LPR是贷款市场报价利率。" in page and page.count("data:image/png;base64,") == 1
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*"))
