"""Reference-based scores of generated answers, as LLaMA-Factory computes them for Chinese.

ROUGE-1/2/L: F1 of `rouge_chinese` on jieba-segmented words. BLEU-4: NLTK's
sentence BLEU on characters with smoothing method 3. Character ROUGE-L: F1 of the
longest common subsequence of characters, independent of segmentation. All x100,
averaged over cases; an empty answer or reference scores 0.

Cases that carry a `task` (information extraction: ner, re, ee) are scored by F1 instead
(utils/ie/metrics.py): `ner-f1`, `re-f1`, `ee-event-f1`, `ee-argument-f1`, `ie_invalid` (answers with no JSON), details in `ie`.

Repetition, on every answer (no reference needed), spaces and line breaks removed first:
- `loop_share`: % of answers in which some run of LOOP_CHARS characters occurs LOOP_TIMES or more times
  (overlapping occurrences count), e.g. `深入漏洞、深入漏洞、深入漏洞、深入漏洞` - a degenerate loop;
- `distinct-2`: unique character bigrams / all character bigrams of an answer, x100, averaged over answers
  (Li et al.'s distinct-n, per answer: a loop lowers it, varied text keeps it high);
- `marker_share`: % of answers that ran into the template's own next-turn marker (generation stopped there
  and cut it off; `finish_reason` "marker" in the answer rows): the model did not end its answer itself.
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


LOOP_CHARS = 6
LOOP_TIMES = 3


def _compact(text: str) -> str:
    return "".join(text.split())


def repeated_run(text: str, chars: int = LOOP_CHARS, times: int = LOOP_TIMES) -> str | None:
    """The first run of `chars` characters that occurs `times` or more times in TEXT (spaces removed), else None.

    Occurrences may overlap, so a loop shorter than `chars` counts too: 深入漏洞、 said four times holds
    深入漏洞、深 three times.
    """
    text = _compact(text)
    count: dict[str, int] = {}
    for start in range(len(text) - chars + 1):
        run = text[start:start + chars]
        count[run] = count.get(run, 0) + 1
        if count[run] >= times:
            return text[text.find(run):text.find(run) + chars]
    return None


def distinct_n(text: str, n: int = 2) -> float | None:
    """Unique character n-grams / all n-grams of one answer (x100); None when it has fewer than n characters."""
    text = _compact(text)
    grams = [text[k:k + n] for k in range(len(text) - n + 1)]
    return 100 * len(set(grams)) / len(grams) if grams else None


def repetition_scores(rows: list[dict]) -> dict[str, float]:
    """loop_share, distinct-2 and marker_share (all %, see the module's docstring) over the answers of ROWS."""
    answers = [r.get("model_output") or "" for r in rows]
    if not answers:
        return {}
    distinct = [d for d in (distinct_n(a) for a in answers) if d is not None]
    return {
        "loop_share": round(100 * sum(repeated_run(a) is not None for a in answers) / len(answers), 2),
        "distinct-2": round(sum(distinct) / len(distinct), 2) if distinct else 0.0,
        "marker_share": round(100 * sum(r.get("finish_reason") == "marker" for r in rows) / len(rows), 2),
    }


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
    qa_rows = [r for r in rows if not r.get("task")]
    if qa_rows:  # extraction answers are JSON that repeats its keys by design: repetition is a QA measure
        means.update(repetition_scores(qa_rows))
    if means:
        means["mean_answer_chars"] = round(sum(len(r["model_output"]) for r in rows) / len(rows), 1)
    return means
