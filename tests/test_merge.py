import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import finetune
from conftest import build_tiny_model, run_script
from utils import adapters
from utils.loading import ModelLoadError
from utils.merging import merge_adapter


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model, tmp_path_factory):
    from conftest import RECORDS, write_json

    folder = tmp_path_factory.mktemp("merge")
    out = folder / "lora"
    finetune.train(base_model=tiny_model, data_path=str(write_json(folder / "d.json", RECORDS)), output_dir=str(out),
                   load_8bit=False, micro_batch_size=2, batch_size=2, learning_rate=1e-2, max_steps=6, save_steps=6,
                   cutoff_len=128, prompt_template_name="ori_template")
    return str(out)


def test_merged_logits_equal_base_plus_adapter(tiny_model, tiny_adapter, tmp_path):
    out = merge_adapter(tiny_model, tiny_adapter, tmp_path / "merged", dtype="float32")
    ids = torch.tensor([[1, 11, 22, 33, 44, 55, 66]])
    with torch.no_grad():
        peft_model = adapters.load_adapter(AutoModelForCausalLM.from_pretrained(tiny_model), tiny_adapter)
        expected = peft_model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model)(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out)(input_ids=ids).logits
    assert (expected - base).abs().max() > 1e-3  # the adapter does change the model
    assert (merged - expected).abs().max() < 1e-4
    info = json.loads((out / "cornucopia.json").read_text())
    assert info["kind"] == "merged" and info["dtype"] == "float32" and info["prompt_template"] == "ori_template"
    assert info["lora_weights"] == tiny_adapter and "transformers" in info["versions"] and info["created"]


def test_float16_merge_and_command_line(tiny_model, tiny_adapter, tmp_path):
    done = run_script("merge_lora.py", "--base_model", tiny_model, "--lora_weights", tiny_adapter,
                      "--output_dir", tmp_path / "m16", "--dtype", "float16")
    assert done.returncode == 0, done.stderr[-2000:]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m16")
    assert model.dtype == torch.float16 and not any("lora" in n for n, _ in model.named_parameters())


def test_mismatched_base_writes_nothing(tiny_adapter, tmp_path):
    other = build_tiny_model(tmp_path / "other", hidden_size=96)
    done = run_script("merge_lora.py", "--base_model", other, "--lora_weights", tiny_adapter,
                      "--output_dir", tmp_path / "out")
    assert done.returncode == 1 and "trained on another base" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["other"]  # no staging folder left behind either


def test_vocabulary_mismatch_is_named(tiny_model, tmp_path):
    """An adapter carrying resized embeddings (modules_to_save) does not fit a base with the old vocabulary."""
    from peft import LoraConfig, get_peft_model

    bigger = AutoModelForCausalLM.from_pretrained(tiny_model)
    bigger.resize_token_embeddings(bigger.config.vocab_size + 16)
    adapter = get_peft_model(bigger, LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens"]))
    adapter.save_pretrained(tmp_path / "adapter")
    with pytest.raises(ModelLoadError, match="extended vocabulary"):
        merge_adapter(tiny_model, str(tmp_path / "adapter"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
