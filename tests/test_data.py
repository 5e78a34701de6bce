import json

import pytest
from transformers import AutoTokenizer

from conftest import RECORDS, write_json
from utils.data import IGNORE_INDEX, DataError, load_records, split_train_val, tokenize_record
from utils.prompter import Prompter


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_prompt_is_masked_and_eos_appended(tokenizer):
    prompter = Prompter("fin_template")
    record = {"instruction": "什么是债券？", "input": "", "output": "债券是债务凭证。"}
    row = tokenize_record(record, prompter, tokenizer, cutoff_len=512)
    prompt_ids = tokenizer(prompter.generate_prompt("什么是债券？"))["input_ids"]
    answer_ids = tokenizer("债券是债务凭证。", add_special_tokens=False)["input_ids"]
    assert row["input_ids"] == prompt_ids + answer_ids + [tokenizer.eos_token_id]
    assert row["labels"] == [IGNORE_INDEX] * len(prompt_ids) + answer_ids + [tokenizer.eos_token_id]
    assert row["attention_mask"] == [1] * len(row["input_ids"])


def test_train_on_inputs_and_no_eos(tokenizer):
    record = {"instruction": "什么是债券？", "input": "背景", "output": "债券是债务凭证。"}
    row = tokenize_record(record, Prompter("fin_template"), tokenizer, 512, train_on_inputs=True, add_eos_token=False)
    assert row["labels"] == row["input_ids"]
    assert row["input_ids"][-1] != tokenizer.eos_token_id


def test_cutoff_truncates_the_answer_end(tokenizer):
    prompter = Prompter("fin_template")
    full = tokenize_record(RECORDS[0], prompter, tokenizer, 10_000)
    n_prompt = sum(1 for label in full["labels"] if label == IGNORE_INDEX)
    cut = tokenize_record(RECORDS[0], prompter, tokenizer, n_prompt + 3)
    assert cut["input_ids"] == full["input_ids"][: n_prompt + 3]
    assert cut["labels"][n_prompt:] == full["input_ids"][n_prompt: n_prompt + 3]


def test_reads_json_list_and_json_lines(tmp_path):
    listed = load_records(write_json(tmp_path / "a.json", RECORDS))
    lines = tmp_path / "b.json"
    lines.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS) + "\n\n", encoding="utf-8")
    assert load_records(lines) == listed and len(listed) == len(RECORDS)


@pytest.mark.parametrize("content, expected", [
    ('{"instruction": "a", "output": "b"}\n这一行不是JSON\n', ["line 2", "not valid JSON"]),
    ('[{"instruction": "a", "output": "b"},\n {"instruction": "c", "output": }]', ["line 2", "not valid JSON"]),
    ('[{"instruction": "a", "output": "b"}, {"output": "d"}]', ["record 2", "'instruction'", "missing"]),
    ('[{"instruction": "a", "output": "b"}, {"instruction": "c"}]', ["record 2", "'output'", "missing"]),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "  "}\n', ["record 2", "line 2", "'output'", "empty"]),
    ('[{"instruction": "a", "output": 3}]', ["record 1", "'output'", "string"]),
    ('[{"instruction": "a", "input": ["x"], "output": "b"}]', ["record 1", "'input'", "string"]),
    ('["just a string"]', ["record 1", "expected an object"]),
    ("", ["empty"]),
    ("[]", ["no records"]),
])
def test_bad_data_names_file_record_and_field(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_records(path)
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_records(tmp_path / "nope.json")


def test_inference_cases_may_omit_the_reference(tmp_path):
    cases = load_records(write_json(tmp_path / "c.json", [{"instruction": "q"}]), require_output=False)
    assert cases == [{"instruction": "q", "input": "", "output": ""}]


def test_validation_split_is_deterministic_and_checked():
    train, val = split_train_val(RECORDS, 2, seed=1)
    assert len(train) == len(RECORDS) - 2 and len(val) == 2
    assert (train, val) == split_train_val(RECORDS, 2, seed=1)
    assert split_train_val(RECORDS, 0) == (RECORDS, [])
    with pytest.raises(DataError, match="val_set_size 8 is not smaller than the 8 records"):
        split_train_val(RECORDS, 8, path="x.json")
