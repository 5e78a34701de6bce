"""The one place that loads a base model, its tokenizer and LoRA adapters.

finetune.py, infer.py and the comparison all call these functions, so device,
dtype, quantization and padding are chosen the same way everywhere.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

# Fail fast rather than hang when a hub id is given and the network is closed.
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")

import torch  # noqa: E402

logger = logging.getLogger(__name__)

BASE_MODELS_DIR = Path(__file__).resolve().parent.parent / "base_models"
# bitsandbytes warns on every 8-bit matmul on CPU that it casts inputs to float16.
warnings.filterwarnings("ignore", message=".*inputs will be cast from.*")
# peft still calls a transformers method that transformers 5 renamed; harmless.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated.*")


class ModelLoadError(RuntimeError):
    """A base model or adapter that cannot be used; the message says what to do."""


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def resolve_model_path(base_model: str) -> str:
    """A local folder if one exists (also under base_models/), else the string as a hub id."""
    if not base_model:
        raise ModelLoadError("--base_model is required, e.g. --base_model base_models/SmolLM2-135M-Instruct")
    for candidate in (Path(base_model), BASE_MODELS_DIR / base_model):
        if candidate.is_dir():
            if not (candidate / "config.json").is_file():
                raise ModelLoadError(
                    f"{candidate}: folder has no config.json, so it is not a Hugging Face model. "
                    f"Run `bash base_models/load.sh NAME` or place the model's files there."
                )
            return str(candidate)
    looks_like_hub_id = base_model.count("/") == 1 and not base_model.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise ModelLoadError(
            f"Base model '{base_model}' does not exist: no such folder. "
            f"Fetch one with `bash base_models/load.sh` (the embedded default) or give the path of a "
            f"Hugging Face model folder."
        )
    return base_model


def _hub_error(base_model: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"Could not load '{base_model}': it is not a local folder, and fetching it from the model hub "
        f"failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}). Without network access, "
        f"download it elsewhere and place it in base_models/<name>/ (config.json, weights, tokenizer), "
        f"then pass --base_model base_models/<name>."
    )


def load_tokenizer(base_model: str, padding_side: str = "right"):
    from transformers import AutoTokenizer

    path = resolve_model_path(base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise _hub_error(base_model, err) from err
    if tokenizer.pad_token is None:
        # Padding is masked out of the loss and the attention, so any existing token will do.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    # Right padding for training; left padding for batched generation.
    tokenizer.padding_side = padding_side
    logger.info("Loaded tokenizer from %s (vocabulary %d, eos %r, pad %r)",
                path, len(tokenizer), tokenizer.eos_token, tokenizer.pad_token)
    return tokenizer


def compute_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_base_model(base_model: str, load_8bit: bool = False, load_4bit: bool = False):
    """Any AutoModelForCausalLM, in full precision, 8-bit or 4-bit (nf4), on the local device."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if load_8bit and load_4bit:
        raise ModelLoadError("Choose one of --load_8bit and --load_4bit, not both")
    path = resolve_model_path(base_model)
    device = pick_device()
    dtype = compute_dtype(device)
    kwargs = {"dtype": dtype}
    if load_8bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    elif load_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    if load_8bit or load_4bit:
        # Quantized weights are placed at load time; under DDP each process takes its own GPU.
        kwargs["device_map"] = {"": device.index if device.type == "cuda" else "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        if Path(path).is_dir():
            raise ModelLoadError(f"{path}: could not load the model: {err}") from err
        raise _hub_error(base_model, err) from err
    if not (load_8bit or load_4bit):
        model.to(device)
    precision = "8-bit" if load_8bit else "4-bit nf4" if load_4bit else str(dtype).replace("torch.", "")
    logger.info("Loaded base model %s from %s (%s, %.1fM parameters, on %s)",
                model.config.model_type, path, precision, model.num_parameters() / 1e6, device)
    return model


def default_lora_target_modules(model) -> list[str]:
    """PEFT's own per-architecture choice (q_proj/v_proj for Llama and Qwen, W_pack for Baichuan, ...)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping

    model_type = model.config.model_type
    if model_type not in mapping:
        raise ModelLoadError(
            f"No default LoRA target modules for architecture '{model_type}'; "
            f"pass --lora_target_modules, e.g. '[q_proj,v_proj]'"
        )
    return list(mapping[model_type])


def attach_lora(model, lora_r=8, lora_alpha=16, lora_dropout=0.05, target_modules=None,
                gradient_checkpointing=False, modules_to_save=None):
    """Wrap the base in a trainable LoRA PeftModel (k-bit bases are prepared first).

    `modules_to_save` are trained in full beside LoRA (e.g. the embeddings and LM head of an
    extended vocabulary); where the two are tied, PEFT keeps the trained copies tied.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    target_modules = list(target_modules) if target_modules else default_lora_target_modules(model)
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
                lora_r, lora_alpha, target_modules, f", training {list(modules_to_save)} in full" if modules_to_save else "",
                trainable, total, 100 * trainable / total)
    return model


def check_adapter_fits(model, adapter_path) -> None:
    """Stop with a clear message if the adapter's LoRA matrices do not fit the base model's layers."""
    from safetensors import safe_open

    adapter_path = Path(adapter_path)
    config_file = adapter_path / "adapter_config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{adapter_path}: no adapter_config.json here, so it is not a LoRA adapter folder")
    weights = adapter_path / "adapter_model.safetensors"
    if not weights.is_file():
        return  # older .bin adapters: PEFT checks them itself
    modules = dict(model.named_modules())
    base_name = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            if ".lora_A." not in key and ".lora_B." not in key:
                check_full_tensor_fits(modules, key, f.get_slice(key).get_shape(), weights, base_name)
                continue
            module_name = key.split(".lora_")[0].removeprefix("base_model.model.")
            shape = f.get_slice(key).get_shape()
            layer = modules.get(module_name)
            if layer is None:
                raise ModelLoadError(
                    f"{weights}: tensor '{key}' is for layer '{module_name}', which this base model does not "
                    f"have. The adapter was trained on another base ({base_name})."
                )
            expected = getattr(layer, "in_features", None) if ".lora_A." in key else getattr(layer, "out_features", None)
            got = shape[1] if ".lora_A." in key else shape[0]
            if expected is not None and expected != got:
                raise ModelLoadError(
                    f"{weights}: tensor '{key}' has size {got} where this base model's layer '{module_name}' "
                    f"has {expected}. The adapter was trained on another base ({base_name})."
                )


def check_full_tensor_fits(modules, key, shape, weights, base_name) -> None:
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


def load_adapter(model, lora_weights: str, is_trainable: bool = False):
    """Base + a saved LoRA adapter, checked for fit first."""
    from peft import PeftModel

    if not Path(lora_weights).is_dir():
        raise ModelLoadError(f"LoRA weights '{lora_weights}' do not exist: no such folder")
    check_adapter_fits(model, lora_weights)
    model = PeftModel.from_pretrained(model, lora_weights, is_trainable=is_trainable)
    logger.info("Loaded LoRA adapter from %s", lora_weights)
    return model


def read_run_info(folder) -> dict:
    """What finetune.py recorded about how an adapter was made (template, base, ...)."""
    path = Path(folder) / "cornucopia.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_for_inference(base_model: str, lora_weights: str | None = None, load_8bit: bool = False,
                       load_4bit: bool = False):
    """(model in eval mode, left-padding tokenizer): the base alone, or base + adapter."""
    tokenizer = load_tokenizer(base_model, padding_side="left")
    model = load_base_model(base_model, load_8bit=load_8bit, load_4bit=load_4bit)
    if lora_weights:
        model = load_adapter(model, lora_weights)
    model.eval()
    return model, tokenizer


def inference_prompter(tokenizer, prompt_template: str | None = None, lora_weights: str | None = None):
    """The Prompter to ask with: the flag if given, else the template the adapter was trained with,
    else the default, so that inference asks exactly as training taught."""
    from utils.prompter import DEFAULT_TEMPLATE, Prompter

    trained_with = read_run_info(lora_weights).get("prompt_template") if lora_weights else None
    if trained_with and not prompt_template:
        logger.info("Using prompt template '%s', the one %s was trained with", trained_with, lora_weights)
    return Prompter(prompt_template or trained_with or DEFAULT_TEMPLATE, tokenizer)
