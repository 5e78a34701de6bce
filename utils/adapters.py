"""LoRA adapters: attach a new one, check a saved one fits a base, load it, and its run info.

The run info (`cornucopia.json` beside the adapter) records how the adapter was
made; inference, scoring and serving read the training template and cutoff from it,
so an adapter is asked exactly as it was taught.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import peft
import torch
import transformers
from peft import (LoraConfig, PeftModel, TrainableTokensConfig, get_peft_model, get_peft_model_state_dict,
                  prepare_model_for_kbit_training)
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from safetensors import safe_open
from safetensors.torch import load_file

from utils.errors import CornucopiaError
from utils.files import atomic_write_json
from utils.loading import ModelLoadError, load_base_model, load_tokenizer
from utils.prompter import CHAT_TEMPLATE, Prompter
from utils.settings import CUTOFF_LEN, PROMPT_TEMPLATE

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter_model.safetensors"
ALL_LINEAR = "all-linear"
RUN_INFO_FILE = "cornucopia.json"


class AdapterError(CornucopiaError):
    """A saved adapter that is missing, empty or differs from the model it was saved from."""


def read_run_info(folder) -> dict:
    """What finetune.py (or merge / vocabulary extension) recorded about how a folder was made."""
    path = Path(folder) / RUN_INFO_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AdapterError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err


def write_run_info(output_dir, **info) -> None:
    info.update(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        versions={"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    )
    atomic_write_json(Path(output_dir) / RUN_INFO_FILE, info)


def default_lora_target_modules(model) -> list[str]:
    """PEFT's own per-architecture choice (q_proj/v_proj for Llama and Qwen2, query_key_value for Bloom, ...)."""
    model_type = model.config.model_type
    if model_type not in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        raise ModelLoadError(
            f"No default LoRA target modules for architecture '{model_type}'; "
            f"pass --lora_target_modules, e.g. '[q_proj,v_proj]'"
        )
    return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])


def attach_lora(model, lora_r=8, lora_alpha=16, lora_dropout=0.05, target_modules=None,
                gradient_checkpointing=False, modules_to_save=None):
    """Wrap the base in a trainable LoRA PeftModel (k-bit bases are prepared first).

    `modules_to_save` are trained in full beside LoRA (e.g. the embeddings and LM head of an
    extended vocabulary); where the two are tied, PEFT keeps the trained copies tied.
    """
    if getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    target_modules = list(target_modules) if target_modules else default_lora_target_modules(model)
    if target_modules == [ALL_LINEAR]:
        target_modules = ALL_LINEAR  # PEFT's keyword: every linear layer but the output head
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                        target_modules=target_modules, bias="none", task_type="CAUSAL_LM",
                        modules_to_save=list(modules_to_save) if modules_to_save else None,
                        ensure_weight_tying=bool(modules_to_save) and tied)
    try:
        model = get_peft_model(model, config)
    except ValueError as err:
        raise ModelLoadError(f"LoRA target modules {target_modules} do not fit this model: {err}") from err
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA r=%d alpha=%d on %s%s: %d trainable of %d parameters (%.3f%%)",
                lora_r, lora_alpha, sorted(model.peft_config["default"].target_modules),
                f", training {list(modules_to_save)} in full" if modules_to_save else "",
                trainable, total, 100 * trainable / total)
    return model


def embedding_module_names(model) -> tuple[str, str | None, bool]:
    """(input embedding module name, LM head module name, whether the two share one weight)."""
    names = {id(module): name for name, module in model.named_modules()}
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    return names[id(embed)], names.get(id(head)) if head is not None else None, tied


def attach_embedding_training(model, token_indices=None, gradient_checkpointing=False):
    """Stage 1 of continued pre-training: only rows of the input embeddings and the LM head learn.

    PEFT's TrainableTokens keeps a trainable copy of the chosen rows (`token_indices`, default every row) and
    leaves every other tensor of the model untouched; where the LM head shares the embedding's weight, PEFT ties
    the head to the same rows, else the head's rows get a copy of their own.
    """
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    embed_name, head_name, tied = embedding_module_names(model)
    rows = model.get_input_embeddings().weight.shape[0]
    indices = sorted(set(token_indices)) if token_indices is not None else list(range(rows))
    if not indices or indices[0] < 0 or indices[-1] >= rows:
        raise ModelLoadError(f"token rows to train must lie in 0..{rows - 1}; got {len(indices)} rows "
                             f"({indices[:1]}..{indices[-1:]})")
    targets = [embed_name] if tied or head_name is None else [embed_name, head_name]
    model = get_peft_model(model, TrainableTokensConfig(token_indices=indices, target_modules=targets))
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("Training only %d of %d embedding rows of %s (LM head %s): %d trainable of %d parameters (%.3f%%)",
                len(indices), rows, embed_name, "tied to it" if tied else head_name, trainable, total,
                100 * trainable / total)
    return model


def check_adapter_fits(model, adapter_path) -> None:
    """Stop with a clear message if the adapter's tensors do not fit the base model's layers."""
    adapter_path = Path(adapter_path)
    config_file = adapter_path / "adapter_config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{adapter_path}: no adapter_config.json here, so it is not a LoRA adapter folder")
    weights = adapter_path / ADAPTER_FILE
    try:
        base_name = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{config_file}: not valid JSON ({err}); the adapter folder is damaged") from err
    if not weights.is_file():
        return  # older .bin adapters: PEFT checks them itself
    # A second adapter for a model that holds one already: its layers are named as in the bare base.
    modules = dict((model.get_base_model() if isinstance(model, PeftModel) else model).named_modules())
    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {key: f.get_slice(key).get_shape() for key in f.keys()}
    except Exception as err:  # safetensors raises its own error type for a cut-off or damaged file
        raise ModelLoadError(f"{weights}: does not load ({str(err).splitlines()[0][:200]}); the adapter file is "
                             f"damaged or was cut off while saving: save or copy it again") from err
    for key, shape in shapes.items():
        if ".lora_A." in key or ".lora_B." in key:
            _check_lora_tensor(modules, key, shape, weights, base_name)
        else:
            _check_full_tensor(modules, key, shape, weights, base_name)


def check_adapter_fits_base(base_model: str, lora_weights, trust_remote_code: bool = False) -> None:
    """The same check as check_adapter_fits, before any work: the base is built on the meta device from its config.

    No weights are read, so infer, compare, evaluate, merge and serve refuse an adapter trained on another
    base (hidden size, layer names, vocabulary) in a second, not after loading the base or answering with it.
    """
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from utils.loading import resolve_model_path

    if not Path(lora_weights).is_dir():
        raise ModelLoadError(f"LoRA weights '{lora_weights}' do not exist: no such folder")
    path = resolve_model_path(base_model)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        with init_empty_weights():
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path}: could not read the model's config: {str(err).splitlines()[0][:200]}") from err
    check_adapter_fits(skeleton, lora_weights)


def _check_lora_tensor(modules, key, shape, weights, base_name) -> None:
    module_name = key.split(".lora_")[0].removeprefix("base_model.model.")
    layer = modules.get(module_name)
    if layer is None:
        raise ModelLoadError(
            f"{weights}: tensor '{key}' is for layer '{module_name}', which this base model does not "
            f"have. The adapter was trained on another base ({base_name})."
        )
    is_a = ".lora_A." in key
    expected = getattr(layer, "in_features" if is_a else "out_features", None)
    got = shape[1] if is_a else shape[0]
    if expected is not None and expected != got:
        raise ModelLoadError(
            f"{weights}: tensor '{key}' has size {got} where this base model's layer '{module_name}' "
            f"has {expected}. The adapter was trained on another base ({base_name})."
        )


def _check_full_tensor(modules, key, shape, weights, base_name) -> None:
    """A whole trained module saved in the adapter (modules_to_save, e.g. resized embeddings) must match the base."""
    module_name, _, param = key.removeprefix("base_model.model.").rpartition(".")
    layer = modules.get(module_name)
    current = getattr(layer, param, None) if layer is not None else None
    if current is not None and tuple(current.shape) != tuple(shape):
        raise ModelLoadError(
            f"{weights}: tensor '{key}' has shape {tuple(shape)} where this base model's '{module_name}.{param}' has "
            f"{tuple(current.shape)}. The adapter was trained on another base ({base_name}), e.g. one with an "
            f"extended vocabulary: use that base."
        )


def load_adapter(model, lora_weights: str, adapter_name: str = "default"):
    """Base + a saved LoRA adapter, checked for fit first; a PeftModel takes it as one more named adapter."""
    if not Path(lora_weights).is_dir():
        raise ModelLoadError(f"LoRA weights '{lora_weights}' do not exist: no such folder")
    check_adapter_fits(model, lora_weights)
    if isinstance(model, PeftModel):
        model.load_adapter(lora_weights, adapter_name=adapter_name)
    else:
        model = PeftModel.from_pretrained(model, lora_weights, adapter_name=adapter_name)
    logger.info("Loaded LoRA adapter '%s' from %s", adapter_name, lora_weights)
    return model


def load_for_inference(base_model: str, lora_weights: str | None = None, load_8bit: bool = False,
                       load_4bit: bool = False, trust_remote_code: bool = False):
    """(model in eval mode, left-padding tokenizer): the base alone, or base + adapter."""
    if lora_weights:
        check_adapter_fits_base(base_model, lora_weights, trust_remote_code)
    tokenizer = load_tokenizer(base_model, padding_side="left", trust_remote_code=trust_remote_code)
    model = load_base_model(base_model, load_8bit=load_8bit, load_4bit=load_4bit,
                            trust_remote_code=trust_remote_code)
    if lora_weights:
        model = load_adapter(model, lora_weights)
    model.eval()
    return model, tokenizer


def trained_template(lora_weights: str | None, prompt_template: str | None = None, tokenizer=None,
                     prefer_chat: bool = False) -> str:
    """The template to ask with, decided here only: the flag if given; else the one the adapter was trained with;
    else, for the base alone where PREFER_CHAT, its own chat template when its tokenizer has one; else the default."""
    if prompt_template:
        return prompt_template
    trained_with = read_run_info(lora_weights).get("prompt_template") if lora_weights else None
    if trained_with:
        logger.info("Using prompt template '%s', the one %s was trained with", trained_with, lora_weights)
        return trained_with
    if prefer_chat and not lora_weights and getattr(tokenizer, "chat_template", None):
        return CHAT_TEMPLATE
    return PROMPT_TEMPLATE


def trained_cutoff(lora_weights: str | None, cutoff_len: int | None = None) -> int:
    """The length to score at: the flag if given, else the adapter's training --cutoff_len, else the default."""
    return cutoff_len or (read_run_info(lora_weights).get("cutoff_len") if lora_weights else None) or CUTOFF_LEN


def inference_prompter(tokenizer, prompt_template: str | None = None, lora_weights: str | None = None,
                       prefer_chat: bool = False) -> Prompter:
    """The Prompter that asks exactly as the adapter was taught (see trained_template)."""
    return Prompter(trained_template(lora_weights, prompt_template, tokenizer, prefer_chat), tokenizer)


def verify_saved_adapter(model, output_dir, trained: bool) -> int:
    """Refuse to call a run a success unless the saved adapter holds this model's LoRA weights.

    Guards against the ancestors' 443-byte empty adapters: the file must exist,
    load, and contain every LoRA tensor of the model with the same values. An
    adapter whose lora_B is still all zero after training is saved with a warning.
    """
    path = Path(output_dir) / ADAPTER_FILE
    if not path.is_file() or path.stat().st_size == 0:
        raise AdapterError(f"{path}: adapter file was not written")
    try:
        saved = load_file(str(path))
    except Exception as err:  # a truncated file raises a library-specific error
        raise AdapterError(f"{path}: adapter file does not load: {err}") from err
    expected = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model).items()}
    if not saved or set(saved) != set(expected):
        raise AdapterError(
            f"{path}: saved adapter holds {len(saved)} tensors where the model has {len(expected)} LoRA tensors"
        )
    for key, value in expected.items():
        if not torch.allclose(saved[key].float(), value.float(), atol=1e-6):
            raise AdapterError(f"{path}: saved tensor {key} differs from the trained model's")
    lora_b = [v for k, v in saved.items() if "lora_B" in k]
    if trained and lora_b and all(torch.count_nonzero(v) == 0 for v in lora_b):
        # Saved faithfully, but a no-op: e.g. a run so short that warm-up kept the learning rate at 0.
        logger.warning("%s: every lora_B matrix is still zero, so this adapter does not change the model; "
                       "train longer or with fewer --warmup_steps", path)
    return path.stat().st_size
