"""The one place that loads a base model and its tokenizer.

Training, inference, comparison, exams, merging, vocabulary extension and serving
all call `load_tokenizer` and `load_base_model`, so the path rules, device, dtype,
8-bit / 4-bit quantization, pad token and padding side are chosen the same way everywhere.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from utils.errors import CornucopiaError
from utils.hardware import resolve_bf16
from utils.settings import BASE_MODELS_DIR

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")


class ModelLoadError(CornucopiaError):
    """A base model or adapter that cannot be used; the message says what to do."""


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def compute_dtype(device: torch.device, bf16: bool | None = None) -> torch.dtype:
    """bf16 as utils.hardware.resolve_bf16 decides (None: where the hardware multiplies it natively), else float16
    on GPUs, float32 on CPUs. Greedy answers are batch-invariant only without bf16's rounding."""
    if resolve_bf16(bf16, device, log=False):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else torch.float32


def resolve_model_path(base_model: str, needs=("config.json",)) -> str:
    """A local folder if one exists (also under base_models/), else the string as a hub id.

    `needs` are the files that make the folder usable (a tokenizer alone needs only its own files).
    """
    if not base_model:
        raise ModelLoadError("--base_model is required, e.g. --base_model base_models/SmolLM2-135M-Instruct")
    for candidate in (Path(base_model), BASE_MODELS_DIR / base_model):
        if candidate.is_dir():
            if not any((candidate / name).is_file() for name in needs):
                raise ModelLoadError(
                    f"{candidate}: folder has no {' or '.join(needs)}, so it is not a Hugging Face model. "
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


def load_tokenizer(source: str, padding_side: str = "right", trust_remote_code: bool = False):
    """The tokenizer of a base model folder (or of an adapter folder that saved its own), with a pad token."""
    path = resolve_model_path(source, needs=("config.json",) + TOKENIZER_FILES)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if Path(path).is_dir():
            raise ModelLoadError(f"{path}: could not load the tokenizer ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:200]}); the folder needs tokenizer files") from err
        raise _hub_error(source, err) from err
    if tokenizer.pad_token is None:
        # Padding is masked out of the loss and the attention, so any existing token will do.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    # Right padding for training; left padding for batched generation.
    tokenizer.padding_side = padding_side
    logger.info("Loaded tokenizer from %s (vocabulary %d, eos %r, pad %r)",
                path, len(tokenizer), tokenizer.eos_token, tokenizer.pad_token)
    return tokenizer


def quantization_config(load_8bit: bool, load_4bit: bool, dtype: torch.dtype):
    if load_8bit and load_4bit:
        raise ModelLoadError("Choose one of --load_8bit and --load_4bit, not both")
    if load_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    if load_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype)
    return None


def load_base_model(base_model: str, load_8bit: bool = False, load_4bit: bool = False, dtype=None, device=None,
                    trust_remote_code: bool = False):
    """Any AutoModelForCausalLM, in full precision, 8-bit or 4-bit (nf4).

    By default on the local device (this process's GPU under DDP) in its compute dtype;
    merging and vocabulary extension ask for float32 on the CPU.
    """
    path = resolve_model_path(base_model)
    device = torch.device(device) if device is not None else pick_device()
    dtype = dtype or compute_dtype(device)
    kwargs = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    quantization = quantization_config(load_8bit, load_4bit, dtype)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        # Quantized weights are placed at load time; under DDP each process takes its own GPU.
        kwargs["device_map"] = {"": device.index if device.type == "cuda" else "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        if Path(path).is_dir():
            raise ModelLoadError(f"{path}: could not load the model: {err}") from err
        raise _hub_error(base_model, err) from err
    if quantization is None:
        model.to(device)
    precision = "8-bit" if load_8bit else "4-bit nf4" if load_4bit else str(dtype).replace("torch.", "")
    logger.info("Loaded base model %s from %s (%s, %.1fM parameters, on %s)",
                model.config.model_type, path, precision, model.num_parameters() / 1e6, device)
    return model


def load_from_gguf(gguf: Path):
    """(tokenizer, float32 model) read from a GGUF file, ready for save_pretrained (base_models.py converts with it).

    transformers refuses save_pretrained on a GGUF-loaded model, so the weights are
    moved into a freshly built model of the same config.
    """
    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ModelLoadError(f"{gguf}: conversion left weights unmatched (missing {missing}, unexpected {unexpected})")
    return tokenizer, model
