import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import finetune
from conftest import RECORDS, ROOT, write_json
from utils.adapters import load_adapter
from utils.merging import merge_adapter
from utils.vocab import extend_base


@pytest.fixture(scope="module")
def extended(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("extended") / "base"
    summary = extend_base(tiny_model, ROOT / "instruction_data" / "fin_data.json", 3000, out,
                          ROOT / "instruction_data" / "infer.json")
    return out, summary


def test_extension_lowers_tokens_per_character(tiny_model, extended):
    out, summary = extended
    assert summary["added_tokens"] > 100
    assert summary["tokens_per_chinese_char_after"] < 0.8 * summary["tokens_per_chinese_char_before"]
    old, new = AutoTokenizer.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(out)
    assert len(new) == len(old) + summary["added_tokens"]
    text = "基金定投能保证赚钱吗？"
    assert len(new(text)["input_ids"]) < len(old(text)["input_ids"])
    assert new.decode(new(text)["input_ids"]) == text


def test_new_rows_start_as_the_mean_of_the_pieces_they_replace(tiny_model, extended):
    out, _ = extended
    old_tok, new_tok = AutoTokenizer.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(out)
    old_model, new_model = AutoModelForCausalLM.from_pretrained(tiny_model), AutoModelForCausalLM.from_pretrained(out)
    piece = (out / "added_tokens.txt").read_text(encoding="utf-8").split()[0]
    old_ids = old_tok(piece, add_special_tokens=False)["input_ids"]
    row = new_tok.convert_tokens_to_ids(piece)
    for get in ("get_input_embeddings", "get_output_embeddings"):
        expected = getattr(old_model, get)().weight[old_ids].mean(dim=0)
        assert torch.allclose(getattr(new_model, get)().weight[row], expected)
    # Old tokens keep their rows: text made only of old tokens gets the same logits.
    ids = torch.tensor([old_tok("What is a bond?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(old_model(input_ids=ids).logits, new_model(input_ids=ids).logits[..., :len(old_tok)])


def test_finetune_trains_new_embeddings_and_the_merge_keeps_them(tiny_model, extended, tmp_path):
    out, _ = extended
    adapter = tmp_path / "lora"
    finetune.train(base_model=str(out), data_path=str(write_json(tmp_path / "d.json", RECORDS)),
                   output_dir=str(adapter), load_8bit=False, micro_batch_size=2, batch_size=2, learning_rate=1e-2,
                   max_steps=4, save_steps=4, cutoff_len=128)
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert any("embed_tokens" in k for k in keys) and any("lm_head" in k for k in keys)
    # The rows of the added tokens were trained: they are no longer at their initial values.
    from safetensors.torch import load_file

    trained = load_file(str(adapter / "adapter_model.safetensors"))
    embed = next(v for k, v in trained.items() if "embed_tokens" in k)
    initial = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight
    new_rows = slice(len(AutoTokenizer.from_pretrained(tiny_model)), initial.shape[0])
    seen = torch.tensor(sorted({i for r in RECORDS for i in AutoTokenizer.from_pretrained(out)(r["output"])["input_ids"]}))
    seen_new = seen[seen >= new_rows.start]
    assert len(seen_new) > 0
    assert (embed[seen_new] - initial[seen_new]).abs().amax(dim=1).min() > 1e-4, "every new token seen in training moved"
    merged = merge_adapter(str(out), str(adapter), tmp_path / "merged", dtype="float32")
    ids = torch.tensor([AutoTokenizer.from_pretrained(out)("基金定投能保证赚钱吗？")["input_ids"]])
    with torch.no_grad():
        expected = load_adapter(AutoModelForCausalLM.from_pretrained(out), str(adapter))(input_ids=ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(input_ids=ids).logits
    assert (got - expected).abs().max() < 1e-4
    assert json.loads((out / "cornucopia.json").read_text())["kind"] == "vocab-extended"


def test_too_small_a_vocabulary_is_a_clear_error(tiny_model, tmp_path):
    from utils.data import DataError

    with pytest.raises(DataError, match="--vocab_size 50 .*Increase vocab_size"):
        extend_base(tiny_model, ROOT / "instruction_data" / "fin_data.json", 50, tmp_path / "x")
