"""Exam scoring at scale: length-sorted batches answer in input order, last-position logits, per-subject resume."""
import json

import torch

import evaluate
from test_exam import ceval_folder, write_csv
from utils.adapters import load_for_inference
from utils.exam import LETTERS, build_prompt, choose_by_logits, length_sorted_batches, letter_token_ids, load_exam


def test_length_sorted_batches_cover_every_index_once():
    lengths = [5, 1, 9, 3, 9, 2, 7]
    batches = length_sorted_batches(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [[lengths[i] for i in b] for b in batches] == [[9, 9, 7], [5, 3, 2], [1]]


def one_at_a_time_with_full_logits(model, tokenizer, prompts):
    """The old way: every position through the head, one prompt per forward, no padding."""
    ids = letter_token_ids(tokenizer)
    with torch.inference_mode():
        return [LETTERS[int(model(**tokenizer(p, return_tensors="pt")).logits[0, -1, ids].argmax())] for p in prompts]


def test_sorted_batched_answers_equal_one_at_a_time_in_input_order(tiny_model, tmp_path):
    model, tokenizer = load_for_inference(tiny_model)
    model.float()
    questions = [q for qs in load_exam(ceval_folder(tmp_path, answers="ABCDABC"))[0].values() for q in qs]
    # Prompts of very different lengths, so that sorting reorders them and padding is needed.
    prompts = [build_prompt(q, []) + "补充说明" * (i % 4) for i, q in enumerate(questions)]
    seen = []
    batched = choose_by_logits(model, tokenizer, prompts, batch_size=3, on_batch=lambda idx, _: seen.append(idx))
    assert batched == one_at_a_time_with_full_logits(model, tokenizer, prompts)
    assert len(set(batched)) > 1, "the random model should not answer every question alike"
    assert seen[0] != [0, 1, 2] and sorted(i for b in seen for i in b) == list(range(len(prompts)))


def test_evaluate_writes_subjects_as_they_finish_and_resumes(tiny_model, tmp_path, capsys):
    exam_dir = ceval_folder(tmp_path / "exam")
    header = ["id", "question", "A", "B", "C", "D", "answer"]
    write_csv(exam_dir / "val" / "tax_val.csv", header, [[i, f"税{i}", "甲", "乙", "丙", "丁", "A"] for i in range(3)])
    out = tmp_path / "out"
    common = dict(base_model=tiny_model, exam_dir=str(exam_dir), output_dir=str(out))
    evaluate.main(**common)
    assert "questions/s" in capsys.readouterr().out
    full = json.loads((out / "exam_results.json").read_text())
    assert full["scored_now"] == 7 and full["questions_per_second"] > 0
    assert sorted(p.name for p in (out / "subjects").glob("*.json")) == ["bank.json", "tax.json"]

    (out / "subjects" / "tax.json").unlink()  # as if the run had stopped after the first subject
    evaluate.main(**common, resume="True")
    again = json.loads((out / "exam_results.json").read_text())
    assert again["scored_now"] == 3  # only tax was scored again
    assert again["subjects"] == full["subjects"] and again["details"] == full["details"]

    evaluate.main(**common, resume="True", k_shot=1)  # other settings: nothing is reused
    assert json.loads((out / "exam_results.json").read_text())["scored_now"] == 7


def test_generation_sorted_by_length_answers_in_input_order(tiny_model):
    from utils.generation import generate, generation_settings

    model, tokenizer = load_for_inference(tiny_model)
    model.float()
    prompts = ["股票", "什么是债券？请详细说明债券的含义", "LPR", "存款保险保障多少？存款保险", "基金"]

    def answers(**kwargs):
        return [(r["text"], r["new_tokens"]) for r in generate(model, tokenizer, prompts, progress=False,
                                                                generation=generation_settings(max_new_tokens=6),
                                                                **kwargs)]

    alone = answers(batch_size=1)
    assert len(set(alone)) > 1
    assert answers(batch_size=2, sort_by_length=True) == alone
