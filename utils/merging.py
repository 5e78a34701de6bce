"""Fold a LoRA adapter into its base and save a plain Hugging Face model."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import torch

from utils.adapters import check_adapter_fits_base, load_adapter, read_run_info, write_run_info
from utils.loading import ModelLoadError, load_base_model, load_tokenizer

logger = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def merge_adapter(base_model: str, lora_weights: str, output_dir, dtype: str = "float16",
                  trust_remote_code: bool = False) -> Path:
    """Base + adapter -> one model in OUTPUT_DIR (safetensors, tokenizer, cornucopia.json).

    Everything is checked and merged in memory and written to a temporary folder
    beside OUTPUT_DIR, which then takes its place: a mismatch or a crash leaves no
    half-written model.
    """
    if dtype not in DTYPES:
        raise ModelLoadError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    check_adapter_fits_base(base_model, lora_weights, trust_remote_code)  # before loading any weights
    # Merge in float32 whatever the target dtype, so that rounding happens once, at the end.
    model = load_base_model(base_model, dtype=torch.float32, device="cpu", trust_remote_code=trust_remote_code)
    model = load_adapter(model, lora_weights).merge_and_unload()
    model = model.to(DTYPES[dtype])
    # finetune.py saves the tokenizer with the adapter (it may have been extended); else the base's.
    has_own = (Path(lora_weights) / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(lora_weights if has_own else base_model, trust_remote_code=trust_remote_code)
    info = read_run_info(lora_weights)

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_run_info(staging, kind="merged", base_model=base_model, lora_weights=str(lora_weights), dtype=dtype,
                       prompt_template=info.get("prompt_template"), cutoff_len=info.get("cutoff_len"))
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("Merged %s into %s (%s): %s", lora_weights, base_model, dtype, output_dir)
    return output_dir
