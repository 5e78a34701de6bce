"""The shipped data set: counts, coverage, answer lengths, held-out cases that do not leak, checked arithmetic,
rules that carry the date they refer to."""
import json
import re
from collections import Counter

import pytest

from conftest import ROOT
from finance_formulas import KINDS, spellings
from utils.data import load_records
from utils.data.check import char_ngrams, check_file, jaccard, question_text

TRAIN = ROOT / "instruction_data" / "fin_data.json"
TEST = ROOT / "instruction_data" / "infer.json"
TOPICS = ["保险", "银行理财", "股票与交易规则", "基金", "贷款与房贷", "信用卡", "社保与公积金", "债券", "期货与期权",
          "外汇与跨境", "个人所得税", "养老金/个人养老金", "票据与支付结算", "反诈骗与合规", "公司财报阅读"]
# A test case whose question (instruction + input) shares this much of its character 5-grams with a
# training question (Jaccard, punctuation and spaces ignored) counts as leaked. In the shipped data the
# median test case scores 0.01 against its closest training question, and the closest pair, two different
# questions about a 个人养老金 account (withdrawal rules vs. eligible products), scores 0.42.
LEAKAGE_THRESHOLD = 0.5

train = load_records(TRAIN)
test = load_records(TEST)
single = [r for r in train if not r["history"]]
multi = [r for r in train if r["history"]]


def test_training_set_size_and_topic_coverage():
    assert len(single) >= 600
    counts = Counter(r["topic"] for r in single)
    assert set(counts) == set(TOPICS), set(counts) ^ set(TOPICS)
    assert min(counts.values()) >= 30, counts


def test_answers_are_80_to_400_characters():
    bad = [(r["instruction"], len(r["output"])) for r in single if not 80 <= len(r["output"]) <= 400]
    assert not bad


def test_at_least_a_tenth_use_an_input():
    assert sum(1 for r in single if r["input"].strip()) >= 0.1 * len(single)


def test_no_duplicate_training_questions():
    assert not check_file(TRAIN).problems


def test_held_out_file_has_no_warnings():
    assert not check_file(TEST).problems  # e.g. a malformed or future as_of


def test_multi_turn_conversations():
    assert len(multi) >= 40
    assert all(1 <= len(r["history"]) <= 3 for r in multi)  # 2 to 4 turns in all
    assert set(r["topic"] for r in multi) <= set(TOPICS)


def test_held_out_cases_cover_the_topics_and_the_original_questions():
    assert len(test) >= 60
    assert set(r["topic"] for r in test) == set(TOPICS)
    assert {"老年人理财好还是存定期好？", "股票和基金能当天随买随卖吗？"} <= {r["instruction"] for r in test}


def test_no_held_out_case_is_a_near_duplicate_of_a_training_record():
    train_grams = [char_ngrams(question_text(r)) for r in train]
    worst = max(((max(jaccard(char_ngrams(question_text(case)), g) for g in train_grams), case["instruction"])
                 for case in test))
    assert worst[0] < LEAKAGE_THRESHOLD, worst


calculations = [r for r in train if "calc" in r]


def test_at_least_50_calculation_tasks():
    assert len(calculations) >= 50


@pytest.mark.parametrize("record", calculations, ids=lambda r: r["instruction"][:20])
def test_calculation_answers_are_right(record):
    calc = record["calc"]
    result = KINDS[calc["kind"]](**calc["params"])
    assert calc["expect"], "a calculation record must state what it expects"
    for name, value in calc["expect"].items():
        assert result[name] == pytest.approx(value, abs=0.01), name
        assert any(form in record["output"] for form in spellings(name, value)), (name, value)


def test_files_are_plain_json_lists():
    for path in (TRAIN, TEST):
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), list)


# Figures set by rules that change (rates, limits, fees, quotas, standards), as the answers state them. A record
# that states one must say which date its rules refer to (`as_of`), so that `python -m utils.data check --as_of D
# --max_age_days N` can list it for re-checking.
CHANGEABLE_FIGURES = {
    "公积金贷款利率": r"公积金贷款.{0,12}利率.{0,12}\d+(\.\d+)?%",
    "涨跌幅限制": r"(涨跌幅|涨跌停).{0,12}\d+%",
    "基金费率上限": r"(申购费率|销售服务费|赎回费).{0,16}(上限|不低于)",
    "基础养老金": r"基础养老金.{0,40}\d+元",
    "个人养老金额度": r"(上限|最多|每年).{0,8}12000元",
    "存款保险限额": r"存款保险.{0,40}50万|50万元.{0,20}存款保险",
    "便利化额度": r"5万美元",
    "印花税": r"印花税.{0,20}0\.05%|0\.05%.{0,8}印花税",
    "LPR": r"LPR.{0,6}(为|是)\d",
    "首付比例": r"首付比例.{0,10}不低于\d+%",
    "专项附加扣除标准": r"每月(800|1000|1100|1500|2000|3000)元",
    "个税税率表": r"速算扣除数\d",
}


def record_text(record):
    return " ".join([record["instruction"], record["input"], record["output"]]
                    + [text for turn in record["history"] for text in turn])


@pytest.mark.parametrize("name", sorted(CHANGEABLE_FIGURES))
def test_records_that_state_changeable_figures_carry_as_of(name):
    stating = [(path.name, k) for path, records in ((TRAIN, train), (TEST, test)) for k, r in enumerate(records)
               if re.search(CHANGEABLE_FIGURES[name], record_text(r))]
    assert stating, f"no record states {name}: the pattern is stale"
    undated = [(file, k) for file, k in stating if "as_of" not in (train if file == TRAIN.name else test)[k]]
    assert not undated, undated


def test_no_answer_hedges_with_an_old_year():
    """Answers state the rule in force and its date, not "as of 2024" where the current rule is known."""
    hedged = [(r["topic"], r["instruction"]) for r in train + test if re.search(r"截至202[0-4]", record_text(r))]
    assert not hedged
