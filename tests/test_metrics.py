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
