"""The data checker names every fault of a deliberately broken file."""
import json

import pytest
from transformers import AutoTokenizer

from conftest import run_script, write_json
from utils.data import tokenize_record
from utils.data.check import char_ngrams, check_file, jaccard
from utils.errors import UsageError
from utils.prompter import Prompter
from utils.settings import PROMPT_TEMPLATE

GOOD = {"instruction": "什么是可转换债券？", "input": "", "output": "可转换债券是可以按约定价格转换成股票的公司债券。", "topic": "债券"}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_fault_of_a_broken_jsonl_file_is_named(tmp_path):
    path = write_lines(tmp_path / "broken.jsonl", [
        json.dumps(GOOD, ensure_ascii=False),                                         # 1 fine
        '{"instruction": "缺少冒号" "output": "x"}',                                    # 2 invalid JSON
        json.dumps({"input": "x", "output": "y"}, ensure_ascii=False),                # 3 no instruction
        json.dumps({"instruction": "q", "output": ""}, ensure_ascii=False),           # 4 empty output
        json.dumps({"instruction": "q", "output": ["a"]}, ensure_ascii=False),        # 5 not a string
        json.dumps(GOOD, ensure_ascii=False),                                         # 6 exact duplicate of 1
        json.dumps({**GOOD, "instruction": "什么是可转换债券?"}, ensure_ascii=False),  # 7 near duplicate of 1
        json.dumps({"instruction": "q", "output": "a", "history": "not a list"}),     # 8 bad history
    ])
    report = check_file(path)
    text = report.render()
    assert f"{path}: line 2: not valid JSON (column" in text
    assert "record 3 (line 3): field 'instruction' is missing" in text
    assert "record 4 (line 4): field 'output' is empty" in text
    assert "record 5 (line 5): field 'output' must be a string, got list" in text
    assert "record 6 (line 6): exact duplicate of record 1" in text
    assert "record 7 (line 7): near duplicate of record 1" in text
    assert "record 8 (line 8): field 'history' must be a list" in text
    assert len(report.unusable) == 5 and len(report.problems) == 7
    assert "records per topic: 债券 3" in text


def test_invalid_json_list_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c", "output": "d",}\n]', encoding="utf-8")
    done = run_script("-m", "utils.data", "check", path)
    assert done.returncode == 1
    assert f"error: {path}: not valid JSON at line 3, column" in done.stderr and "Traceback" not in done.stderr


def test_truncation_and_lengths_with_a_tokenizer(tiny_model, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompter = Prompter("fin_template")
    long = {**GOOD, "instruction": "请解释可转债的转股价", "output": "转股价是约定的换股价格。" * 20}
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD, ensure_ascii=False), json.dumps(long, ensure_ascii=False)])
    n_good, n_long = (len(tokenize_record(r, prompter, tokenizer, None)["input_ids"]) for r in (GOOD, long))
    report = check_file(path, tokenizer, prompter, cutoff_len=n_good)
    [problem] = report.problems
    assert problem.number == 2 and not problem.fatal
    assert f"would be truncated at --cutoff_len {n_good}: {n_long} tokens, {n_long - n_good} cut" in problem.message
    assert report.lengths == [n_good, n_long]
    assert "tokens per record: p50" in report.render()
    # A cutoff inside the prompt leaves nothing to learn: that record is unusable.
    report = check_file(path, tokenizer, prompter, cutoff_len=10)
    assert len(report.unusable) == 2 and "nothing of the answer would be learned" in report.render()


def test_command_line_exit_codes(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([GOOD], ensure_ascii=False), encoding="utf-8")
    assert run_script("-m", "utils.data", "check", good).returncode == 0
    bad = write_lines(tmp_path / "bad.jsonl", ['{"instruction": "q"}'])
    done = run_script("-m", "utils.data", "check", bad)
    assert done.returncode == 1 and "field 'output' is missing" in done.stdout


def test_finetune_warns_about_duplicates_before_training(tiny_model, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    cutoff = len(tokenize_record(GOOD, Prompter(PROMPT_TEMPLATE), tokenizer, None)["input_ids"])  # finetune's default
    long = {**GOOD, "instruction": "债券的票面利率是什么？", "output": "票面利率是债券约定的年利率。" * 10}
    data = tmp_path / "dup.json"
    data.write_text(json.dumps([GOOD, GOOD, long], ensure_ascii=False), encoding="utf-8")
    done = run_script("finetune.py", "--base_model", tiny_model, "--data_path", data, "--output_dir", tmp_path / "o",
                      "--load_8bit", "False", "--max_steps", "2", "--cutoff_len", cutoff, "--micro_batch_size", "1",
                      "--batch_size", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "record 2: exact duplicate of record 1" in done.stderr
    assert f"1 of 3 record(s) are longer than --cutoff_len {cutoff}" in done.stderr


@pytest.mark.parametrize("a, b, expected", [("abcdef", "abcdef", 1.0), ("abcdefg", "abcdexy", 1 / 5), ("abcde", "vwxyz", 0.0)])
def test_jaccard_of_character_5grams(a, b, expected):
    assert jaccard(char_ngrams(a), char_ngrams(b)) == pytest.approx(expected)


def test_as_of_dates_oldest_and_too_old(tmp_path):
    """The report names the oldest as_of dates; --max_age_days lists older records as warnings, never errors."""
    records = [{**GOOD, "as_of": "2015-05-01"},
               {**GOOD, "instruction": "什么是国债逆回购？", "as_of": "2025-05-08"},
               {**GOOD, "instruction": "公积金贷款利率是多少？", "as_of": "2025/05/08"},
               {**GOOD, "instruction": "个人养老金每年能缴多少？", "as_of": "2999-01-01"},
               {**GOOD, "instruction": "什么是市盈率？"}]
    path = write_lines(tmp_path / "dated.jsonl", [json.dumps(r, ensure_ascii=False) for r in records])
    report = check_file(path)
    text = report.render()
    assert "records with as_of: 3 of 5; oldest: 2015-05-01 (record 1); 2025-05-08 (record 2); 2999-01-01 (record 4)" in text
    assert "record 3 (line 3): field 'as_of' must be a date YYYY-MM-DD, got '2025/05/08'" in text
    assert "record 4 (line 4): as_of 2999-01-01 is in the future" in text
    assert not report.unusable and "days before" not in text
    report = check_file(path, as_of="2026-12-03", max_age_days=600)
    old = [p for p in report.problems if "days before" in p.message]
    assert [p.number for p in old] == [1] and not old[0].fatal
    assert "as_of 2015-05-01 is 4234 days before 2026-12-03 (more than --max_age_days 600)" in old[0].message
    assert [p.number for p in check_file(path, as_of="2026-12-03", max_age_days=4234).problems
            if "days before" in p.message] == []


def test_as_of_command_line(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [json.dumps({**GOOD, "as_of": "2020-01-01"}, ensure_ascii=False)])
    done = run_script("-m", "utils.data", "check", path, "--as_of", "2026-12-03", "--max_age_days", "30")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WARNING" in done.stdout and "as_of 2020-01-01 is 2528 days before 2026-12-03" in done.stdout
    done = run_script("-m", "utils.data", "check", path, "--as_of", "2026-13-01", "--max_age_days", "30")
    assert done.returncode == 1 and done.stderr.startswith("error: --as_of expects a date YYYY-MM-DD, got '2026-13-01'")
    assert "Traceback" not in done.stderr
    for kwargs, message in ((dict(as_of="2026-12-03"), "add --max_age_days"),
                            (dict(max_age_days=-1), "--max_age_days expects a whole number")):
        with pytest.raises(UsageError, match=message):
            check_file(path, **kwargs)


def test_training_ignores_as_of(tiny_model):
    """as_of (like topic and calc) is metadata: the tokenized training rows are the same with or without it."""
    from utils.data import build_dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompter = Prompter("fin_qa")
    plain = [GOOD, {**GOOD, "instruction": "什么是国债？"}]
    dated = [{**GOOD, "as_of": "2025-05-08", "calc": {"kind": "x"}}, {**GOOD, "instruction": "什么是国债？"}]
    with_field, without = build_dataset(dated, prompter, tokenizer, 256), build_dataset(plain, prompter, tokenizer, 256)
    assert with_field.column_names == without.column_names == ["input_ids", "attention_mask", "labels"]
    assert with_field.to_list() == without.to_list()


def test_an_answer_naming_a_year_after_its_as_of_is_a_warning(tmp_path):
    from datetime import date

    from utils.data.check import later_year_problems
    from utils.data.records import check_rows

    records = [{**GOOD, "output": "2025年9月1日起上限降为2.0%。", "as_of": "2024-10-01"},          # newer rule: warn
               {**GOOD, "instruction": "以后呢？", "output": "从2030年起逐步提高到20年。", "as_of": "2025-01-01"},  # ahead
               {**GOOD, "instruction": "奖金呢？", "output": "延续至2026年12月31日。", "as_of": "2024-01-01"},   # end date
               {**GOOD, "instruction": "存款呢？", "output": "2024年起施行。", "as_of": "2024-06-01"}]           # same year
    path = write_json(tmp_path / "dated.json", records)
    rows, _ = check_rows(path, True)
    problems = later_year_problems(path, rows, today=date(2026, 12, 8))
    assert [(p.number, p.fatal) for p in problems] == [(1, False)]
    assert "names 2025年, after its as_of 2024-10-01" in str(problems[0])
    report = check_file(path)  # a warning in the report, never an error
    assert not report.unusable and any("after its as_of" in str(p) for p in report.problems)
