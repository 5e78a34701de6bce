"""Retrieval over documents the tests write with the real formats' own libraries: a Chinese PDF (fpdf2 with the Noto
CJK font), a DOCX (python-docx), HTML, text, Markdown and JSONL; normalization, chunking, the index and its updates,
every kind of bad input, and the command line."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import run_script
from utils.retrieval import DocumentError, DocumentIndex, read_document
from utils.retrieval.answer import citations, grounded_record, passages_input
from utils.retrieval.text import chunk_text, normalize, sentences

FONT = next((p for p in ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                         "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf") if Path(p).is_file()), None)
needs_cjk_font = pytest.mark.skipif(FONT is None, reason="no CJK font (Debian: apt-get install fonts-noto-cjk; "
                                    "scripts/test.sh installs it when run as root)")
PAGES = ["第一页讲股票。股票是股份公司发行的所有权凭证，股东按持股比例享有权益。",
         "第二页讲债券。债券是发行人承诺按期还本付息的债务凭证，票面利率在发行时确定。",
         "第三页讲基金定投。基金定投是每月固定日期用固定金额买入同一只基金，用来摊平买入成本。"]


def write_pdf(path: Path, pages: list[str], encrypt: str = "") -> Path:
    from fpdf import FPDF

    pdf = FPDF(format="A5")
    pdf.add_font("cjk", fname=FONT)
    pdf.set_font("cjk", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    if encrypt:
        pdf.set_encryption(owner_password="owner", user_password=encrypt)
    pdf.output(str(path))
    return path


def write_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_paragraph("存款保险的最高偿付限额是多少？同一存款人在同一家银行的存款，最高偿付50万元。")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("品种", "期限"), ("大额存单", "3年")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.save(str(path))
    return path


# ---- text ------------------------------------------------------------------------------------------------------

def test_text_from_pdfs_is_normalized_as_a_keyboard_types_it():
    # Kangxi radical 金 (U+2FA6), radical-supplement 长 (U+2ED3), compatibility ideograph 金 (U+F90A),
    # full-width letters and digits; Chinese punctuation stays.
    assert normalize("\u2fa6融\u2ed3期\uf90a额 ＬＰＲ３．４５％，稳定。") == "金融长期金额 LPR3.45%，稳定。"
    # spaces between Chinese characters are PDF artefacts and go; between words of other scripts, one stays
    assert normalize("多个　 空格\r\nLPR  利率 and   bond\r第三行\x00") == "多个空格\nLPR 利率 and bond\n第三行"


def test_sentences_end_at_chinese_marks_and_line_breaks_and_keep_quotes():
    assert sentences("他说：“买了。”然后走了！表格|一|二\n最后一句") == ["他说：“买了。”", "然后走了！", "表格|一|二", "最后一句"]


def test_chunks_never_cut_a_sentence_overlap_and_point_back_into_the_text():
    text = "".join(f"第{k}句话讲一件事情。" for k in range(30))  # sentences of 9-10 characters
    chunks = chunk_text(text, chunk_chars=40, overlap=12)
    for chunk, start, end in chunks:
        assert text[start:end] == chunk and len(chunk) <= 40
        assert chunk.endswith("。") and (start == 0 or text[start - 1] == "。")  # whole sentences only
    assert [c[1] for c in chunks] == sorted(c[1] for c in chunks)
    assert all(b[1] < a[2] for a, b in zip(chunks, chunks[1:]))  # each chunk overlaps the one before
    assert chunks[-1][2] == len(text)
    long = "一" * 100 + "。"  # one sentence longer than a chunk: cut only then
    pieces = chunk_text(long, chunk_chars=40, overlap=10)
    assert len(pieces) > 1 and all(len(p) <= 40 for p, _, _ in pieces) and pieces[-1][2] == len(long)


# ---- documents -------------------------------------------------------------------------------------------------

@needs_cjk_font
def test_a_chinese_pdf_is_read_page_by_page(tmp_path):
    pages, warnings = read_document(write_pdf(tmp_path / "年报.pdf", PAGES))
    assert [p.page for p in pages] == [1, 2, 3] and warnings == []
    assert "".join(pages[2].text.split()) == PAGES[2]


def test_docx_html_text_markdown_and_jsonl_are_read_with_tables_as_rows(tmp_path):
    pages, _ = read_document(write_docx(tmp_path / "条款.docx"))
    assert "最高偿付50万元" in pages[0].text and "大额存单 | 3年" in pages[0].text
    html = tmp_path / "公告.html"
    html.write_text("<html><head><style>p{}</style><script>var x=1;</script></head><body><h1>费率公告</h1>"
                    "<p>申购费率为０．８％。</p><table><tr><th>份额</th><th>费率</th></tr><tr><td>A类</td><td>0.8%</td>"
                    "</tr></table></body></html>", encoding="utf-8")
    text = read_document(html)[0][0].text
    assert "申购费率为0.8%。" in text and "A类 | 0.8%" in text and "var x" not in text
    (tmp_path / "a.md").write_text("# 标题\n\n正文一句。", encoding="utf-8")
    assert read_document(tmp_path / "a.md")[0][0].text == "# 标题\n\n正文一句。"
    (tmp_path / "b.jsonl").write_text('{"text": "第一条"}\n\n{"text": "第二条"}\n', encoding="utf-8")
    assert [(p.page, p.text) for p in read_document(tmp_path / "b.jsonl")[0]] == [(1, "第一条"), (3, "第二条")]


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", b"", "the file is empty"),
    ("gbk.txt", "国债逆回购".encode("gbk"), "not UTF-8 text (byte 0xb9 at offset 0)"),
    ("notes.xlsx", b"PK\x03\x04", "unknown kind of document '.xlsx'"),
    ("broken.pdf", b"%PDF-1.4\nthis is not a pdf body", "not a readable PDF"),
    ("broken.docx", b"PK\x03\x04 not really a zip", "not a readable .docx file"),
    ("bad.jsonl", b'{"text": "ok"}\n{"title": 1}\n', "line 2: field 'text' must be a string"),
])
def test_bad_files_are_named_in_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError) as err:
        read_document(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


@needs_cjk_font
def test_an_encrypted_pdf_and_pages_without_text_are_reported(tmp_path):
    with pytest.raises(DocumentError, match="encrypted"):
        read_document(write_pdf(tmp_path / "locked.pdf", PAGES[:1], encrypt="secret"))
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()  # a page with no text layer, as a scan has
    pdf.add_font("cjk", fname=FONT)
    pdf.set_font("cjk", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 8, PAGES[0])
    pdf.output(str(tmp_path / "scan.pdf"))
    pages, warnings = read_document(tmp_path / "scan.pdf")
    assert [p.page for p in pages] == [2]
    assert len(warnings) == 1 and "1 page(s) without a text layer" in warnings[0] and "page 1" in warnings[0]


# ---- the index -------------------------------------------------------------------------------------------------

@needs_cjk_font
def test_a_question_answered_on_page_three_retrieves_page_three(tmp_path):
    (tmp_path / "docs").mkdir()
    write_pdf(tmp_path / "docs" / "年报.pdf", PAGES)
    index = DocumentIndex(chunk_chars=80, overlap=10)
    summary = index.update([tmp_path / "docs"], progress=False)
    assert summary["pages"] == 3 and summary["failed"] == {}
    best = index.search("基金定投是什么意思", top_k=3)[0]
    assert (Path(best["file"]).name, best["page"]) == ("年报.pdf", 3) and "摊平买入成本" in best["text"]
    # a question typed with full-width characters finds the same passage
    assert index.search("基金定投　ＡＢ", top_k=1)[0]["page"] == 3


def test_updates_read_only_new_and_changed_files_and_drop_vanished_ones(tmp_path, monkeypatch):
    from utils.retrieval import index as index_module

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("股票是所有权凭证。", encoding="utf-8")
    (docs / "b.txt").write_text("债券是债务凭证。", encoding="utf-8")
    store = DocumentIndex()
    store.update([docs], progress=False)
    store.save(tmp_path / "index")
    read = []
    real = index_module.read_document
    monkeypatch.setattr(index_module, "read_document", lambda path: read.append(Path(path).name) or real(path))
    store = DocumentIndex.load(tmp_path / "index")
    (docs / "c.txt").write_text("基金定投摊平成本。", encoding="utf-8")
    summary = store.update([docs], progress=False)
    assert read == ["c.txt"] and summary["added"] == [str(docs / "c.txt")] and len(summary["unchanged"]) == 2
    time.sleep(0.01)
    (docs / "a.txt").write_text("股票是股份公司发行的所有权凭证。", encoding="utf-8")
    (docs / "b.txt").unlink()
    summary = store.update([docs], progress=False)
    assert read == ["c.txt", "a.txt"] and summary["changed"] == [str(docs / "a.txt")]
    assert summary["dropped"] == [str(docs / "b.txt")]
    assert {Path(c.file).name for c in store.chunks} == {"a.txt", "c.txt"}
    assert "股份公司" in store.search("股票", 1)[0]["text"]
    assert all(not hit["file"].endswith("b.txt") for hit in store.search("债务凭证", 3))


def test_a_bad_file_is_skipped_and_the_rest_of_the_batch_indexed(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("国债逆回购是短期借出资金。", encoding="utf-8")
    (docs / "bad.txt").write_bytes("国债".encode("gbk"))
    (docs / "empty.md").write_bytes(b"")
    summary = DocumentIndex().update([docs], progress=False)
    assert summary["added"] == [str(docs / "good.txt")] and set(summary["failed"]) == {str(docs / "bad.txt"),
                                                                                        str(docs / "empty.md")}


def test_saving_is_atomic_a_crash_leaves_the_previous_index(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("股票是所有权凭证。", encoding="utf-8")
    store = DocumentIndex()
    store.update([tmp_path / "a.txt"], progress=False)
    store.save(tmp_path / "index")
    (tmp_path / "b.txt").write_text("债券是债务凭证。", encoding="utf-8")
    store.update([tmp_path / "b.txt"], progress=False)

    def crash(folder):
        raise OSError("disk full")

    monkeypatch.setattr(store.bm25, "save", crash)
    with pytest.raises(OSError):
        store.save(tmp_path / "index")
    loaded = DocumentIndex.load(tmp_path / "index")  # still the first version, whole
    assert [Path(c.file).name for c in loaded.chunks] == ["a.txt"]
    assert sorted(p.name for p in (tmp_path / "index").iterdir() if not p.name.startswith(".")) == ["CURRENT", "v1"]


def test_the_saved_index_loads_in_well_under_a_second(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for k in range(40):
        (docs / f"{k}.txt").write_text("".join(f"第{k}份文件第{j}句讲利率和期限。" for j in range(60)), encoding="utf-8")
    store = DocumentIndex()
    store.update([docs], progress=False)
    store.save(tmp_path / "index")
    began = time.perf_counter()
    loaded = DocumentIndex.load(tmp_path / "index")
    assert time.perf_counter() - began < 0.5 and len(loaded.chunks) == len(store.chunks) > 100
    assert loaded.search("第7份文件第3句", 1)[0]["file"].endswith("7.txt")


# ---- answers with citations ------------------------------------------------------------------------------------

def test_passages_are_numbered_in_the_input_and_citations_map_back():
    passages = [{"file": "/d/年报.pdf", "page": 3, "start": 0, "end": 10, "text": "基金定投摊平成本。", "score": 2.0},
                {"file": "/d/条款.docx", "page": 1, "start": 5, "end": 20, "text": "最高偿付50万元。", "score": 1.0}]
    record = grounded_record("存款保险赔多少？", passages)
    assert record["instruction"] == "存款保险赔多少？"
    assert "[1]（年报.pdf 第3页）基金定投摊平成本。" in record["input"] and "[2]（条款.docx 第1页）" in record["input"]
    assert passages_input(passages) == record["input"]
    cited = citations("最高偿付50万元[2]，另见[2][7]和[1]。", passages)
    assert [(c["n"], Path(c["file"]).name, c["page"]) for c in cited] == [(2, "条款.docx", 1), (1, "年报.pdf", 3)]


# ---- the command line ------------------------------------------------------------------------------------------

def test_index_search_and_evaluate_commands(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "股票.txt").write_text("A股实行T+1交易，当天买入的股票下一个交易日才能卖出。\n\n涨跌幅限制为10%。", encoding="utf-8")
    (docs / "坏.txt").write_bytes("坏".encode("gbk"))
    done = run_script("-m", "utils.retrieval", "index", docs, "--index_dir", tmp_path / "index")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: skipped" in done.stdout and "坏.txt: not UTF-8" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1])["added"] == 1
    done = run_script("-m", "utils.retrieval", "search", "--index_dir", tmp_path / "index", "当天买的股票什么时候能卖")
    assert done.returncode == 0 and "股票.txt:1" in done.stdout and "T+1" in done.stdout
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"question": "当天买的股票何时能卖", "file": "股票.txt",
                                      "evidence": "当天买入的股票下一个交易日才能卖出"}], ensure_ascii=False),
                         encoding="utf-8")
    done = run_script("-m", "utils.retrieval", "evaluate", "--index_dir", tmp_path / "index", "--questions", questions)
    assert done.returncode == 0 and json.loads(done.stdout.strip().splitlines()[-1])["recall@1"] == 1.0
    done = run_script("-m", "utils.retrieval", "search", "--index_dir", tmp_path / "nowhere", "问题")
    assert done.returncode == 1 and done.stderr.strip().startswith("error:") and "no index here" in done.stderr
