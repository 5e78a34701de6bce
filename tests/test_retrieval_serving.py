"""Answers over the user's documents through every way of asking: infer.py --index_dir, the OpenAI-compatible API
(the official client), and the web page's document tab in headless Chromium.

The model is the tiny random Llama with an adapter trained (seconds) to answer any grounded question with "见[1]。",
so the answer cites passage 1 and the test can check that the citation maps to the right file and page.
"""
from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT, run_script, write_json
from servers import free_port, running_process

DOC_LINES = ["股票是股份公司发行的所有权凭证。", "债券是发行人承诺还本付息的债务凭证。",
             "基金定投是每月固定日期用固定金额买入同一只基金，用来摊平成本。", "存款保险最高偿付五十万元。"]
QUESTION = "基金定投是什么"


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    (folder / "产品手册.jsonl").write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n"
                                                for t in DOC_LINES), encoding="utf-8")
    (folder / "杂项.txt").write_text("信用卡最低还款不享受免息期。", encoding="utf-8")
    index_dir = folder / "index"
    done = run_script("-m", "utils.retrieval", "index", folder, "--index_dir", index_dir, "--chunk_chars", "60",
                      "--overlap", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    return index_dir


@pytest.fixture(scope="module")
def citing_adapter(tiny_model, tmp_path_factory):
    """An adapter that answers every question asked over passages with "见[1]。".

    Trained (seconds) on grounded records whose questions, passages (1 to 3), file names and pages are drawn at
    random, all with that answer, so it cites passage 1 whatever it is asked and whatever the passages are."""
    import random

    import finetune
    from conftest import RECORDS
    from utils.retrieval.answer import grounded_record

    rng = random.Random(0)
    texts = [r["output"] for r in RECORDS] + DOC_LINES
    names = ["产品手册.jsonl", "杂项.txt", "年报.pdf", "条款.docx", "公告.html", "说明.md", "通知.txt"]
    words = ["股票", "债券", "基金", "存款", "信用卡", "保险", "利率", "国债", "期限", "成本", "凭证", "还款", "定投"]
    records = []
    for k in range(48):
        passages = [{"file": f"/docs/{rng.choice(names)}", "page": rng.randint(1, 9), "start": 0, "end": len(t),
                     "score": 1.0, "text": t} for t in rng.sample(texts, 1 + k % 3)]
        question = rng.choice(words) + rng.choice(["是什么", "怎么算", "有什么用", "的规定？"])
        records.append({**grounded_record(question, passages), "output": "见[1]。"})
    data = write_json(tmp_path_factory.mktemp("cite") / "train.json", records)
    out = tmp_path_factory.mktemp("cite-adapter") / "lora"
    finetune.train(base_model=tiny_model, data_path=str(data), output_dir=str(out), load_8bit=False,
                   micro_batch_size=4, batch_size=8, learning_rate=2e-2, max_steps=80, save_steps=80, cutoff_len=512,
                   warmup_steps=0, lora_dropout=0.0, bf16=False)
    return str(out)


def test_infer_answers_over_the_index_and_keeps_passages_and_citations(tiny_model, citing_adapter, docs, tmp_path):
    cases = write_json(tmp_path / "cases.json", [{"instruction": QUESTION, "input": "", "output": ""}])
    out = tmp_path / "answers.jsonl"
    done = run_script("infer.py", "--base_model", tiny_model, "--lora_weights", citing_adapter, "--infer_data_path",
                      cases, "--output_path", out, "--index_dir", docs, "--index_top_k", "2", "--max_new_tokens", "8")
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(out.read_text(encoding="utf-8"))
    assert row["model_output"] == "见[1]。"
    assert row["passages"][0]["file"].endswith("产品手册.jsonl") and row["passages"][0]["page"] == 3
    assert [(c["n"], c["page"]) for c in row["citations"]] == [(1, 3)] and "摊平成本" in row["citations"][0]["text"]


@pytest.fixture(scope="module")
def server(tiny_model, citing_adapter, docs, tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    folder = tmp_path_factory.mktemp("rag-server")
    with running_process([sys.executable, "serve.py", "--base_model", tiny_model, "--bf16", "False",
                          "--lora_weights", f"fin={citing_adapter}", "--index_dir", str(docs), "--port", str(port),
                          "--max_new_tokens", "8"], f"{url}/health", folder / "server.log", cwd=ROOT):
        yield url


def test_the_api_answers_over_the_documents_with_sources_plain_and_streamed(server):
    from openai import BadRequestError, OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    ids = [m.id for m in client.models.list().data]
    assert "fin+docs" in ids and next(m for m in client.models.list().data if m.id == "fin+docs").parent == "fin"
    messages = [{"role": "user", "content": QUESTION}]
    reply = client.chat.completions.create(model="fin", messages=messages, extra_body={"retrieval": {"top_k": 2}})
    assert reply.choices[0].message.content == "见[1]。"
    sources = reply.model_extra["retrieval"]
    assert 1 <= len(sources["passages"]) <= 2 and sources["passages"][0]["page"] == 3  # only passages that match
    assert [(c["n"], c["file"].endswith("产品手册.jsonl"), c["page"]) for c in sources["citations"]] == [(1, True, 3)]
    # the same through the model id, streamed: passages in the first chunk, citations with the last
    chunks = list(client.chat.completions.create(model="fin+docs", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "见[1]。"
    assert chunks[0].model_extra["retrieval"]["passages"][0]["page"] == 3
    assert chunks[-1].model_extra["retrieval"]["citations"][0]["page"] == 3
    # without retrieval the same model answers without sources
    plain = client.chat.completions.create(model="fin", messages=messages)
    assert "retrieval" not in (plain.model_extra or {})
    with pytest.raises(BadRequestError) as err:
        client.chat.completions.create(model="fin", messages=messages, extra_body={"retrieval": {"top_k": 99}})
    assert err.value.body["param"] == "retrieval"


@pytest.mark.browser
def test_the_page_document_tab_uploads_asks_and_shows_the_cited_passage(server, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from chat_page import ChatPage, find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium fonts-noto-cjk)")
    upload = tmp_path / "新条款.txt"
    upload.write_text("国债逆回购是把资金短期借出、到期收回本息的交易。", encoding="utf-8")
    with ChatPage(server + "/") as chat:
        page = chat.page
        chat.tab("文档问答")
        page.locator("#docs-files input[type=file]").set_input_files(str(upload))
        chat.wait_idle()
        page.locator("#docs-add").click()
        page.locator("#docs-status").get_by_text("已加入 1 个文件").wait_for(timeout=60_000)
        page.locator("#docs-input textarea").fill("国债逆回购是什么")
        page.locator("#docs-send").click()
        sources = page.locator("#docs-sources")
        sources.get_by_text("引用 cited").wait_for(timeout=60_000)
        text, answer = sources.inner_text(), page.locator("#docs-answer").inner_text()
    assert "见[1]" in answer
    assert "[1]" in text and "新条款.txt 第1页" in text and "国债逆回购是把资金短期借出" in text
