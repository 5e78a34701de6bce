"""The retrieval command line:

    python -m utils.retrieval index DOCS... --index_dir DIR [--chunk_chars 300 --overlap 60 --embedding_model FOLDER]
    python -m utils.retrieval search --index_dir DIR "问题" [--top_k 5]
    python -m utils.retrieval evaluate --index_dir DIR --questions evaluation_data/retrieval_questions.json [--top_k 5]

`evaluate` scores retrieval against questions whose answer is known to lie in a passage: each question names its
`file` and an `evidence` sentence copied from it; a retrieved chunk is a hit when it comes from that file and holds
the evidence (normalized). Prints recall@1, recall@k and MRR, and writes them as JSON with --output.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from utils.cli import run
from utils.errors import UsageError
from utils.files import atomic_write_json
from utils.retrieval.index import DocumentIndex, open_or_create
from utils.retrieval.text import normalize


def index(*docs: str, index_dir: str = "", chunk_chars: int = 300, overlap: int = 60, embedding_model: str = ""):
    """Add DOCS (files or folders) to the index in INDEX_DIR (created if missing); changed files are read again,
    files that no longer exist are dropped. A file that cannot be read is named and skipped."""
    if not docs or not index_dir:
        raise UsageError("usage: python -m utils.retrieval index DOCS... --index_dir DIR")
    store = open_or_create(index_dir, int(chunk_chars), int(overlap), embedding_model)
    summary = store.update(docs)
    store.save(index_dir)
    for path, error in summary["failed"].items():
        print(f"warning: skipped {error}")
    for warning in summary["warnings"]:
        print(f"warning: {warning}")
    print(json.dumps({k: (len(v) if isinstance(v, (list, dict)) else v) for k, v in summary.items()},
                     ensure_ascii=False))


def search(query: str, index_dir: str = "", top_k: int = 5, embedding_model: str = None):
    """The TOP_K passages for QUERY, each with its file:page and score."""
    if not index_dir:
        raise UsageError("--index_dir is required")
    for hit in DocumentIndex.load(index_dir, embedding_model).search(query, int(top_k)):
        print(f"[{hit['rank']}] {hit['file']}:{hit['page']} (score {hit['score']})\n{hit['text']}\n")


def hit(passage: dict, question: dict) -> bool:
    return Path(passage["file"]).name == question["file"] and normalize(question["evidence"]) in passage["text"]


def score_retrieval(store: DocumentIndex, questions: list[dict], top_k: int = 5) -> dict:
    """recall@1, recall@top_k, MRR (over top_k) and query latency (ms) of STORE on QUESTIONS."""
    ranks, latencies = [], []
    for q in questions:
        began = time.perf_counter()
        passages = store.search(q["question"], top_k)
        latencies.append((time.perf_counter() - began) * 1000)
        ranks.append(next((k + 1 for k, p in enumerate(passages) if hit(p, q)), None))
    latencies.sort()
    found = [r for r in ranks if r]
    return {"questions": len(questions), "top_k": top_k,
            "recall@1": round(sum(r == 1 for r in found) / len(questions), 3),
            f"recall@{top_k}": round(len(found) / len(questions), 3),
            "mrr": round(sum(1 / r for r in found) / len(questions), 3),
            "latency_ms_p50": round(statistics.median(latencies), 2),
            "latency_ms_p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
            "missed": [q["question"] for q, r in zip(questions, ranks) if not r]}


def evaluate(index_dir: str = "", questions: str = "evaluation_data/retrieval_questions.json", top_k: int = 5,
             embedding_model: str = None, output: str = ""):
    """Recall@1, recall@K and MRR of the index on QUESTIONS ({question, file, evidence}); JSON to --output."""
    if not index_dir:
        raise UsageError("--index_dir is required")
    rows = json.loads(Path(questions).read_text(encoding="utf-8"))
    for k, row in enumerate(rows, start=1):
        missing = [f for f in ("question", "file", "evidence") if not isinstance(row.get(f), str) or not row[f]]
        if missing:
            raise UsageError(f"{questions}: record {k}: field '{missing[0]}' must be a non-empty string")
    scores = score_retrieval(DocumentIndex.load(index_dir, embedding_model), rows, int(top_k))
    if output:
        atomic_write_json(output, scores)
    print(json.dumps({k: v for k, v in scores.items() if k != "missed"}, ensure_ascii=False))


if __name__ == "__main__":
    run({"index": index, "search": search, "evaluate": evaluate})
