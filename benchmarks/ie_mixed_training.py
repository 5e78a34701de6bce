"""Does IE training help IE, and does it cost QA quality? Print one Markdown table.

    python benchmarks/ie_mixed_training.py --adapters qa=outputs/ie-bench/qa,mixed=outputs/ie-bench/mixed

For the base alone and base + each adapter (label=folder): micro F1 per IE task on the held-out IE test set
(NER on (type, text); RE on (subject, relation, object); EE events on (type, trigger) and arguments on
(type, role, text), scored by utils.ie.metrics, greedy answers), and the teacher-forced loss of the held-out
financial QA answers (utils.reference_loss, per answer token), and the same loss of the IE test answers (a
finer signal than F1 while a short run's answers are not yet valid JSON). benchmarks/ie_mixed_training.sh trains the
adapters and calls this; --per_task N scores N cases per IE task drawn with --seed (0 = all);
--include_base False leaves the base alone out (to split a long run); --qa_limit N (a quick check) scores the
first N QA cases only; --ie False skips the IE answers (QA loss only).
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from utils import settings  # noqa: E402
from utils.adapters import inference_prompter, load_for_inference  # noqa: E402
from utils.cli import parse_bool, parse_list, run  # noqa: E402
from utils.data.records import load_records  # noqa: E402
from utils.errors import UsageError  # noqa: E402
from utils.generation import answer_cases, generation_settings  # noqa: E402
from utils.ie.metrics import score_ie  # noqa: E402
from utils.reference_loss import reference_loss  # noqa: E402

TASKS = ("ner", "re", "ee")


def pick(cases: list[dict], per_task: int, seed: int) -> list[dict]:
    """Up to per_task cases of each task (0 = all), drawn with seed, kept in file order."""
    chosen = []
    for task in TASKS:
        of_task = [k for k, case in enumerate(cases) if case.get("task") == task]
        if per_task and per_task < len(of_task):
            of_task = sorted(random.Random(seed).sample(of_task, per_task))
        chosen += of_task
    return [cases[k] for k in sorted(chosen)]


def main(adapters: str = "", base_model: str = settings.BASE_MODEL,
         ie_test: str = "instruction_data/ie/ie_test.json", qa_test: str = settings.INFER_DATA,
         per_task: int = 0, seed: int = 42, max_new_tokens: int = 160, batch_size: int = 8,
         cutoff_len: int = 768, answers_dir: str = "", include_base=True, qa_limit: int = 0, ie=True):
    models = [("base", "")] if parse_bool(include_base, "include_base") else []
    for item in parse_list(adapters):
        label, _, folder = item.partition("=")
        if not folder:
            raise UsageError(f"--adapters takes label=folder items, got {item!r}")
        models.append((label, folder))
    ie_cases = pick(load_records(ie_test, require_output=False), int(per_task), int(seed))
    if not any(case.get("task") for case in ie_cases):
        raise UsageError(f"{ie_test}: no record carries a 'task' (ner, re or ee)")
    qa_cases = load_records(qa_test)
    if int(qa_limit) > 0:
        qa_cases = qa_cases[:int(qa_limit)]  # a quick check of the script; the table uses every case
    counts = {t: sum(1 for c in ie_cases if c.get("task") == t) for t in TASKS}
    results = []
    for label, folder in models:
        began = time.perf_counter()
        model, tokenizer = load_for_inference(base_model, folder or None)
        prompter = inference_prompter(tokenizer, lora_weights=folder or None)
        rows = answer_cases(model, tokenizer, prompter, ie_cases, batch_size=batch_size,
                            generation=generation_settings(max_new_tokens=max_new_tokens)) if parse_bool(ie, "ie") else []
        for row, case in zip(rows, ie_cases):
            row["task"] = case["task"]
        if answers_dir:
            Path(answers_dir).mkdir(parents=True, exist_ok=True)
            with open(Path(answers_dir) / f"{label}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        scores = score_ie(rows)  # {} with --ie False: the table shows "-"
        ie_loss = reference_loss(model, tokenizer, prompter, ie_cases, batch_size=4, cutoff_len=int(cutoff_len))
        print(f"{label}: ie_loss={ie_loss['loss']}", file=sys.stderr, flush=True)
        loss = reference_loss(model, tokenizer, prompter, qa_cases, batch_size=4, cutoff_len=int(cutoff_len))
        results.append((label, folder, scores, loss, ie_loss))
        print(f"{label}: {json.dumps(scores, ensure_ascii=False)} qa_loss={loss['loss']} "
              f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
        del model

    print(f"IE test: {ie_test} ({', '.join(f'{t} {n}' for t, n in counts.items())} records; greedy, "
          f"max_new_tokens {max_new_tokens}); QA loss: {qa_test} ({len(qa_cases)} cases, cutoff {cutoff_len}); "
          f"{torch.get_num_threads()} threads\n")
    print("| model | NER F1 (%) | RE F1 (%) | EE event F1 | EE argument F1 | invalid answers | IE answer loss "
          "| QA loss / token | QA ppl |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, folder, scores, loss, ie_loss in results:
        def f1(task, key="f1"):
            value = scores.get(task, {}).get(key)
            return "-" if value is None else f"{value:.1f}"
        invalid = sum(block["invalid"] for block in scores.values())
        cases = sum(block["cases"] for block in scores.values())
        name = label if not folder else f"{label} ({folder})"
        shown = f"{invalid}/{cases}" if cases else "-"
        print(f"| {name} | {f1('ner')} | {f1('re')} | {f1('ee', 'event_f1')} | {f1('ee', 'argument_f1')} | {shown} | "
              f"{ie_loss['loss']:.4f} | {loss['loss']:.4f} | {loss['perplexity']} |")


if __name__ == "__main__":
    run(main)
