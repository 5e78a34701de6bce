"""The families users bring (Chinchilla trained LLaMA, ChatGLM and BLOOM; users add Qwen): tiny random Llama,
Qwen2 and Bloom models fine-tune, answer and merge through the same path with their default LoRA targets."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BloomConfig, BloomForCausalLM, Qwen2Config, Qwen2ForCausalLM

import finetune
from conftest import RECORDS, write_json
from utils.adapters import inference_prompter, load_adapter, load_for_inference
from utils.generation import answer_cases, generation_settings
from utils.loading import ModelLoadError, load_base_model
from utils.merging import merge_adapter


def build_family(kind: str, folder, tiny_model) -> str:
    """A 2-layer random model of `kind` that shares the tiny Llama's tokenizer."""
    if kind == "llama":
        return tiny_model
    shutil.copytree(tiny_model, folder)
    vocab_size = json.loads((folder / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (folder / name).unlink(missing_ok=True)
    torch.manual_seed(0)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    else:
        model = BloomForCausalLM(BloomConfig(vocab_size=vocab_size, hidden_size=64, n_layer=2, n_head=4,
                                             initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    model.save_pretrained(folder)
    # The family's own tokenizer class may add its special tokens (Qwen2: <|endoftext|>): make room for them.
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if len(tokenizer) > vocab_size:
        model.resize_token_embeddings(len(tokenizer))
        model.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind,targets", [("llama", ["q_proj", "v_proj"]), ("qwen2", ["q_proj", "v_proj"]),
                                          ("bloom", ["query_key_value"])])
def test_family_fine_tunes_answers_and_merges(kind, targets, tiny_model, tmp_path):
    base = build_family(kind, tmp_path / kind, tiny_model)
    out = tmp_path / "lora"
    summary = finetune.train(base_model=base, data_path=str(write_json(tmp_path / "d.json", RECORDS)),
                             output_dir=str(out), load_8bit=False, micro_batch_size=4, batch_size=4,
                             learning_rate=2e-2, max_steps=5, save_steps=5, warmup_steps=0, cutoff_len=128,
                             logging_steps=1)
    assert summary["global_step"] == 5
    assert sorted(json.loads((out / "adapter_config.json").read_text())["target_modules"]) == sorted(targets)
    assert json.loads((out / "cornucopia.json").read_text())["base_model"] == base

    model, tokenizer = load_for_inference(base, str(out))
    prompter = inference_prompter(tokenizer, lora_weights=str(out))
    rows = answer_cases(model, tokenizer, prompter, RECORDS[:2], batch_size=2, progress=False,
                        generation=generation_settings(max_new_tokens=6))
    assert all(row["new_tokens"] >= 1 for row in rows)

    ids = tokenizer(prompter.generate_prompt(RECORDS[0]["instruction"]), return_tensors="pt").input_ids
    merged = merge_adapter(base, str(out), tmp_path / "merged", dtype="float32")
    # Compared in float32: inference loads bf16 where the hardware has it natively, the merge is float32.
    adapter_fp32 = load_adapter(load_base_model(base, dtype=torch.float32), str(out))
    with torch.no_grad():
        adapted = adapter_fp32(input_ids=ids).logits
        plain = load_base_model(base, dtype=torch.float32)(input_ids=ids).logits
        folded = AutoModelForCausalLM.from_pretrained(merged)(input_ids=ids).logits
    assert (adapted - plain).abs().max() > 1e-3, "training must have moved the model"
    assert (folded - adapted).abs().max() < 1e-4


CUSTOM_CONFIG = '''
from transformers import LlamaConfig
class TinyCustomConfig(LlamaConfig):
    model_type = "tiny_custom"
'''
CUSTOM_MODEL = '''
from transformers import LlamaForCausalLM
from .configuration_tiny import TinyCustomConfig
class TinyCustomForCausalLM(LlamaForCausalLM):
    config_class = TinyCustomConfig
'''


def test_trust_remote_code_reaches_bases_with_their_own_code(tiny_model, tmp_path):
    """ChatGLM and Baichuan ship their model code in the folder: refused without the flag, loaded with it."""
    folder = tmp_path / "custom"
    shutil.copytree(tiny_model, folder)
    (folder / "configuration_tiny.py").write_text(CUSTOM_CONFIG, encoding="utf-8")
    (folder / "modeling_tiny.py").write_text(CUSTOM_MODEL, encoding="utf-8")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(model_type="tiny_custom", architectures=["TinyCustomForCausalLM"],
                  auto_map={"AutoConfig": "configuration_tiny.TinyCustomConfig",
                            "AutoModelForCausalLM": "modeling_tiny.TinyCustomForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        load_base_model(str(folder))
    model = load_base_model(str(folder), trust_remote_code=True)
    assert type(model).__name__ == "TinyCustomForCausalLM"
