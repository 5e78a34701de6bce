"""Answer test cases with a base model, alone or with a LoRA adapter.

    python infer.py --base_model base_models/SmolLM2-135M-Instruct --lora_weights outputs/lora-fin \
        --infer_data_path instruction_data/infer.json --output_path outputs/answers.jsonl

Without --infer_data_path (or the original's --instruct_dir) it asks questions interactively.
"""
from __future__ import annotations

import logging
import sys

from utils.cli import parse_bool, run

logger = logging.getLogger("infer")


def main(
    base_model: str = "base_models/SmolLM2-135M-Instruct",
    lora_weights: str = "",
    load_8bit=False,
    load_4bit=False,
    prompt_template: str = "",
    infer_data_path: str = "",
    output_path: str = "outputs/infer_results.jsonl",
    max_new_tokens: int = 256,
    batch_size: int = 4,
    limit: int = 0,
    do_sample=False,
    temperature: float = 0.7,
    top_p: float = 0.9,
    top_k: int = 40,
    num_beams: int = 1,
    repetition_penalty: float = 1.0,
    score=False,
    # the original Cornucopia's flag names
    instruct_dir: str = "",
    use_lora=None,
):
    """Answer INFER_DATA_PATH (JSON list or JSONL of {instruction, input, output}) into OUTPUT_PATH."""
    from utils import data, inference, modeling

    if use_lora is not None and not parse_bool(use_lora, "use_lora"):
        lora_weights = ""  # --use_lora False means the base alone, whatever --lora_weights says
    elif use_lora is not None and not lora_weights:
        raise SystemExit("error: --use_lora True needs --lora_weights PATH")
    infer_data_path = infer_data_path or instruct_dir
    cases = data.load_records(infer_data_path, require_output=False) if infer_data_path else None
    if cases and limit > 0:
        cases = cases[:limit]  # the first N cases only: a quick look

    model, tokenizer = modeling.load_for_inference(
        base_model, lora_weights or None, parse_bool(load_8bit, "load_8bit"), parse_bool(load_4bit, "load_4bit"))
    prompter = modeling.inference_prompter(tokenizer, prompt_template, lora_weights)
    settings = dict(max_new_tokens=max_new_tokens, do_sample=parse_bool(do_sample, "do_sample"),
                    temperature=temperature, top_p=top_p, top_k=top_k, num_beams=num_beams,
                    repetition_penalty=repetition_penalty)

    if cases is None:
        return interactive(model, tokenizer, prompter, settings)
    rows = inference.answer_cases(model, tokenizer, prompter, cases, batch_size=batch_size, **settings)
    inference.write_jsonl(rows, output_path)
    logger.info("%d cases, %.1f new tokens/s at batch size %d (%s)", len(rows), inference.tokens_per_second(rows),
                batch_size, "base + " + lora_weights if lora_weights else "base alone")
    if parse_bool(score, "score"):
        write_scores(model, tokenizer, prompter, cases, rows, output_path, batch_size)
    return None


def write_scores(model, tokenizer, prompter, cases, rows, output_path, batch_size) -> None:
    """ROUGE/BLEU of the answers and the teacher-forced loss of the references, next to the answers."""
    import json
    from pathlib import Path

    from utils.evaluation import reference_loss
    from utils.inference import tokens_per_second
    from utils.metrics import score_answers

    referenced = [case for case in cases if case["output"]]
    if not referenced:
        raise SystemExit("error: --score needs reference answers ('output') in the test cases")
    scores = {**score_answers(rows), **reference_loss(model, tokenizer, prompter, referenced, batch_size),
              "tokens_per_second": tokens_per_second(rows)}
    path = Path(output_path).with_suffix(".scores.json")
    path.write_text(json.dumps(scores, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    logger.info("Scores %s -> %s", scores, path)


def interactive(model, tokenizer, prompter, settings) -> None:
    from utils.generation import generate

    print("输入问题后回车；空行或 Ctrl-D 退出。 Type a question; an empty line or Ctrl-D quits.", flush=True)
    while True:
        try:
            question = input("问题> ").strip()
        except EOFError:
            break
        if not question:
            break
        answer = generate(model, tokenizer, [prompter.generate_prompt(question)], batch_size=1, progress=False,
                          **settings)[0]
        print(f"回答> {answer['text']}\n", flush=True)
    print(file=sys.stderr)


if __name__ == "__main__":
    run(main)
