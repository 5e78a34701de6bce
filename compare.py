"""Answer the same test cases with several models; write side-by-side answers, metrics and an HTML report.

    python compare.py --base_model base_models/SmolLM2-135M-Instruct --lora_weights outputs/lora-fin \
        --infer_data_path instruction_data/infer.json --output_dir outputs/comparison

Compares the base alone and base + each adapter in --lora_weights (comma-separated);
--models "name=BASE,name2=BASE@ADAPTER" adds any other (base, adapter) pairs.
"""
from __future__ import annotations

from utils.cli import parse_bool, run


def main(
    base_model: str = "base_models/SmolLM2-135M-Instruct",
    lora_weights="",
    models="",
    infer_data_path: str = "instruction_data/infer.json",
    output_dir: str = "outputs/comparison",
    general_data_path: str = "evaluation_data/general.json",
    exam_dir: str = "evaluation_data/fin_exam",
    k_shot: int = 0,
    load_8bit=False,
    load_4bit=False,
    prompt_template: str = "",
    max_new_tokens: int = 128,
    batch_size: int = 4,
    limit: int = 0,
    repetition_penalty: float = 1.0,
):
    """Write OUTPUT_DIR/comparison.md, metrics.md, metrics.json, report.html and <model>.jsonl."""
    from utils import comparison, data
    from utils.exam import ExamError, load_exam

    cases = data.load_records(infer_data_path, require_output=False)
    cases = cases[:limit] if limit > 0 else cases  # the first N cases only: a quick look
    general = data.load_records(general_data_path) if general_data_path else None
    try:
        specs = comparison.model_specs(base_model, lora_weights, models)
        exam = load_exam(exam_dir) if exam_dir else None
    except (ValueError, ExamError) as err:
        raise SystemExit(f"error: {err}")
    paths = comparison.compare(
        specs, cases, output_dir, load_8bit=parse_bool(load_8bit, "load_8bit"),
        load_4bit=parse_bool(load_4bit, "load_4bit"), prompt_template=prompt_template or None,
        batch_size=batch_size, general_cases=general, exam=exam, k_shot=k_shot,
        max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
    )
    print("\n".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    run(main)
