import pytest
import torch

from conftest import build_tiny_model, run_script
from utils import adapters, loading
from utils.loading import ModelLoadError


def test_8bit_loading_path(tiny_model):
    import bitsandbytes as bnb

    model = loading.load_base_model(tiny_model, load_8bit=True)
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear8bitLt)
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.int8
    lora = adapters.attach_lora(model)
    assert lora(input_ids=torch.tensor([[1, 5, 6, 7]])).logits.shape[-1] == model.config.vocab_size


def test_4bit_loading_path(tiny_model):
    import bitsandbytes as bnb

    model = loading.load_base_model(tiny_model, load_4bit=True)
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit) and layer.weight.quant_type == "nf4"
    lora = adapters.attach_lora(model)
    ids = torch.tensor([[1, 5, 6, 7]])
    loss = lora(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in lora.named_parameters() if "lora_" in n and p.grad is not None]
    assert grads, "LoRA parameters on a 4-bit base must receive gradients"


def test_both_quantizations_at_once_is_an_error(tiny_model):
    with pytest.raises(ModelLoadError, match="not both"):
        loading.load_base_model(tiny_model, load_8bit=True, load_4bit=True)


def test_default_target_modules_follow_the_architecture(tiny_model):
    model = loading.load_base_model(tiny_model)
    assert adapters.default_lora_target_modules(model) == ["q_proj", "v_proj"]
    model.config.model_type = "no-such-arch"
    with pytest.raises(ModelLoadError, match="--lora_target_modules"):
        adapters.default_lora_target_modules(model)


def test_missing_base_model_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        loading.resolve_model_path(str(tmp_path / "missing" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        loading.resolve_model_path(str(tmp_path / "empty"))


def test_hub_id_offline_fails_fast_with_advice():
    done = run_script("-c", "from utils import loading; loading.load_tokenizer('someone/some-model')",
                      env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert done.returncode != 0
    assert "base_models/<name>/" in done.stderr


def test_adapter_from_another_base_is_refused(tiny_model, tmp_path):
    other = build_tiny_model(tmp_path / "wider", hidden_size=96)
    adapter = adapters.attach_lora(loading.load_base_model(str(other)))
    adapter.save_pretrained(tmp_path / "adapter")
    with pytest.raises(ModelLoadError, match="trained on another base"):
        adapters.load_adapter(loading.load_base_model(tiny_model), str(tmp_path / "adapter"))
    with pytest.raises(ModelLoadError, match="not a LoRA adapter"):
        adapters.load_adapter(loading.load_base_model(tiny_model), str(tmp_path))
