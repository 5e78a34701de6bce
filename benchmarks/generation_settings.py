"""Choose the default generation settings by measurement: the same answers scored under each setting.

    python benchmarks/generation_settings.py --lora_weights outputs/lora-fin
    python benchmarks/generation_settings.py --lora_weights outputs/lora-fin --candidates greedy,penalty_1.1 --limit 20

For the base alone (in its own chat template and in the adapter's template) and for base + adapter, every setting
answers the same infer.json cases; each answer set is scored by ROUGE-L (jieba words) and character ROUGE-L
against the references, and by its repetition: looping answers (a 6-character run said three or more times),
distinct-2, answers that ran into the template's next-turn marker. The reference loss does not depend on how
answers are generated (it is teacher-forced), so a setting cannot change it. Writes OUT.md and OUT.json.
Sampled settings use --seed (the same draws on every run).
"""
from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils import hardware, settings  # noqa: E402
from utils.adapters import inference_prompter, load_for_inference  # noqa: E402
from utils.cli import parse_list, run  # noqa: E402
from utils.data.records import load_records  # noqa: E402
from utils.errors import UsageError  # noqa: E402
from utils.files import atomic_write_json, atomic_write_text  # noqa: E402
from utils.generation import answer_cases, generation_settings  # noqa: E402
from utils.loading import pick_device  # noqa: E402
from utils.metrics import score_answers  # noqa: E402

# name: the fields that differ from utils/settings.py GENERATION
SETTINGS = {
    "greedy": {"do_sample": False, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0},
    "penalty_1.05": {"do_sample": False, "repetition_penalty": 1.05, "no_repeat_ngram_size": 0},
    "penalty_1.1": {"do_sample": False, "repetition_penalty": 1.1, "no_repeat_ngram_size": 0},
    "penalty_1.2": {"do_sample": False, "repetition_penalty": 1.2, "no_repeat_ngram_size": 0},
    "no_repeat_8": {"do_sample": False, "repetition_penalty": 1.0, "no_repeat_ngram_size": 8},
    "no_repeat_12": {"do_sample": False, "repetition_penalty": 1.0, "no_repeat_ngram_size": 12},
    "no_repeat_16": {"do_sample": False, "repetition_penalty": 1.0, "no_repeat_ngram_size": 16},
    "penalty_1.05_no_repeat_12": {"do_sample": False, "repetition_penalty": 1.05, "no_repeat_ngram_size": 12},
    "sample_0.7": {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.0,
                   "no_repeat_ngram_size": 0},
    "sample_0.7_penalty_1.1": {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 40,
                               "repetition_penalty": 1.1, "no_repeat_ngram_size": 0},
}
COLUMNS = [("rouge-l", "{:.2f}"), ("char-rouge-l", "{:.2f}"), ("loop_share", "{:.1f}"), ("distinct-2", "{:.1f}"),
           ("marker_share", "{:.1f}"), ("mean_answer_chars", "{:.0f}")]


def main(base_model: str = settings.BASE_MODEL, lora_weights: str = "", infer_data_path: str = settings.INFER_DATA,
         candidates: str = ",".join(SETTINGS), limit: int = 0, max_new_tokens: int = None,
         batch_size: int = 8, seed: int = 42, base: bool = True, output: str = "benchmarks/results/generation_settings"):
    """Score every setting in --candidates on the first --limit cases (0 = all) of INFER_DATA_PATH; write OUTPUT.md/.json."""
    names = parse_list(candidates)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise UsageError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    cases = load_records(infer_data_path)
    cases = cases[:limit] if limit > 0 else cases
    models = ([("base (chat template)", None, "chat"), ("base (adapter's template)", None, None)] if base else []) \
        + ([("base + adapter", lora_weights, None)] if lora_weights else [])
    if not models:
        raise UsageError("nothing to score: give --lora_weights, or leave --base True")
    machine = hardware.describe(pick_device())
    lines = [f"Generation settings, {date.today()}, {machine}. {len(cases)} cases of {infer_data_path}, "
             f"max_new_tokens {max_new_tokens or settings.GENERATION.max_new_tokens}, batch {batch_size}, "
             f"seed {seed}; adapter {lora_weights or '—'}.", "",
             "| model | setting | ROUGE-L | char ROUGE-L | looping % | distinct-2 | ran into marker % | mean chars | "
             "new tokens/s |", "|---|---|---|---|---|---|---|---|---|"]
    results = {}
    for label, adapter, template in models:
        model, tokenizer = load_for_inference(base_model, adapter)
        prompter = inference_prompter(tokenizer, template, adapter)
        for name in names:
            generation = generation_settings(max_new_tokens=max_new_tokens, **SETTINGS[name])
            torch.manual_seed(seed)
            began = time.perf_counter()
            rows = answer_cases(model, tokenizer, prompter, cases, batch_size=batch_size, generation=generation)
            seconds = time.perf_counter() - began
            scores = score_answers(rows)
            scores["tokens_per_second"] = round(sum(r["new_tokens"] for r in rows) / seconds, 1)
            results.setdefault(label, {})[name] = {**scores, "template": prompter.template_name,
                                                   "answers": [r["model_output"] for r in rows]}
            cells = [pattern.format(scores[key]) for key, pattern in COLUMNS]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + f" | {scores['tokens_per_second']} |")
            print(lines[-1], flush=True)
        del model
    atomic_write_json(Path(output).with_suffix(".json"), {"machine": machine, "date": str(date.today()),
                                                          "cases": len(cases), "results": results})
    atomic_write_text(Path(output).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    run(main)
