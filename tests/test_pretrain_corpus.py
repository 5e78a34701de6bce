"""The shipped raw corpus for continued pre-training (instruction_data/pretrain/): readable, one file per topic of
the instruction data, real documents, and no span of a held-out reference answer (infer.json) inside it."""
import re
from statistics import median

import pytest

from conftest import ROOT
from test_instruction_data import LEAKAGE_THRESHOLD
from utils.data import load_records
from utils.data.check import char_ngrams, jaccard
from utils.data.raw_text import read_documents

CORPUS = ROOT / "instruction_data" / "pretrain"
FILES = sorted(CORPUS.glob("*.txt"))
TOPICS = sorted({r["topic"] for r in load_records(ROOT / "instruction_data" / "fin_data.json")})
# The corpus is what moves the ~3,700 rows extend_vocab.py adds; README (pretrain section) gives the size and why.
MIN_TOTAL_CHARS = 95_000


def cjk(text: str) -> int:
    return sum("\u4e00" <= c <= "\u9fff" for c in text)


def documents(path) -> list[str]:
    # Read as pretrain.py reads it: documents separated by a blank line; single newlines are paragraphs.
    return [doc.text for doc in read_documents(path)]


corpus = {path.name: documents(path) for path in FILES}
# Leakage is measured paragraph by paragraph: a paragraph is about as long as a reference answer (80-400
# characters), so the Jaccard of character 5-grams that the instruction-data test uses for questions is
# meaningful here too, with the same threshold. A whole document against one answer would always score low.
paragraphs = [p.strip() for docs in corpus.values() for d in docs for p in d.split("\n") if p.strip()]
answers = [r["output"] for r in load_records(ROOT / "instruction_data" / "infer.json")]


def test_one_utf8_file_per_topic_of_the_instruction_data():
    assert [p.name for p in FILES] == sorted(t.replace("/", "与") + ".txt" for t in TOPICS)
    for path in FILES:
        path.read_bytes().decode("utf-8")  # strict: raises on anything that is not UTF-8


def test_documents_are_real_prose_and_not_repeated():
    all_docs = [d for docs in corpus.values() for d in docs]
    for name, docs in corpus.items():
        assert len(docs) >= 8, name
        for doc in docs:
            assert cjk(doc) >= 200, (name, doc[:40])
            assert doc.count("\n") >= 1, (name, doc[:40])  # several paragraphs, not one line
            assert "\ufffd" not in doc and "\t" not in doc, (name, doc[:40])
    assert len(set(all_docs)) == len(all_docs)
    assert len(set(paragraphs)) == len(paragraphs)


def test_corpus_is_large_enough_and_balanced_across_topics():
    sizes = {name: sum(len(d) for d in docs) for name, docs in corpus.items()}
    assert sum(sizes.values()) >= MIN_TOTAL_CHARS, sizes
    assert min(sizes.values()) >= 0.5 * max(sizes.values()), sizes


def test_no_paragraph_is_a_near_copy_of_a_held_out_reference_answer():
    answer_grams = [char_ngrams(a) for a in answers]
    scores = [max(jaccard(char_ngrams(p), g) for g in answer_grams) for p in paragraphs]
    worst = max(zip(scores, paragraphs))
    print(f"\npretrain paragraphs vs infer.json answers: max Jaccard {worst[0]:.3f}, "
          f"median {median(scores):.3f} over {len(paragraphs)} paragraphs")
    assert worst[0] < LEAKAGE_THRESHOLD, worst


def test_no_held_out_answer_is_mostly_contained_in_one_document():
    # Containment catches what Jaccard can miss: an answer pasted into a long paragraph. Share of each
    # answer's 5-grams found in the document that holds most of them.
    doc_grams = [char_ngrams(d) for docs in corpus.values() for d in docs]
    shares = [max(len(g & dg) for dg in doc_grams) / len(g) for g in map(char_ngrams, answers)]
    print(f"\ninfer.json answers inside one pretrain document: max share {max(shares):.3f}, "
          f"median {median(shares):.3f}")
    assert max(shares) < LEAKAGE_THRESHOLD


@pytest.mark.parametrize("name", [p.name for p in FILES])
def test_figures_that_change_carry_their_date(name):
    # Rates set by rules or by the market change: every paragraph quoting an LPR, a provident-fund loan rate
    # or a posted deposit rate says which date or year the figure refers to, or that it is only assumed (假设).
    for doc in corpus[name]:
        for para in doc.split("\n"):
            if re.search(r"(LPR|公积金贷款利率|挂牌利率)[^。]*为\d+(\.\d+)?%", para):
                assert re.search(r"20\d\d年|假设", para), para[:60]
