"""Multiple-choice exams: C-Eval / CMMLU / FinanceIQ CSV folders and CFLUE JSON, zero- or k-shot.

Layouts read (the split folder names are C-Eval's and CMMLU's):
  <dir>/dev/<subject>[_dev].csv     few-shot examples
  <dir>/val|test/<subject>[_val|_test].csv   scored questions
with columns question,A,B,C,D,answer in any case, an optional id (or unnamed index)
column and optional extra columns. A CFLUE file is JSON (list or lines) of
{"名称": subject, "task": "单项选择题", "question", "choices": {"A": ...} (or its repr), "answer"};
only single-choice questions are scored.

Two ways to choose: `logits` compares the next-token scores of the option letters
after "答案："; `generate` lets the model answer greedily and takes the first option
letter it writes.
"""
from __future__ import annotations

import ast
import csv
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from utils.errors import CornucopiaError
from utils.generation import generate, generation_settings, length_sorted_batches

LETTERS = "ABCD"


class ExamError(CornucopiaError, ValueError):
    """An exam folder or file that cannot be read; the message names the file and line."""


@dataclass
class Question:
    subject: str
    question: str
    options: dict[str, str]
    answer: str
    source: str = ""


def _csv_questions(path: Path, subject: str) -> list[Question]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
        missing = [c for c in ("question", *LETTERS.lower(), "answer") if c not in columns]
        if missing:
            raise ExamError(f"{path}: missing column(s) {', '.join(missing)}; expected question,A,B,C,D,answer")
        questions = []
        for row in reader:
            answer = (row[columns["answer"]] or "").strip().upper()
            if answer and answer not in LETTERS:
                raise ExamError(f"{path}: line {reader.line_num}: answer {answer!r} is not one of A, B, C, D")
            questions.append(Question(subject, row[columns["question"]].strip(),
                                      {k: row[columns[k.lower()]].strip() for k in LETTERS}, answer,
                                      f"{path}:{reader.line_num}"))
    return questions


def _subject_of(path: Path, split: str) -> str:
    return path.stem.removesuffix(f"_{split}")


def _cflue_questions(path: Path) -> list[Question]:
    text = path.read_text(encoding="utf-8-sig").strip()
    records = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    questions = []
    for n, record in enumerate(records, start=1):
        if record.get("task", "单项选择题") != "单项选择题":
            continue
        choices = record["choices"]
        if isinstance(choices, str):
            choices = ast.literal_eval(choices)
        if set(choices) != set(LETTERS):
            continue  # the scorer compares exactly four options
        questions.append(Question(record.get("名称", path.stem), record["question"].strip(),
                                  {k: str(choices[k]).strip() for k in LETTERS}, str(record["answer"]).strip().upper(),
                                  f"{path}: record {n}"))
    return questions


def load_exam(path, split: str = "auto") -> tuple[dict[str, list[Question]], dict[str, list[Question]]]:
    """(scored questions by subject, few-shot examples by subject)."""
    path = Path(path)
    if path.is_file():
        questions = _cflue_questions(path)
        by_subject: dict[str, list[Question]] = {}
        for q in questions:
            by_subject.setdefault(q.subject, []).append(q)
        return by_subject, {}
    if not path.is_dir():
        raise ExamError(f"{path}: no such exam folder or CFLUE file")
    splits = [split] if split != "auto" else ["val", "test"]
    scored = {}
    for name in splits:
        for file in sorted((path / name).glob("*.csv")):
            questions = _csv_questions(file, _subject_of(file, name))
            if questions and all(q.answer for q in questions):  # C-Eval's public test split has no answers
                scored.setdefault(_subject_of(file, name), questions)
        if scored:
            break
    if not scored:
        raise ExamError(f"{path}: found no answered questions in {' or '.join(f'{s}/*.csv' for s in splits)}")
    shots = {_subject_of(f, "dev"): _csv_questions(f, _subject_of(f, "dev")) for f in sorted((path / "dev").glob("*.csv"))}
    return scored, shots


def format_question(q: Question, with_answer: bool) -> str:
    options = "\n".join(f"{k}. {q.options[k]}" for k in LETTERS)
    return f"{q.question}\n{options}\n答案：" + (f"{q.answer}\n\n" if with_answer else "")


def build_prompt(q: Question, shots: list[Question]) -> str:
    header = f"以下是关于{q.subject}的单项选择题，请直接给出正确答案的选项。\n\n"
    return header + "".join(format_question(s, True) for s in shots) + format_question(q, False)


def letter_token_ids(tokenizer) -> list[int]:
    """The token that starts each option letter when it follows "答案：" (as C-Eval's own code scores)."""
    return [tokenizer(letter, add_special_tokens=False)["input_ids"][-1] for letter in LETTERS]


def last_position_logits(model, encoded):
    """Next-token scores at the last position only: the LM head skips every other position where the model allows."""
    try:
        return model(**encoded, logits_to_keep=1).logits[:, -1]
    except TypeError:  # a model whose forward takes no logits_to_keep
        return model(**encoded).logits[:, -1]


@torch.inference_mode()
def choose_by_logits(model, tokenizer, prompts: list[str], batch_size: int = 4, on_batch=None) -> list[str]:
    """Left-padded batches of similar length; the option letter whose token scores highest as the next token.

    Answers come back in the prompts' order; `on_batch(indices, letters)` is called after each batch (progress).
    """
    if tokenizer.padding_side != "left":
        raise ValueError("option-letter scoring reads the last position: it needs padding_side='left'")
    ids = letter_token_ids(tokenizer)
    device = next(model.parameters()).device
    lengths = [len(x) for x in tokenizer(prompts, add_special_tokens=True)["input_ids"]]
    chosen = [""] * len(prompts)
    for batch in length_sorted_batches(lengths, batch_size):
        encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(device)
        letters = [LETTERS[int(i)] for i in last_position_logits(model, encoded)[:, ids].argmax(dim=-1)]
        for i, letter in zip(batch, letters):
            chosen[i] = letter
        if on_batch is not None:
            on_batch(batch, letters)
    return chosen


ANSWER_PATTERNS = [re.compile(p) for p in (r"答案[是为：:\s]*([ABCD])", r"^\s*([ABCD])(?![A-Za-z])", r"([ABCD])")]


def extract_letter(text: str) -> str:
    """The option letter a generated answer gives: after 答案, else at the start, else the first one."""
    for pattern in ANSWER_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return ""


def choose_by_generation(model, tokenizer, prompts: list[str], batch_size: int = 4, max_new_tokens: int = 8,
                         on_batch=None) -> list[str]:
    answers = generate(model, tokenizer, prompts, batch_size=batch_size, progress=False,
                       generation=generation_settings(max_new_tokens=max_new_tokens))
    letters = [extract_letter(a["text"]) for a in answers]
    if on_batch is not None:
        on_batch(list(range(len(prompts))), letters)
    return letters


def score_subject(subject: str, questions: list[Question], chosen: list[str], seconds: float) -> dict:
    """One subject's result: accuracy, counts, time, and each question's choice."""
    correct = sum(c == q.answer for c, q in zip(chosen, questions))
    return {"subject": subject, "accuracy": round(100 * correct / len(questions), 2), "correct": correct,
            "total": len(questions), "seconds": round(seconds, 2),
            "details": [{"subject": subject, "source": q.source, "answer": q.answer, "chosen": c}
                        for q, c in zip(questions, chosen)]}


def evaluate_exam(model, tokenizer, scored, shots, k_shot: int = 0, method: str = "logits", batch_size: int = 4,
                  done: dict | None = None, on_subject=None, progress: bool = True) -> dict:
    """Accuracy per subject and overall (micro average over questions), plus each question's choice.

    `done` holds subjects already scored (an interrupted run's, by subject name): they are not scored again.
    `on_subject(result)` is called as each subject finishes, so a caller can save it at once.
    """
    if method not in ("logits", "generate"):
        raise ExamError(f"--method must be logits or generate, not {method!r}")
    done = dict(done or {})
    todo = {s: q for s, q in scored.items() if s not in done}
    total_questions = sum(len(q) for q in todo.values())
    bar = tqdm(total=total_questions, desc="Exam", unit="question", disable=not progress or not total_questions)
    tally = {"correct": 0, "seen": 0}
    started = time.perf_counter()
    for subject, questions in todo.items():
        examples = shots.get(subject, [])[:k_shot]
        prompts = [build_prompt(q, examples) for q in questions]

        def on_batch(indices, letters, questions=questions, subject=subject):
            tally["seen"] += len(indices)
            tally["correct"] += sum(letter == questions[i].answer for i, letter in zip(indices, letters))
            bar.update(len(indices))
            bar.set_postfix(subject=subject[:20], accuracy=f"{100 * tally['correct'] / tally['seen']:.1f}%")

        choose = choose_by_logits if method == "logits" else choose_by_generation
        began = time.perf_counter()
        chosen = choose(model, tokenizer, prompts, batch_size=batch_size, on_batch=on_batch)
        done[subject] = score_subject(subject, questions, chosen, time.perf_counter() - began)
        if on_subject is not None:
            on_subject(done[subject])
    bar.close()
    seconds = time.perf_counter() - started
    results, details = {}, []
    for subject in scored:
        r = done[subject]
        results[subject] = {"accuracy": r["accuracy"], "correct": r["correct"], "total": r["total"]}
        details += r["details"]
    correct_all = sum(r["correct"] for r in results.values())
    total_all = sum(r["total"] for r in results.values())
    results["overall"] = {"accuracy": round(100 * correct_all / total_all, 2), "correct": correct_all,
                          "total": total_all}
    return {"subjects": results, "k_shot": k_shot, "method": method, "details": details,
            "scored_now": total_questions, "seconds": round(seconds, 2),
            "questions_per_second": round(total_questions / seconds, 2) if total_questions and seconds else None}


def subject_file_name(subject: str) -> str:
    return re.sub(r"[^\w.-]+", "_", subject) + ".json"


def read_finished_subjects(folder, run_key: dict) -> dict:
    """Subjects an earlier run saved in FOLDER with the same settings (model, adapter, exam, shots, method)."""
    finished = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue  # writes are atomic, so this is not ours: score the subject again
        if all(saved.get(k) == v for k, v in run_key.items()) and "subject" in saved:
            finished[saved["subject"]] = saved
    return finished


def markdown(results: dict, label: str = "") -> str:
    lines = [f"| subject | accuracy (%) | correct / total |{' model |' if label else ''}",
             f"|---|---|---|{'---|' if label else ''}"]
    for subject, r in results["subjects"].items():
        lines.append(f"| {subject} | {r['accuracy']} | {r['correct']} / {r['total']} |{f' {label} |' if label else ''}")
    return "\n".join(lines) + "\n"
