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
    assert cases == [{"instruction": "q", "input": "", "output": "", "history": []}]


def test_validation_split_is_deterministic_and_checked():
    train, val = split_train_val(RECORDS, 2, seed=1)
    assert len(train) == len(RECORDS) - 2 and len(val) == 2
    assert (train, val) == split_train_val(RECORDS, 2, seed=1)
    assert split_train_val(RECORDS, 0) == (RECORDS, [])
    with pytest.raises(DataError, match="val_set_size 8 is not smaller than the 8 records"):
        split_train_val(RECORDS, 8, path="x.json")


def test_every_assistant_turn_is_learned_and_every_prompt_masked(tokenizer):
    prompter = Prompter("fin_template")
    record = {"instruction": "那赎回呢？", "input": "", "output": "赎回也按未知价。",
              "history": [["基金怎么申购？", "按当日净值申购。"]]}
    row = tokenize_record(record, prompter, tokenizer, cutoff_len=1024)
    eos = tokenizer.eos_token_id
    p1 = tokenizer(prompter.generate_prompt("基金怎么申购？"))["input_ids"]
    a1 = tokenizer("按当日净值申购。", add_special_tokens=False)["input_ids"] + [eos]
    p2 = tokenizer(prompter.generate_prompt("那赎回呢？"), add_special_tokens=False)["input_ids"]
    a2 = tokenizer("赎回也按未知价。", add_special_tokens=False)["input_ids"] + [eos]
    assert row["input_ids"] == p1 + a1 + p2 + a2
    assert row["labels"] == [IGNORE_INDEX] * len(p1) + a1 + [IGNORE_INDEX] * len(p2) + a2
    # At inference the same conversation is one prompt ending where the last answer starts.
    assert prompter.prompt_for(record, "</s>") == (prompter.generate_prompt("基金怎么申购？") + "按当日净值申购。</s>"
                                                   + prompter.generate_prompt("那赎回呢？"))


def test_chat_template_turns_rebuild_the_rendered_conversation(tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% if m.role == 'assistant' %}"
                               "</s>{% endif %}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    prompter = Prompter("chat", tokenizer)
    record = {"instruction": "q2", "input": "", "output": "a2", "history": [["q1", "a1"]]}
    turns = prompter.turns(record)
    assert turns == [("<user>q1<assistant>", "a1"), ("<user>q2<assistant>", "a2")]
    assert "".join(p + a + "</s>" for p, a in turns) == tokenizer.apply_chat_template(
        [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
         {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}], tokenize=False)


def test_sharegpt_conversations_become_history(tmp_path):
    path = write_json(tmp_path / "sg.json", [{"conversations": [
        {"from": "system", "value": "你是理财顾问"}, {"from": "human", "value": "问1"}, {"from": "gpt", "value": "答1"},
        {"from": "human", "value": "问2"}, {"from": "gpt", "value": "答2"}]}])
    [record] = load_records(path)
    assert (record["instruction"], record["output"], record["history"]) == ("问2", "答2", [["问1", "答1"]])
    bad = write_json(tmp_path / "bad.json", [{"conversations": [{"from": "human", "value": "问"}]}])
    with pytest.raises(DataError, match="record 1: field 'conversations' must alternate"):
        load_records(bad)


def test_csv_files_are_read_with_line_numbers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('instruction,input,output,topic\n什么是LPR？,,贷款市场报价利率,贷款\n"多行\n问题",,"",贷款\n',
                    encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_records(path)
    assert "record 2 (line 4): field 'output' is empty" in str(err.value)
    path.write_text("question,answer\nq,a\n", encoding="utf-8")
    with pytest.raises(DataError, match="header row with the columns instruction,input,output"):
        load_records(path)


def test_all_unusable_records_are_reported_at_once(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{bad\n{"instruction": "", "output": "b"}\n'
                    '{"instruction": "c", "output": "d", "history": [["only question"]]}\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_records(path)
    message = str(err.value)
    assert f"{path}: line 2: not valid JSON" in message
    assert "record 3 (line 3): field 'instruction' is empty" in message
    assert "record 4 (line 4): field 'history' must be a list of [question, answer] pairs" in message


def test_a_dataset_name_that_cannot_be_fetched_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="no such data file, and loading it as a `datasets` data set failed"):
        load_records("someone/some-finance-data")


RECORD_KINDS = {
    "single": {"instruction": "什么是债券？", "input": "", "output": "债券是发行人承诺按期还本付息的债务凭证。"},
    "with input": {"instruction": "申购费多少？", "input": "申购金额10000元，费率0.8%", "output": "约79.37元。"},
    "multi-turn": {"instruction": "那赎回呢？", "input": "", "output": "赎回按申请当日的净值。",
                   "history": [["基金怎么申购？", "按当日净值申购。"], ["要多久确认？", "一般T+1日确认。"]]},
    "multi-turn with input": {"instruction": "费用呢？", "input": "C类份额", "output": "C类不收申购费。",
                              "history": [["A类和C类有何不同？", "收费方式不同。"]]},
}


@pytest.mark.parametrize("kind", sorted(RECORD_KINDS))
@pytest.mark.parametrize("template", ["fin_qa", "fin_template", "ori_template", "alpaca", "chat"])
def test_every_answer_is_followed_by_eos_in_the_labels(smollm2, template, kind):
    """Adapters learn to stop only if every answer, each turn's included, ends in a learned EOS."""
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    record = RECORD_KINDS[kind]
    row = tokenize_record(record, Prompter(template, tokenizer), tokenizer, cutoff_len=4096)
    labels, eos = row["labels"], tokenizer.eos_token_id
    spans, current = [], []  # the runs of learned labels, one per answer
    for label in labels + [IGNORE_INDEX]:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            spans.append(current)
            current = []
    answers = [a for _, a in record.get("history", [])] + [record["output"]]
    assert len(spans) == len(answers)
    for span, answer in zip(spans, answers):
        assert span[-1] == eos and span.count(eos) == 1
        assert tokenizer.decode(span[:-1]) == answer
    assert labels[-1] == eos and row["input_ids"][-1] == eos
