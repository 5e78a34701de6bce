"""LoRA training with transformers.Trainer: data to datasets, arguments, resume, a checked save, the summary.

finetune.py reads as setup -> train -> save, each step one call into this module.
"""
from __future__ import annotations

import logging
import os
import resource
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from utils import safeguards
from utils.adapters import ADAPTER_FILE, RUN_INFO_FILE, AdapterError, verify_saved_adapter, write_run_info
from utils.data.records import split_train_val
from utils.data.tokenize import build_dataset
from utils.errors import CornucopiaError
from utils.files import atomic_write_json
from utils.hardware import resolve_bf16
from utils.label_loss import LabelPositionTrainer

logger = logging.getLogger(__name__)


class TrainingError(CornucopiaError):
    """Training settings that cannot work, or a run that must not be reported as a success."""


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """Processes on this machine (they share its cores)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def gradient_accumulation(batch_size: int, micro_batch_size: int) -> int:
    """Steps to accumulate so that one optimizer step sees `batch_size` records across all processes."""
    if micro_batch_size < 1 or batch_size < micro_batch_size:
        raise TrainingError(f"--batch_size ({batch_size}) must be >= --micro_batch_size ({micro_batch_size}) >= 1")
    return max(1, batch_size // micro_batch_size // world_size())


def tokenized_splits(records, val_set_size, seed, data_path, prompter, tokenizer, cutoff_len, train_on_inputs,
                     add_eos_token):
    """(train dataset, validation dataset or None): a seeded split of the records, tokenized with the prompt masked."""
    train_records, val_records = split_train_val(records, val_set_size, seed, data_path)
    logger.info("Data %s: %d records -> %d train, %d validation; template %s",
                data_path, len(records), len(train_records), len(val_records), prompter.template_name)
    train_set = build_dataset(train_records, prompter, tokenizer, cutoff_len, train_on_inputs, add_eos_token)
    val_set = (build_dataset(val_records, prompter, tokenizer, cutoff_len, train_on_inputs, add_eos_token)
               if val_records else None)
    return train_set, val_set


def find_checkpoint(resume_from_checkpoint, output_dir) -> str | None:
    """`True`: the latest complete checkpoint-N in output_dir (None if there is none); a path: that folder.

    Every file of the checkpoint is checked first (utils/safeguards.py): a newest one cut off mid-write
    is moved aside with a warning and the one before it is used; a run never trains on from garbage.
    """
    if resume_from_checkpoint in (None, False, "", "False", "false"):
        return None
    if resume_from_checkpoint in (True, "True", "true"):
        had = [p.name for p in safeguards.checkpoints(output_dir)]
        last = safeguards.latest_complete_checkpoint(output_dir)
        if last is None and had:
            raise TrainingError(
                f"--resume_from_checkpoint True: no complete checkpoint in {output_dir} ({', '.join(had)} "
                f"cut off, moved aside as {safeguards.BROKEN_PREFIX}*); run without --resume_from_checkpoint "
                f"to start over"
            )
        if last is None:
            logger.warning("No checkpoint-N folder in %s to resume from; starting from the beginning", output_dir)
        return last
    path = Path(str(resume_from_checkpoint))
    if not (path / "trainer_state.json").is_file():
        raise TrainingError(
            f"--resume_from_checkpoint {path}: not a Trainer checkpoint folder (no trainer_state.json); "
            f"give a checkpoint-N folder of an earlier run, or True for the latest in --output_dir"
        )
    try:
        safeguards.check_checkpoint(path)
    except safeguards.TrainingFault as fault:
        raise TrainingError(f"--resume_from_checkpoint {path}: checkpoint is incomplete: {fault}") from fault
    return str(path)


def configure_wandb(project: str, watch: str = "", log_model: str = "") -> None:
    """alpaca-lora's --wandb_* flags, handed to the Trainer's wandb integration through its variables."""
    if project:
        os.environ["WANDB_PROJECT"] = project
        if watch:
            os.environ["WANDB_WATCH"] = watch
        if log_model:
            os.environ["WANDB_LOG_MODEL"] = log_model


def build_training_arguments(output_dir, micro_batch_size, gradient_accumulation_steps, num_epochs,
                             learning_rate, has_validation, eval_steps, save_steps, logging_steps,
                             max_steps, warmup_steps, group_by_length, seed, wandb_run_name,
                             report_to_wandb, bf16=None, lr_scheduler_type="cosine", neftune_noise_alpha=0.0,
                             save_total_limit=3):
    cuda = torch.cuda.is_available()
    bf16 = resolve_bf16(bf16, "cuda" if cuda else "cpu", log=False)
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=micro_batch_size,
        per_device_eval_batch_size=micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        num_train_epochs=num_epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        lr_scheduler_type=lr_scheduler_type,
        # NEFTune: noise on the input embeddings while training (the Trainer's own hook); 0 = off
        neftune_noise_alpha=neftune_noise_alpha or None,
        bf16=bf16,
        fp16=cuda and not bf16,
        use_cpu=not cuda,
        logging_steps=logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=eval_steps if has_validation else None,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=save_total_limit,  # the newest N checkpoints are kept (0 or None: all)
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


class CornucopiaTrainer(LabelPositionTrainer, safeguards.AtomicCheckpointTrainer):
    """The Trainer used here: LM head on label positions only, checkpoints that appear whole or not at all."""


def build_trainer(model, tokenizer, args, train_set, val_set, label_positions_only: bool = True) -> Trainer:
    trainer = CornucopiaTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
        label_positions_only=label_positions_only,
        data_collator=DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8, padding=True, return_tensors="pt"),
    )
    model.config.use_cache = False  # the KV cache is useless in training and warns with checkpointing
    if world_size() > 1:
        logger.info("DDP: %d processes, backend %s, %d gradient accumulation step(s) each",
                    dist.get_world_size(), dist.get_backend(), args.gradient_accumulation_steps)
    return trainer


def resume_hint() -> str:
    """The command that resumes this run: the same flags plus --resume_from_checkpoint True."""
    if sys.argv and sys.argv[0].endswith(".py"):
        flags = [a for a in sys.argv if not a.startswith("--resume_from_checkpoint")]
        return "python " + shlex.join(flags)
    return "python finetune.py <the same flags>"


def train(trainer: Trainer, checkpoint: str | None) -> dict:
    """Run the Trainer (resuming from `checkpoint` if given); the training loss, wall time and final eval loss.

    Guarded (utils/safeguards.py): a NaN/inf loss stops the run at once, SIGTERM / Ctrl-C save a
    checkpoint and stop with the command that resumes, a full disk names the folder and the bytes needed.
    """
    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    stop = safeguards.StopOnSignal()
    trainer.add_callback(safeguards.LossGuard(trainer.model))
    trainer.add_callback(stop)
    started = time.perf_counter()
    try:
        with stop:
            result = trainer.train(resume_from_checkpoint=checkpoint)
    except safeguards.TrainingFault:
        raise
    except Exception as err:
        out, step = trainer.args.output_dir, trainer.state.global_step
        trainable = sum(p.numel() * p.element_size() for p in trainer.model.parameters() if p.requires_grad)
        needed = safeguards.checkpoint_bytes(out, step, trainable)
        if safeguards.is_disk_full(err, out, needed):
            raise safeguards.disk_full_error(out, step, needed) from err
        raise
    stop.raise_if_stopped(trainer, resume_hint())
    seconds = time.perf_counter() - started
    # Evaluation gathers across processes, so every process takes part before rank 0 saves alone.
    eval_loss = trainer.evaluate()["eval_loss"] if trainer.eval_dataset is not None else None
    return {"train_loss": result.training_loss, "seconds": seconds, "eval_loss": eval_loss}


def save_checked_adapter(trainer: Trainer, tokenizer, output_dir, run_info: dict) -> int:
    """Save adapter, tokenizer and run info, read the adapter back, then publish them; a crash leaves nothing that looks done.

    Everything is written to output_dir/.saving first and checked there; only then is each file renamed
    into output_dir (atomic on one filesystem), the run info last, so a folder with cornucopia.json holds
    a complete, checked adapter.
    """
    staging = Path(output_dir) / ".saving"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        trainer.save_model(str(staging))
        tokenizer.save_pretrained(staging)
        write_run_info(staging, **run_info, global_step=trainer.state.global_step)
        size = verify_saved_adapter(trainer.model, staging, trained=trainer.state.global_step > 0)
    except BaseException as err:  # Ctrl-C too: a half-written .saving must not stay behind
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(err, Exception):
            raise
        needed = sum(p.numel() * p.element_size() for p in trainer.model.parameters() if p.requires_grad) + (1 << 20)
        if not isinstance(err, AdapterError) and safeguards.is_disk_full(err, output_dir, needed):
            raise safeguards.TrainingFault(
                f"no space left on the disk of {output_dir} while saving the adapter: it needs about {needed:,} "
                f"bytes and {shutil.disk_usage(output_dir).free:,} are free. The checkpoints are intact: free "
                f"space, then run again with --resume_from_checkpoint True to save it."
            ) from err
        raise
    for path in sorted(staging.iterdir(), key=lambda p: p.name == RUN_INFO_FILE):
        os.replace(path, Path(output_dir) / path.name)
    staging.rmdir()
    return size


def peak_memory_mib() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def write_summary(trainer: Trainer, outcome: dict, adapter_bytes: int, output_dir) -> dict:
    """train_summary.json: loss, steps, tokens and tokens/s, peak memory, the adapter's size and path."""
    tokens, seconds = trainer.state.num_input_tokens_seen, outcome["seconds"]
    summary = {
        "train_loss": round(outcome["train_loss"], 4),
        "global_step": trainer.state.global_step,
        "train_tokens": tokens,
        "train_seconds": round(seconds, 1),
        "train_tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "peak_memory_mib": peak_memory_mib(),
        "adapter_bytes": adapter_bytes,
        "adapter": str(Path(output_dir) / ADAPTER_FILE),
    }
    if outcome["eval_loss"] is not None:
        summary["eval_loss"] = round(outcome["eval_loss"], 4)
    atomic_write_json(Path(output_dir) / "train_summary.json", summary)
    logger.info("Adapter saved and checked: %s", summary)
    return summary
