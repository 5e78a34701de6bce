import json

import pytest

import finetune
import infer
from conftest import RECORDS, run_script, write_json


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter")
    data = write_json(folder / "train.json", RECORDS)
    out = folder / "lora"
    finetune.train(base_model=tiny_model, data_path=str(data), output_dir=str(out), load_8bit=False,
                   micro_batch_size=2, batch_size=2, learning_rate=1e-2, max_steps=16, save_steps=16,
                   cutoff_len=128, prompt_template_name="ori_template")
    return str(out)


def answers(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def run_infer(tiny_model, cases, out, **flags):
    infer.main(base_model=tiny_model, infer_data_path=str(cases), output_path=str(out), max_new_tokens=12,
               **flags)
    return answers(out)


def test_rows_carry_case_answer_and_counts(tiny_model, adapter, tmp_path):
    cases = write_json(tmp_path / "cases.json", RECORDS[:3])
    rows = run_infer(tiny_model, cases, tmp_path / "a.jsonl", lora_weights=adapter, batch_size=2)
    assert [r["instruction"] for r in rows] == [r["instruction"] for r in RECORDS[:3]]
    assert [r["output"] for r in rows] == [r["output"] for r in RECORDS[:3]]
    for row in rows:
        assert set(row) == {"instruction", "input", "output", "model_output", "new_tokens", "seconds",
                            "finish_reason"}
        assert 1 <= row["new_tokens"] <= 12 and row["seconds"] > 0
        assert row["finish_reason"] in ("stop", "marker", "length")
        assert (row["finish_reason"] == "length") == (row["new_tokens"] == 12)


def test_batching_with_left_padding_gives_the_same_greedy_answers(tiny_model, adapter, tmp_path):
    cases = write_json(tmp_path / "cases.json", RECORDS[:5])  # prompts of different lengths
    one = run_infer(tiny_model, cases, tmp_path / "b1.jsonl", lora_weights=adapter, batch_size=1)
    many = run_infer(tiny_model, cases, tmp_path / "b4.jsonl", lora_weights=adapter, batch_size=4)
    assert [r["model_output"] for r in one] == [r["model_output"] for r in many]
    assert [r["new_tokens"] for r in one] == [r["new_tokens"] for r in many]
    assert sum(bool(r["model_output"].strip()) for r in one) >= 3, "empty answers would make the comparison vacuous"
    assert len({r["model_output"] for r in one}) > 1, "different questions get different answers"


def test_adapter_changes_answers_and_use_lora_false_really_means_base(tiny_model, adapter, tmp_path):
    cases = write_json(tmp_path / "cases.json", RECORDS)
    base = run_infer(tiny_model, cases, tmp_path / "base.jsonl")
    tuned = run_infer(tiny_model, cases, tmp_path / "tuned.jsonl", lora_weights=adapter)
    off = run_infer(tiny_model, cases, tmp_path / "off.jsonl", lora_weights=adapter, use_lora="False")
    assert [r["model_output"] for r in base] != [r["model_output"] for r in tuned]
    assert [r["model_output"] for r in off] == [r["model_output"] for r in base]


def test_original_flag_names_from_the_command_line(tiny_model, adapter, tmp_path):
    cases = write_json(tmp_path / "cases.json", RECORDS[:2])
    done = run_script("infer.py", "--base_model", tiny_model, "--lora_weights", adapter, "--use_lora", "False",
                      "--instruct_dir", cases, "--output_path", tmp_path / "o.jsonl", "--max_new_tokens", "4")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "base alone" in done.stderr and len(answers(tmp_path / "o.jsonl")) == 2


def test_interactive_mode_answers_each_line(tiny_model, adapter):
    done = run_script("infer.py", "--base_model", tiny_model, "--lora_weights", adapter, "--max_new_tokens", "4",
                      input="什么是股票？\n什么是债券？\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("回答> ") == 2


def test_adapter_from_another_base_is_a_clear_error(adapter, tmp_path):
    from conftest import build_tiny_model

    other = build_tiny_model(tmp_path / "other", hidden_size=96)
    done = run_script("infer.py", "--base_model", other, "--lora_weights", adapter, "--infer_data_path",
                      write_json(tmp_path / "c.json", RECORDS[:1]), "--output_path", tmp_path / "o.jsonl")
    assert done.returncode == 1 and "trained on another base" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_score_flag_writes_reference_scores(tiny_model, adapter, tmp_path):
    cases = write_json(tmp_path / "cases.json", RECORDS[:3])
    run_infer(tiny_model, cases, tmp_path / "s.jsonl", lora_weights=adapter, score=True)
    scores = json.loads((tmp_path / "s.scores.json").read_text(encoding="utf-8"))
    for key in ("rouge-1", "rouge-2", "rouge-l", "bleu-4", "char-rouge-l", "loss", "perplexity", "tokens_per_second"):
        assert isinstance(scores[key], (int, float)), key
    assert scores["scored_cases"] == 3 and scores["perplexity"] > 1
    assert scores["perplexity"] == pytest.approx(2.718281828 ** scores["loss"], rel=1e-2)
    assert all(0 <= scores[k] <= 100 for k in ("rouge-1", "rouge-2", "rouge-l", "bleu-4", "char-rouge-l"))
    # The adapter was trained on these very records, so its reference loss is far below the base's.
    run_infer(tiny_model, cases, tmp_path / "base.jsonl", score=True)
    base = json.loads((tmp_path / "base.scores.json").read_text(encoding="utf-8"))
    assert scores["loss"] < 0.95 * base["loss"], (scores["loss"], base["loss"])
