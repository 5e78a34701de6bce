"""Exam scoring speed, before and after, on the same questions: questions/s, accuracy, answers that changed.

    python benchmarks/exam_speed.py                       # fin_exam replicated to 300 questions, zero-shot
    python benchmarks/exam_speed.py --exam_dir /data/FinanceIQ --questions 300 --batch_sizes 8,16

"before" is the scorer as it was: float32, batches of 4 in file order, logits for every position.
"after" is utils.exam.choose_by_logits: batches of similar length, logits at the last position only, in the
dtype utils.hardware chooses (bf16 where native), at each --batch_sizes. Writes OUTPUT.md and OUTPUT.json.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from utils import exam, hardware, settings  # noqa: E402
from utils.cli import parse_list, run  # noqa: E402
from utils.files import atomic_write_json, atomic_write_text  # noqa: E402
from utils.loading import compute_dtype, load_base_model, load_tokenizer, pick_device  # noqa: E402


@torch.inference_mode()
def choose_the_old_way(model, tokenizer, prompts, batch_size=4):
    """The scorer before this change: file order, every position through the LM head."""
    ids = exam.letter_token_ids(tokenizer)
    chosen = []
    for start in range(0, len(prompts), batch_size):
        encoded = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True)
        chosen += [exam.LETTERS[int(i)] for i in model(**encoded).logits[:, -1, ids].argmax(dim=-1)]
    return chosen


def questions_for(exam_dir, count):
    scored, _ = exam.load_exam(exam_dir)
    pool = [q for questions in scored.values() for q in questions]
    return [pool[i % len(pool)] for i in range(count)] if count else pool


def timed(choose, model, tokenizer, prompts, batch_size):
    began = time.perf_counter()
    chosen = choose(model, tokenizer, prompts, batch_size=batch_size)
    return chosen, time.perf_counter() - began


def main(base_model: str = settings.BASE_MODEL, exam_dir: str = settings.EXAM_DIR, questions: int = 300,
         batch_sizes="4,8,16,32", output: str = "benchmarks/results/exam_speed"):
    """Score the same questions the old way and the new way; print and write the table."""
    qs = questions_for(exam_dir, questions)
    prompts = [exam.build_prompt(q, []) for q in qs]
    tokenizer = load_tokenizer(base_model, padding_side="left")
    device = pick_device()
    rows, answers = [], {}

    fp32 = load_base_model(base_model, dtype=torch.float32).eval()
    exam.choose_by_logits(fp32, tokenizer, prompts[:4], batch_size=4)  # warm-up
    answers["before"], seconds = timed(choose_the_old_way, fp32, tokenizer, prompts, 4)
    rows.append(("before: float32, file order, all positions", 4, seconds, answers["before"]))
    print(rows[-1][:3], flush=True)
    variants = [("after: float32, sorted, last position", fp32, [4, 16])]
    dtype = compute_dtype(device)
    if dtype != torch.float32:
        del fp32
        variants = [variants[0][:2] + ([16],), (f"after: {str(dtype)[6:]}, sorted, last position",
                                              load_base_model(base_model).eval(), list(map(int, parse_list(batch_sizes))))]
    else:
        variants[0] = variants[0][:2] + (list(map(int, parse_list(batch_sizes))),)
    for label, model, sizes in variants:
        for batch_size in sizes:
            chosen, seconds = timed(exam.choose_by_logits, model, tokenizer, prompts, batch_size)
            answers[f"{label} @ {batch_size}"] = chosen
            rows.append((label, batch_size, seconds, chosen))
            print(rows[-1][:3], flush=True)

    machine = hardware.describe(device)
    before_seconds = rows[0][2]
    lines = [f"{base_model}, {len(qs)} zero-shot questions from {exam_dir}"
             f"{' (replicated)' if questions else ''}, option-letter scoring. Machine: {machine}.", "",
             "| scorer | batch | seconds | questions/s | speed-up | accuracy (%) | answers changed vs before |",
             "|---|---|---|---|---|---|---|"]
    results = []
    for label, batch_size, seconds, chosen in rows:
        correct = sum(c == q.answer for c, q in zip(chosen, qs))
        changed = [i for i, (a, b) in enumerate(zip(chosen, answers["before"])) if a != b]
        results.append({"scorer": label, "batch_size": batch_size, "seconds": round(seconds, 2),
                        "questions_per_second": round(len(qs) / seconds, 2),
                        "accuracy": round(100 * correct / len(qs), 2), "changed": len(changed),
                        "changed_questions": [{"index": i, "source": qs[i].source, "before": answers["before"][i],
                                               "after": chosen[i], "answer": qs[i].answer} for i in changed]})
        lines.append(f"| {label} | {batch_size} | {seconds:.1f} | {len(qs) / seconds:.1f} | "
                     f"{before_seconds / seconds:.1f}x | {results[-1]['accuracy']} | {len(changed)} |")
    table = "\n".join(lines) + "\n"
    print(table)
    atomic_write_text(Path(output).with_suffix(".md"), table)
    atomic_write_json(Path(output).with_suffix(".json"), {"machine": machine, "questions": len(qs), "rows": results})


if __name__ == "__main__":
    run(main)
