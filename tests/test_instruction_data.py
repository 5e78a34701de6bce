"""The shipped starter data: enough records, valid, and no test case that is also a training record."""
import json

from conftest import ROOT
from utils.data import load_records

TRAIN = ROOT / "instruction_data" / "fin_data.json"
TEST = ROOT / "instruction_data" / "infer.json"


def test_counts_and_validity():
    assert len(load_records(TRAIN)) >= 60
    assert len(load_records(TEST)) >= 10


def test_original_cornucopia_questions_are_test_cases():
    questions = {r["instruction"] for r in load_records(TEST)}
    assert {"老年人理财好还是存定期好？", "股票和基金能当天随买随卖吗？"} <= questions


def test_test_cases_do_not_repeat_training_records():
    train = load_records(TRAIN)
    seen = {r["instruction"] for r in train} | {r["output"] for r in train}
    for case in load_records(TEST):
        assert case["instruction"] not in seen and case["output"] not in seen, case["instruction"]


def test_files_are_plain_json_lists():
    for path in (TRAIN, TEST):
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), list)
