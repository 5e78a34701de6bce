"""GGUF export with llama.cpp's own converter; the file is read back with transformers."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from conftest import RECORDS, run_script, write_json
from utils.gguf_export import ExportError, export_gguf


@pytest.fixture(scope="module")
def small_llama(smollm2, tmp_path_factory):
    """A 2-layer random Llama with SmolLM2's tokenizer, whose pre-tokenizer the converter knows."""
    folder = tmp_path_factory.mktemp("small-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.2, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def greedy(model, ids):
    return model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)[0, ids.shape[1]:].tolist()


def test_merge_and_export_f16_gives_the_same_greedy_answer(small_llama, tmp_path):
    data = write_json(tmp_path / "d.json", RECORDS)
    done = run_script("finetune.py", "--base_model", small_llama, "--data_path", data, "--output_dir", tmp_path / "lora",
                      "--load_8bit", "False", "--max_steps", "4", "--learning_rate", "1e-2", "--micro_batch_size", "2",
                      "--batch_size", "2", "--cutoff_len", "128")
    assert done.returncode == 0, done.stderr[-2000:]
    merged = tmp_path / "merged"
    done = run_script("merge_lora.py", "--base_model", small_llama, "--lora_weights", tmp_path / "lora",
                      "--output_dir", merged, "--dtype", "float32", "--gguf", "f16")
    assert done.returncode == 0, done.stderr[-2000:]
    gguf = merged / "merged-f16.gguf"
    assert gguf.stat().st_size > 1_000_000
    info = json.loads((merged / "cornucopia.json").read_text())
    assert info["gguf"] == gguf.name and info["kind"] == "merged"
    ids = torch.tensor([[1, 2000, 3000, 4000, 5000]])
    hf = AutoModelForCausalLM.from_pretrained(merged)
    back = AutoModelForCausalLM.from_pretrained(merged, gguf_file=gguf.name, dtype=torch.float32)
    assert greedy(back, ids) == greedy(hf, ids)


def test_q8_0_export_and_unknown_type(small_llama, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(small_llama, folder)
    gguf = export_gguf(folder, "q8_0")
    ids = torch.tensor([[1, 2000, 3000, 4000, 5000]])
    hf = AutoModelForCausalLM.from_pretrained(folder)
    back = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, dtype=torch.float32)
    # 8-bit weights against float32 (the file also carries the 49k-entry vocabulary)
    assert gguf.stat().st_size < (folder / "model.safetensors").stat().st_size / 2
    # 8-bit rounding flips near-ties among a random model's 49k logits, so bound the error instead.
    with torch.no_grad():
        expected, got = hf(input_ids=ids).logits, back(input_ids=ids).logits
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    with pytest.raises(ExportError, match="--gguf must be one of"):
        export_gguf(folder, "q3_weird")


@pytest.mark.llama_cpp
def test_4bit_types_use_llama_cpp_or_say_how_to_get_it(small_llama, tmp_path):
    import importlib.util
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(small_llama, folder)
    if importlib.util.find_spec("llama_cpp") is None:
        with pytest.raises(ExportError, match="setup_llama_cpp.sh --runtime"):
            export_gguf(folder, "q4_0")
        pytest.skip("4-bit GGUF types need llama.cpp's quantizer (llama-cpp-python), not installed here: only the "
                    "message that says how to get it was checked (bash scripts/setup_llama_cpp.sh --runtime)")
    from gguf import GGMLQuantizationType, GGUFReader

    gguf = export_gguf(folder, "q4_0")
    assert gguf.name == "model-q4_0.gguf" and gguf.stat().st_size < (folder / "model-f16.gguf").stat().st_size
    types = {t.tensor_type for t in GGUFReader(gguf).tensors}
    assert GGMLQuantizationType.Q4_0 in types
