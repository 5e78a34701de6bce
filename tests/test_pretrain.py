"""Continued pre-training: raw text read and packed into blocks, stage 1 touches only embedding rows, stage 2 feeds
instruction tuning."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

import finetune
import pretrain
from conftest import RECORDS, ROOT, run_script, write_json
from utils.data.raw_text import build_block_dataset, load_corpus, pack_blocks, read_documents
from utils.data.records import DataError
from utils.vocab import extend_base

DOCS = ["股票是股份公司发行的所有权凭证。", "债券是发行人向投资者借款\n并承诺按期还本付息的债务凭证。", "基金定投按月买入同一只基金。"]


def test_blocks_are_the_documents_with_eos_between_cut_at_block_size_and_only_the_tail_dropped():
    docs = [[11, 12, 13], [14, 15], [16, 17, 18, 19]]
    stream = [11, 12, 13, 0, 14, 15, 0, 16, 17, 18, 19, 0]
    assert pack_blocks(docs, 0, 4) == [stream[0:4], stream[4:8], stream[8:12]]  # exact fit: nothing dropped
    blocks = pack_blocks(docs, 0, 5)
    assert blocks == [stream[0:5], stream[5:10]]  # the 2-token tail is the only loss
    assert pack_blocks(docs, 0, 13) == []
    with pytest.raises(DataError, match="block_size"):
        pack_blocks(docs, 0, 1)


def test_block_dataset_learns_every_token_and_separates_documents_with_eos(tiny_model, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    (tmp_path / "a.txt").write_text("\n\n".join(DOCS) * 5, encoding="utf-8")
    documents = read_documents(tmp_path / "a.txt")
    dataset, counts = build_block_dataset(documents, tokenizer, 16)
    ids = [tokenizer(d.text, add_special_tokens=False)["input_ids"] for d in documents]
    stream = [t for doc in ids for t in [*doc, tokenizer.eos_token_id]]
    assert counts["tokens"] == len(stream) and counts["blocks"] == len(stream) // 16
    assert counts["dropped_tail_tokens"] == len(stream) % 16
    assert [t for row in dataset["input_ids"] for t in row] == stream[:len(stream) // 16 * 16]
    assert dataset["labels"] == dataset["input_ids"] and all(len(r) == 16 for r in dataset["input_ids"])
    assert sum(t == tokenizer.eos_token_id for t in stream) == len(documents)


def test_txt_jsonl_and_folders_are_read_and_mixed(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text(f"\n{DOCS[0]}\n\n \n{DOCS[1]}\n\n\n{DOCS[2]}\n", encoding="utf-8")
    (folder / "b.txt").write_text("一个文件就是一篇文档。\n第二行仍属于它。", encoding="utf-8")
    (folder / "skip.md").write_text("not read", encoding="utf-8")
    lines = [json.dumps({"text": t, "source": "x"}, ensure_ascii=False) for t in DOCS]
    (tmp_path / "c.jsonl").write_text("\n".join(lines[:2]) + "\n\n" + lines[2] + "\n", encoding="utf-8")
    docs = read_documents(folder)
    assert [(d.path.rsplit("/", 1)[-1], d.line, d.text) for d in docs] == [
        ("a.txt", 2, DOCS[0]), ("a.txt", 5, DOCS[1]), ("a.txt", 9, DOCS[2]),
        ("b.txt", 1, "一个文件就是一篇文档。\n第二行仍属于它。")]
    assert [(d.line, d.text) for d in read_documents(tmp_path / "c.jsonl")] == [(1, DOCS[0]), (2, DOCS[1]),
                                                                                 (4, DOCS[2])]
    mixed = load_corpus(f"{folder}, {tmp_path / 'c.jsonl'}:2")
    assert len(mixed) == 6 and {d.text for d in mixed[4:]} <= set(DOCS)
    with pytest.raises(DataError, match=r"c.jsonl:5: asks for 5 documents, but .* has only 3"):
        load_corpus(f"{tmp_path / 'c.jsonl'}:5")


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", b"  \n\n", r"empty.txt: the file is empty"),
    ("latin.txt", "第一行\n第二行\n".encode() + "caf\u00e9".encode("latin-1"), r"latin.txt: line 3: not UTF-8"),
    ("notext.jsonl", '{"text": "好"}\n{"body": "没有text"}\n'.encode(), r"notext.jsonl: line 2: no 'text' field"),
    ("broken.jsonl", b'{"text": "a"}\n\n{"text": \n', r"broken.jsonl: line 3: not valid JSON"),
    ("blank.jsonl", b'{"text": "  "}\n', r"blank.jsonl: line 1: field 'text' must be a non-empty string"),
    ("notes.csv", b"text\nabc\n", r"notes.csv: raw text must be .txt"),
])
def test_bad_raw_text_names_the_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_documents(tmp_path / name)


def test_pretrain_reports_bad_input_as_one_error_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "好"}\n{"title": "x"}\n', encoding="utf-8")
    done = run_script("pretrain.py", "--data_path", tmp_path / "bad.jsonl", "--output_dir", tmp_path / "out")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (f"error: {tmp_path / 'bad.jsonl'}: line 2: no 'text' field; each "
                                                    'line must be an object like {"text": "..."}')
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "fin.txt"
    texts = [r["output"] for r in RECORDS] * 6
    path.write_text("\n\n".join(texts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def extended(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("extended") / "base"
    extend_base(tiny_model, ROOT / "instruction_data" / "fin_data.json", 3000, out)
    return out


def run_stage(base, corpus, out, stage1):
    return pretrain.train(base_model=str(base), data_path=str(corpus), output_dir=str(out), block_size=32,
                          train_embeddings_only=stage1, micro_batch_size=2, batch_size=2, max_steps=3,
                          warmup_steps=0, learning_rate=1e-2, save_steps=100)


def test_stage_one_changes_only_the_new_embedding_rows(extended, corpus, tmp_path):
    summary = run_stage(extended, corpus, tmp_path / "s1", stage1=True)
    before = load_file(str(extended / "model.safetensors"))
    after = load_file(summary["merged"] + "/model.safetensors")
    assert set(before) == set(after)
    new_rows = json.loads((extended / "cornucopia.json").read_text())["added_tokens"]
    first_new = before["lm_head.weight"].shape[0] - new_rows
    for name in before:
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(before[name][:first_new], after[name][:first_new]), name  # old rows kept
            assert not torch.equal(before[name][first_new:], after[name][first_new:]), name  # new rows learned
        else:
            assert torch.equal(before[name], after[name]), name  # bit-identical
    info = json.loads((tmp_path / "s1" / "merged" / "cornucopia.json").read_text())
    assert (info["kind"], info["stage"], info["block_size"], info["corpus"]) == ("pretrained", 1, 32, str(corpus))
    assert info["corpus_counts"]["blocks"] > 3 and (tmp_path / "s1" / "merged" / "added_tokens.txt").is_file()


def test_a_tied_base_is_extended_and_stage_one_keeps_it_tied(corpus, tmp_path):
    """The embedded SmolLM2 ties its LM head to the input embeddings: extension and stage 1 must keep one matrix."""
    from conftest import build_tiny_model

    tied = build_tiny_model(tmp_path / "tied", tied=True)
    extended = tmp_path / "tied-extended"
    extend_base(str(tied), ROOT / "instruction_data" / "fin_data.json", 3000, extended)
    before = load_file(str(extended / "model.safetensors"))
    assert "lm_head.weight" not in before  # one matrix, stored once
    summary = run_stage(extended, corpus, tmp_path / "s1", stage1=True)
    merged = Path(summary["merged"])
    after = load_file(str(merged / "model.safetensors"))
    assert set(before) == set(after)
    new_rows = json.loads((extended / "cornucopia.json").read_text())["added_tokens"]
    first_new = before["model.embed_tokens.weight"].shape[0] - new_rows
    embed_before, embed_after = before["model.embed_tokens.weight"], after["model.embed_tokens.weight"]
    assert torch.equal(embed_before[:first_new], embed_after[:first_new])
    assert not torch.equal(embed_before[first_new:], embed_after[first_new:])
    assert all(torch.equal(before[n], after[n]) for n in before if n != "model.embed_tokens.weight")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(merged)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight


def test_stage_two_result_feeds_instruction_tuning(tiny_model, corpus, tmp_path):
    run_stage(tiny_model, corpus, tmp_path / "s2", stage1=False)
    merged = tmp_path / "s2" / "merged"
    info = json.loads((merged / "cornucopia.json").read_text())
    assert (info["stage"], info["modules_to_save"]) == (2, ["embed_tokens", "lm_head"])
    base, stage2 = load_file(f"{tiny_model}/model.safetensors"), load_file(str(merged / "model.safetensors"))
    assert not torch.equal(base["model.layers.0.self_attn.q_proj.weight"], stage2["model.layers.0.self_attn.q_proj.weight"])
    assert not torch.equal(base["model.embed_tokens.weight"], stage2["model.embed_tokens.weight"])
    summary = finetune.train(base_model=str(merged), data_path=str(write_json(tmp_path / "d.json", RECORDS)),
                             output_dir=str(tmp_path / "lora"), load_8bit=False, micro_batch_size=2, batch_size=2,
                             max_steps=2, save_steps=2, cutoff_len=128, learning_rate=1e-2)
    assert summary["global_step"] == 2
    adapter = load_file(str(tmp_path / "lora" / "adapter_model.safetensors"))
    assert any("embed_tokens" in k for k in adapter)  # the embeddings keep learning, as the run info asks
    assert json.loads((tmp_path / "lora" / "cornucopia.json").read_text())["base_model"] == str(merged)
