"""Reference-based scores of generated answers, as LLaMA-Factory computes them for Chinese.

ROUGE-1/2/L: F1 of `rouge_chinese` on jieba-segmented words. BLEU-4: NLTK's
sentence BLEU on characters with smoothing method 3. Character ROUGE-L: F1 of the
longest common subsequence of characters, independent of segmentation. All x100,
averaged over cases; an empty answer or reference scores 0.

Cases that carry a `task` (information extraction: ner, re, ee) are scored by F1 instead
(utils/ie/metrics.py): `ner-f1`, `re-f1`, `ee-event-f1`, `ee-argument-f1`, `ie_invalid` (answers with no JSON), details in `ie`.
"""
from __future__ import annotations

import logging

import jieba
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_chinese import Rouge

from utils.ie.metrics import flat_scores, score_ie

logger = logging.getLogger(__name__)
jieba.setLogLevel(logging.WARNING)  # jieba prints its dictionary loading at INFO


def _segment(text: str) -> list[str]:
    return [w for w in jieba.cut(text) if w.strip()]


def rouge_words(prediction: str, reference: str) -> dict[str, float]:
    hyp, ref = _segment(prediction), _segment(reference)
    if not hyp or not ref:
        return {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    scores = Rouge().get_scores(" ".join(hyp), " ".join(ref))[0]
    return {name: scores[name]["f"] * 100 for name in ("rouge-1", "rouge-2", "rouge-l")}


def bleu4(prediction: str, reference: str) -> float:
    if not prediction.strip() or not reference.strip():
        return 0.0
    return sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3) * 100


def lcs_length(a: str, b: str) -> int:
    previous = [0] * (len(b) + 1)
    for ca in a:
        current = [0]
        for j, cb in enumerate(b):
            current.append(previous[j] + 1 if ca == cb else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def char_rouge_l(prediction: str, reference: str) -> float:
    prediction, reference = "".join(prediction.split()), "".join(reference.split())
    if not prediction or not reference:
        return 0.0
    lcs = lcs_length(prediction, reference)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(prediction), lcs / len(reference)
    return 2 * precision * recall / (precision + recall) * 100


def score_pair(prediction: str, reference: str) -> dict[str, float]:
    return {**rouge_words(prediction, reference), "bleu-4": bleu4(prediction, reference),
            "char-rouge-l": char_rouge_l(prediction, reference)}


def score_answers(rows: list[dict]) -> dict[str, float]:
    """Mean scores over QA rows with a reference (`output`) and an answer (`model_output`); F1 of IE rows."""
    ie_rows = [r for r in rows if r.get("task") and r.get("output")]
    scored = [score_pair(r["model_output"], r["output"]) for r in rows if r.get("output") and not r.get("task")]
    means = {}
    if scored:
        means = {name: round(sum(s[name] for s in scored) / len(scored), 2) for name in scored[0]}
        means["scored_cases"] = len(scored)
    if ie_rows:
        ie = score_ie(ie_rows)
        means.update(flat_scores(ie), ie=ie, ie_cases=len(ie_rows))
    if means:
        means["mean_answer_chars"] = round(sum(len(r["model_output"]) for r in rows) / len(rows), 1)
    return means
