"""Score a model on multiple-choice exams (C-Eval / CMMLU / FinanceIQ CSV folders, CFLUE JSON).

    python evaluate.py --lora_weights outputs/quickstart/lora --exam_dir evaluation_data/fin_exam --k_shot 5
    python evaluate.py --exam_dir /data/ceval-exam --split val          # a real exam, given by path

Writes OUTPUT_DIR/exam_results.json (per subject, overall, every question's choice) and exam_results.md.
Each subject is also saved in OUTPUT_DIR/subjects/ as it finishes; `--resume True` keeps those scored with the
same settings and scores only the rest (an interrupted run of a large exam goes on where it stopped).
"""
from __future__ import annotations

import logging
from pathlib import Path

from utils import exam, settings
from utils.adapters import load_for_inference
from utils.cli import bool_flags, run
from utils.files import atomic_write_json, atomic_write_text

logger = logging.getLogger("evaluate")


@bool_flags
def main(
    base_model: str = settings.BASE_MODEL,
    lora_weights: str = "",
    exam_dir: str = settings.EXAM_DIR,
    split: str = "auto",
    k_shot: int = 0,
    method: str = "logits",
    batch_size: int = settings.EXAM_BATCH_SIZE,
    load_8bit=False,
    load_4bit=False,
    trust_remote_code=False,
    output_dir: str = "outputs/exam",
    resume=False,
):
    """Accuracy per subject and overall; --method logits (option-letter scores) or generate (letter in the answer)."""
    scored, shots = exam.load_exam(exam_dir, split)
    model, tokenizer = load_for_inference(base_model, lora_weights or None, load_8bit,
                                          load_4bit,
                                          trust_remote_code)
    out = Path(output_dir)
    run_key = dict(base_model=base_model, lora_weights=lora_weights or None, exam_dir=str(exam_dir), split=split,
                   k_shot=k_shot, method=method)
    subjects_dir = out / "subjects"
    done = exam.read_finished_subjects(subjects_dir, run_key) if resume else {}
    if done:
        logger.info("Resuming: %d subject(s) already scored in %s", len(done), subjects_dir)

    def save_subject(result):
        atomic_write_json(subjects_dir / exam.subject_file_name(result["subject"]), {**run_key, **result})

    results = exam.evaluate_exam(model, tokenizer, scored, shots, k_shot, method, batch_size, done=done,
                                 on_subject=save_subject)
    results.update(run_key)
    atomic_write_json(out / "exam_results.json", results)
    atomic_write_text(out / "exam_results.md", exam.markdown(results))
    print(exam.markdown(results))
    if results["questions_per_second"]:
        print(f"{results['scored_now']} questions scored in {results['seconds']} s: "
              f"{results['questions_per_second']} questions/s")
    logger.info("Wrote %s and %s", out / "exam_results.json", out / "exam_results.md")


if __name__ == "__main__":
    run(main)
