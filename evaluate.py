"""Score a model on multiple-choice exams (C-Eval / CMMLU / FinanceIQ CSV folders, CFLUE JSON).

    python evaluate.py --lora_weights outputs/quickstart/lora --exam_dir evaluation_data/fin_exam --k_shot 5
    python evaluate.py --exam_dir /data/ceval-exam --split val          # a real exam, given by path

Writes OUTPUT_DIR/exam_results.json (per subject, overall, every question's choice) and exam_results.md.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from utils.cli import parse_bool, run

logger = logging.getLogger("evaluate")


def main(
    base_model: str = "base_models/SmolLM2-135M-Instruct",
    lora_weights: str = "",
    exam_dir: str = "evaluation_data/fin_exam",
    split: str = "auto",
    k_shot: int = 0,
    method: str = "logits",
    batch_size: int = 4,
    load_8bit=False,
    load_4bit=False,
    output_dir: str = "outputs/exam",
):
    """Accuracy per subject and overall; --method logits (option-letter scores) or generate (letter in the answer)."""
    from utils import exam, modeling

    try:
        scored, shots = exam.load_exam(exam_dir, split)
    except exam.ExamError as err:
        raise SystemExit(f"error: {err}")
    model, tokenizer = modeling.load_for_inference(base_model, lora_weights or None, parse_bool(load_8bit, "load_8bit"),
                                                   parse_bool(load_4bit, "load_4bit"))
    results = exam.evaluate_exam(model, tokenizer, scored, shots, k_shot, method, batch_size)
    results.update(base_model=base_model, lora_weights=lora_weights or None, exam_dir=str(exam_dir))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "exam_results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "exam_results.md").write_text(exam.markdown(results), encoding="utf-8")
    print(exam.markdown(results))
    logger.info("Wrote %s and %s", out / "exam_results.json", out / "exam_results.md")


if __name__ == "__main__":
    run(main)
