"""LoRA fine-tuning with transformers.Trainer: arguments, resume, and a checked adapter save."""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter_model.safetensors"


class TrainingError(RuntimeError):
    pass


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def gradient_accumulation(batch_size: int, micro_batch_size: int) -> int:
    """Steps to accumulate so that one optimizer step sees `batch_size` records across all processes."""
    if micro_batch_size < 1 or batch_size < micro_batch_size:
        raise TrainingError(f"--batch_size ({batch_size}) must be >= --micro_batch_size ({micro_batch_size}) >= 1")
    return max(1, batch_size // micro_batch_size // world_size())


def find_checkpoint(resume_from_checkpoint, output_dir) -> str | None:
    """`True`: the latest checkpoint-N in output_dir (None if there is none); a path: that folder."""
    from transformers.trainer_utils import get_last_checkpoint

    if resume_from_checkpoint in (None, False, "", "False", "false"):
        return None
    if resume_from_checkpoint in (True, "True", "true"):
        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None:
            logger.warning("No checkpoint-N folder in %s to resume from; starting from the beginning", output_dir)
        return last
    path = Path(str(resume_from_checkpoint))
    if not (path / "trainer_state.json").is_file():
        raise TrainingError(
            f"--resume_from_checkpoint {path}: not a Trainer checkpoint folder (no trainer_state.json); "
            f"give a checkpoint-N folder of an earlier run, or True for the latest in --output_dir"
        )
    return str(path)


def build_training_arguments(output_dir, micro_batch_size, gradient_accumulation_steps, num_epochs,
                             learning_rate, has_validation, eval_steps, save_steps, logging_steps,
                             max_steps, warmup_steps, group_by_length, seed, wandb_run_name,
                             report_to_wandb, bf16=None):
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    if bf16 is None:  # auto: mixed precision on GPUs; on CPU only when asked (fast where the CPU has AMX)
        bf16 = cuda and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=micro_batch_size,
        per_device_eval_batch_size=micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        num_train_epochs=num_epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        lr_scheduler_type="cosine",
        bf16=bf16,
        fp16=cuda and not bf16,
        use_cpu=not cuda,
        logging_steps=logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=eval_steps if has_validation else None,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=3,
        load_best_model_at_end=has_validation,
        metric_for_best_model="eval_loss" if has_validation else None,
        greater_is_better=False if has_validation else None,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        ddp_find_unused_parameters=False if world_size() > 1 else None,
        report_to=["wandb"] if report_to_wandb else [],
        run_name=wandb_run_name or None,
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        label_names=["labels"],
        include_num_input_tokens_seen="non_padding",
    )


def verify_saved_adapter(model, output_dir, trained: bool) -> int:
    """Refuse to call the run a success unless the saved adapter holds this model's LoRA weights.

    Guards against the ancestors' 443-byte empty adapters: the file must exist,
    load, and contain every LoRA tensor of the model with the same values. An
    adapter whose lora_B is still all zero after training is saved with a warning.
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(output_dir) / ADAPTER_FILE
    if not path.is_file() or path.stat().st_size == 0:
        raise TrainingError(f"{path}: adapter file was not written")
    try:
        saved = load_file(str(path))
    except Exception as err:  # a truncated file raises a library-specific error
        raise TrainingError(f"{path}: adapter file does not load: {err}") from err
    expected = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model).items()}
    if not saved or set(saved) != set(expected):
        raise TrainingError(
            f"{path}: saved adapter holds {len(saved)} tensors where the model has {len(expected)} LoRA tensors"
        )
    for key, value in expected.items():
        if not torch.allclose(saved[key].float(), value.float(), atol=1e-6):
            raise TrainingError(f"{path}: saved tensor {key} differs from the trained model's")
    if trained and all(torch.count_nonzero(v) == 0 for k, v in saved.items() if "lora_B" in k):
        # Saved faithfully, but a no-op: e.g. a run so short that warm-up kept the learning rate at 0.
        logger.warning("%s: every lora_B matrix is still zero, so this adapter does not change the model; "
                       "train longer or with fewer --warmup_steps", path)
    return path.stat().st_size


def write_run_info(output_dir, **info) -> None:
    import peft
    import transformers

    info.update(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        versions={"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    )
    (Path(output_dir) / "cornucopia.json").write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n",
                                                       encoding="utf-8")
