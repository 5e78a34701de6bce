"""Scores against values computed by hand on tiny strings."""
import math

import jieba
import pytest

from utils.metrics import bleu4, char_rouge_l, lcs_length, rouge_words, score_answers


def test_rouge_on_words():
    # the cat sat / the cat ran: 2 of 3 unigrams, 1 of 2 bigrams, LCS 2.
    scores = rouge_words("the cat sat", "the cat ran")
    assert scores["rouge-1"] == pytest.approx(200 / 3, abs=1e-4)
    assert scores["rouge-2"] == pytest.approx(50, abs=1e-4)
    assert scores["rouge-l"] == pytest.approx(200 / 3, abs=1e-4)


def test_rouge_on_jieba_words():
    assert list(jieba.cut("我爱北京天安门")) == ["我", "爱", "北京", "天安门"]
    assert list(jieba.cut("我爱北京故宫")) == ["我", "爱", "北京故宫"]
    # unigrams: 2 shared, P 2/4, R 2/3 -> F 4/7; bigrams 我爱 shared of 3 and 2 -> F 2*(1/3)(1/2)/(5/6) = 0.4.
    scores = rouge_words("我爱北京天安门", "我爱北京故宫")
    assert scores["rouge-1"] == pytest.approx(400 / 7, abs=1e-4)
    assert scores["rouge-2"] == pytest.approx(40, abs=1e-4)


def test_bleu4_on_characters():
    assert bleu4("abcd", "abcd") == pytest.approx(100)
    # precisions 4/5, 3/4, 2/3, 1/2; no brevity penalty.
    assert bleu4("abcde", "abcdf") == pytest.approx(100 * (0.8 * 0.75 * (2 / 3) * 0.5) ** 0.25, abs=1e-6)
    # all precisions 1, brevity penalty exp(1 - 6/4).
    assert bleu4("abcd", "abcdef") == pytest.approx(100 * math.exp(-0.5), abs=1e-6)


def test_character_rouge_l():
    assert lcs_length("我爱北京天安门", "我爱北京故宫") == 4
    assert char_rouge_l("我爱北京天安门", "我爱北京故宫") == pytest.approx(100 * 2 * (4 / 7) * (4 / 6) / (4 / 7 + 4 / 6))
    assert char_rouge_l("", "参考") == 0 and char_rouge_l("完全不同", "参考答案") == 0


def test_empty_answers_score_zero_and_means_are_taken():
    rows = [{"output": "abcd", "model_output": "abcd"}, {"output": "abcd", "model_output": ""}]
    scores = score_answers(rows)
    assert scores["bleu-4"] == pytest.approx(50) and scores["char-rouge-l"] == pytest.approx(50)
    assert scores["mean_answer_chars"] == 2 and scores["scored_cases"] == 2


def test_a_loop_is_a_six_character_run_said_three_times():
    from utils.metrics import repeated_run

    # The example: 深入漏洞、 said four times holds the run 深入漏洞、深 at 3, 8 and 13 (overlapping).
    assert repeated_run("不要求深入漏洞、深入漏洞、深入漏洞、深入漏洞") == "深入漏洞、深"
    assert repeated_run("深入漏洞、深入漏洞、深入漏") is None  # 深入漏洞、深 twice, 入漏洞、深入 twice
    # Overlapping occurrences count: 8 of one character hold the 6-run three times, 7 only twice.
    assert repeated_run("啊" * 8) == "啊" * 6 and repeated_run("啊" * 7) is None
    # Spaces and line breaks do not hide a loop.
    assert repeated_run("### 问题:\n### 问题:\n### 问题:\n") == "###问题:"
    assert repeated_run("股票是所有权凭证，债券是债务凭证，基金是集合投资。") is None


def test_distinct_2_and_the_shares_over_answers():
    from utils.metrics import distinct_n, repetition_scores

    assert distinct_n("abab") == pytest.approx(100 * 2 / 3)  # ab, ba, ab
    assert distinct_n("股票债券") == 100 and distinct_n("a") is None
    rows = [{"model_output": "深入漏洞、" * 4, "finish_reason": "length"},
            {"model_output": "股票是所有权凭证。", "finish_reason": "stop"},
            {"model_output": "债券", "finish_reason": "marker"},
            {"model_output": "", "finish_reason": "marker"}]
    scores = repetition_scores(rows)
    assert scores["loop_share"] == 25.0 and scores["marker_share"] == 50.0
    # distinct-2 of the three answers with two or more characters: 5/19, 8/8, 1/1
    assert scores["distinct-2"] == pytest.approx(round((100 * 5 / 19 + 100 + 100) / 3, 2))


def test_repetition_is_scored_on_qa_answers_only():
    rows = [{"output": "参考", "model_output": "深入漏洞、" * 4},
            {"output": '[]', "model_output": '[{"a": 1}, {"a": 1}, {"a": 1}, {"a": 1}]', "task": "re"}]
    assert score_answers(rows)["loop_share"] == 100.0
