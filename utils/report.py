"""The comparison report: metrics table (Markdown), every figure (JSON), and one self-contained HTML page."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: draw to a PNG in memory
import matplotlib.pyplot as plt  # noqa: E402

from utils.files import atomic_write_json, atomic_write_text  # noqa: E402

# (key in a model's metrics, column title, format)
COLUMNS = [
    ("fin_loss", "held-out fin. loss ↓", "{:.3f}"),
    ("fin_perplexity", "fin. perplexity ↓", "{:.2f}"),
    ("general_loss", "general loss ↓", "{:.3f}"),
    ("rouge-1", "ROUGE-1", "{:.2f}"),
    ("rouge-2", "ROUGE-2", "{:.2f}"),
    ("rouge-l", "ROUGE-L", "{:.2f}"),
    ("char-rouge-l", "char ROUGE-L", "{:.2f}"),
    ("bleu-4", "BLEU-4", "{:.2f}"),
    ("exam_accuracy", "exam acc. (%)", "{:.1f}"),
    ("ner-f1", "NER F1", "{:.2f}"),
    ("re-f1", "RE F1", "{:.2f}"),
    ("ee-event-f1", "EE event F1", "{:.2f}"),
    ("ee-argument-f1", "EE arg. F1", "{:.2f}"),
    ("ie_invalid", "IE invalid answers", "{:d}"),
    ("loop_share", "looping answers (%) ↓", "{:.1f}"),
    ("distinct-2", "distinct-2", "{:.1f}"),
    ("marker_share", "ran into turn marker (%) ↓", "{:.1f}"),
    ("mean_answer_chars", "mean answer chars", "{:.1f}"),
    ("tokens_per_second", "gen. tokens/s", "{:.1f}"),
]
CHART_SCORES = [("rouge-l", "ROUGE-L"), ("char-rouge-l", "char ROUGE-L"), ("bleu-4", "BLEU-4"),
                ("exam_accuracy", "exam accuracy %"), ("ner-f1", "NER F1"), ("re-f1", "RE F1"),
                ("ee-event-f1", "EE event F1"), ("ee-argument-f1", "EE arg. F1")]
CHART_LOSSES = [("fin_loss", "held-out financial loss"), ("general_loss", "general-domain loss")]


# The "did fine-tuning help" summary: (key, what it is, True where higher is better)
SUMMARY = [
    ("fin_loss", "held-out financial loss 留出金融问答 loss", False),
    ("rouge-l", "ROUGE-L", True),
    ("loop_share", "looping answers 循环的回答 (%)", False),
    ("marker_share", "answers that ran into the turn marker 跑进下一轮的回答 (%)", False),
    ("ner-f1", "NER F1", True),
    ("re-f1", "RE F1", True),
    ("ee-event-f1", "EE event F1", True),
    ("exam_accuracy", "exam accuracy 考试准确率 (%)", True),
    ("general_loss", "general-domain loss 通用领域 loss (forgetting)", False),
]


def summary_rows(metrics: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): each adapter against the first model without one, measure by measure, with a verdict."""
    bases = [label for label, m in metrics.items() if not m.get("lora_weights")]
    adapters = [label for label, m in metrics.items() if m.get("lora_weights")]
    if not bases or not adapters:
        return [], []
    base = metrics[bases[0]]
    header = ["measure", f"{bases[0]} ({base.get('template', '?')})"] + adapters
    rows = []
    for key, name, higher in SUMMARY:
        if key not in base or not any(key in metrics[a] for a in adapters):
            continue
        row = [name + (" ↑" if higher else " ↓"), _number(base[key])]
        for label in adapters:
            value = metrics[label].get(key)
            if not isinstance(value, (int, float)):
                row.append("—")
                continue
            change = value - base[key]
            verdict = "=" if abs(change) < 1e-9 else "✓" if (change > 0) == higher else "✗"
            relative = f" ({change / base[key]:+.1%})" if key.endswith("_loss") and base[key] else ""
            row.append(f"{_number(value)} {verdict}{relative}")
        rows.append(row)
    return header, rows


def summary_markdown(metrics: dict[str, dict]) -> str:
    header, rows = summary_rows(metrics)
    if not rows:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return ("## 微调有没有帮助？ Did fine-tuning help?\n\n✓ better than the base, ✗ worse, = the same. "
            "The base row is the first model without an adapter, asked in the template named beside it.\n\n"
            + "\n".join(lines) + "\n\n")


def _number(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) and abs(value) < 10 else f"{value:.1f}" \
        if isinstance(value, float) else str(value)


def _fmt(value, pattern):
    return pattern.format(value) if isinstance(value, (int, float)) else "—"


def metrics_markdown(metrics: dict[str, dict]) -> str:
    present = [c for c in COLUMNS if any(c[0] in m for m in metrics.values())]
    lines = ["| model | " + " | ".join(title for _, title, _ in present) + " |",
             "|---|" + "---|" * len(present)]
    for label, m in metrics.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(m.get(key), fmt) for key, _, fmt in present) + " |")
    return "\n".join(lines) + "\n"


def bar_chart_png(metrics: dict[str, dict]) -> bytes:
    """Grouped bars: the main scores (higher is better) and the two losses (lower is better)."""
    labels = list(metrics)
    panels = [(title, [(k, name) for k, name in keys if any(k in m for m in metrics.values())])
              for title, keys in (("scores (higher is better)", CHART_SCORES), ("loss (lower is better)", CHART_LOSSES))]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.6), squeeze=False)
    width = 0.8 / max(1, len(labels))
    for ax, (title, keys) in zip(axes[0], panels):
        for i, label in enumerate(labels):
            values = [metrics[label].get(k) or 0 for k, _ in keys]
            bars = ax.bar([x + i * width for x in range(len(keys))], values, width, label=label)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(keys))], [name for _, name in keys])
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c).replace(chr(10), '<br>')}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(output_dir, metrics: dict[str, dict], cases: list[dict], answers: dict[str, list[dict]],
                 answers_markdown: str, settings: dict) -> dict[str, Path]:
    """metrics.md, metrics.json, comparison.md (metrics + answers) and report.html in output_dir."""
    out = Path(output_dir)
    table = metrics_markdown(metrics)
    paths = {"metrics_md": out / "metrics.md", "metrics_json": out / "metrics.json",
             "comparison_md": out / "comparison.md", "html": out / "report.html"}
    atomic_write_text(paths["metrics_md"], table)
    atomic_write_json(paths["metrics_json"], {"settings": settings, "models": metrics})
    templates = "".join(f"- `{label}`: {m.get('base_model')}" + (f" + {m['lora_weights']}" if m.get("lora_weights")
                                                                   else " alone") + f", template `{m.get('template')}`\n"
                        for label, m in metrics.items())
    atomic_write_text(paths["comparison_md"], "# 模型对比 / Model comparison\n\n" + summary_markdown(metrics) +
                      "## 模型 / Models\n\n" + templates + "\n## 指标 / Metrics\n\n" + table +
                      "\n## 回答 / Answers\n\n" + answers_markdown)
    present = [c for c in COLUMNS if any(c[0] in m for m in metrics.values())]
    metric_rows = [[label] + [_fmt(m.get(k), f) for k, _, f in present] for label, m in metrics.items()]
    answer_rows = [[str(i + 1), c["instruction"] + (f"\n（{c['input']}）" if c["input"] else ""), c["output"] or "—"]
                   + [answers[label][i]["model_output"] or "—" for label in answers] for i, c in enumerate(cases)]
    chart = base64.b64encode(bar_chart_png(metrics)).decode()
    settings_text = ", ".join(f"{k}: {v}" for k, v in settings.items())
    summary_header, summary_body = summary_rows(metrics)
    summary_html = ("<h2>微调有没有帮助？ Did fine-tuning help?</h2>" + _html_table(summary_header, summary_body)
                    if summary_body else "")
    page = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>Cornucopia model comparison</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 13px; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; vertical-align: top; text-align: left; }}
th {{ background: #f0f0f0; }} td {{ max-width: 28em; }}
.settings {{ color: #555; font-size: 12px; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>模型对比 / Model comparison</h1>
<p class="settings">{html.escape(settings_text)}</p>
{summary_html}
<h2>指标 / Metrics</h2>
{_html_table(["model"] + [t for _, t, _ in present], metric_rows)}
<img alt="bar chart of the main scores" src="data:image/png;base64,{chart}">
<h2>回答 / Answers</h2>
{_html_table(["#", "问题", "参考答案"] + list(answers), answer_rows)}
</body></html>
"""
    atomic_write_text(paths["html"], page)
    return paths
