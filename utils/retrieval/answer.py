"""Answers grounded in retrieved passages: the passages go into the record's `input` (the training template's own
background slot, so an adapter is asked in the template it learned), numbered, and the answer's [1], [2] are mapped
back to the file and page of each passage."""
from __future__ import annotations

import re
from pathlib import Path

CITATION = re.compile(r"\[(\d{1,2})\]")
HEADER = "以下是检索到的资料，请只依据这些资料回答，并在用到的句子后用[1]、[2]这样的编号注明出处；资料里没有答案时直接说资料中没有。"


def source_label(passage: dict) -> str:
    return f"{Path(passage['file']).name} 第{passage['page']}页"


def passages_input(passages: list[dict]) -> str:
    """The numbered passages as the record's input: [n]（file 第p页）text."""
    return HEADER + "\n" + "\n".join(f"[{k}]（{source_label(p)}）{p['text']}" for k, p in enumerate(passages, start=1))


def grounded_record(question: str, passages: list[dict]) -> dict:
    """An instruction record asking QUESTION over PASSAGES (no passages: the question alone)."""
    return {"instruction": question, "input": passages_input(passages) if passages else ""}


def citations(answer: str, passages: list[dict]) -> list[dict]:
    """The passages an answer cites, in the order first cited: {n, file, page, start, end, text}; numbers that name
    no passage are left out."""
    seen, cited = set(), []
    for match in CITATION.finditer(answer or ""):
        n = int(match.group(1))
        if 1 <= n <= len(passages) and n not in seen:
            seen.add(n)
            p = passages[n - 1]
            cited.append({"n": n, "file": p["file"], "page": p["page"], "start": p["start"], "end": p["end"],
                          "text": p["text"]})
    return cited


def public_passages(passages: list[dict]) -> list[dict]:
    """What a response shows of each passage used: its number, source and text."""
    return [{"n": k, "file": p["file"], "page": p["page"], "start": p["start"], "end": p["end"], "score": p["score"],
             "text": p["text"]} for k, p in enumerate(passages, start=1)]


def ground_cases(index, cases: list[dict], top_k: int = 3) -> tuple[list[dict], list[list[dict]]]:
    """Each case asked over the TOP_K passages its question retrieves (a case's own input is kept after them);
    returns the grounded cases and the passages of each."""
    grounded, used = [], []
    for case in cases:
        passages = index.search(case["instruction"], top_k)
        record = grounded_record(case["instruction"], passages)
        if case.get("input"):
            record["input"] = (record["input"] + "\n\n" + case["input"]).strip()
        grounded.append({**case, **record})
        used.append(passages)
    return grounded, used


def attach_sources(rows: list[dict], passages: list[list[dict]]) -> list[dict]:
    """Answer rows with the passages each was given and the ones its answer cites (file, page, text)."""
    for row, used in zip(rows, passages):
        row["passages"] = public_passages(used)
        row["citations"] = citations(row.get("model_output", ""), used)
    return rows
