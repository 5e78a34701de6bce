"""LoRA instruction tuning of a causal LM on alpaca-style JSON (flags as in alpaca-lora / Cornucopia).

    python finetune.py --base_model base_models/SmolLM2-135M-Instruct \
        --data_path instruction_data/fin_data.json --output_dir outputs/lora

Multi-GPU (or 2 CPU processes): torchrun --nproc_per_node 2 finetune.py ...
"""
from __future__ import annotations

import json
import logging
import os
import resource
import time
from pathlib import Path

from utils.cli import parse_bool, parse_list, run

logger = logging.getLogger("finetune")


def train(
    # model / data
    base_model: str = "base_models/SmolLM2-135M-Instruct",
    data_path: str = "instruction_data/fin_data.json",
    output_dir: str = "outputs/lora-fin",
    prompt_template_name: str = "fin_template",
    load_8bit=True,
    load_4bit=False,
    # training
    batch_size: int = 16,
    micro_batch_size: int = 4,
    num_epochs: float = 3,
    max_steps: int = -1,
    learning_rate: float = 3e-4,
    warmup_steps: float = 0.05,  # a float below 1 is a fraction of all steps
    cutoff_len: int = 1280,
    val_set_size: int = 0,
    eval_steps: int = 50,
    save_steps: int = 50,
    logging_steps: int = 5,
    seed: int = 42,
    gradient_checkpointing=False,
    bf16=None,
    # lora
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    lora_target_modules=None,
    modules_to_save=None,
    # llm
    train_on_inputs=False,
    add_eos_token=True,
    group_by_length=False,
    # wandb
    wandb_project: str = "",
    wandb_run_name: str = "",
    wandb_watch: str = "",
    wandb_log_model: str = "",
    resume_from_checkpoint=None,
):
    """Fine-tune BASE_MODEL with LoRA on DATA_PATH and save the adapter in OUTPUT_DIR."""
    from transformers import DataCollatorForSeq2Seq, Trainer, set_seed

    from utils import data, data_check, modeling, training
    from utils.prompter import Prompter

    load_8bit, load_4bit = parse_bool(load_8bit, "load_8bit"), parse_bool(load_4bit, "load_4bit")
    if load_4bit:
        load_8bit = False  # --load_4bit alone should mean QLoRA without also switching 8-bit off
    train_on_inputs = parse_bool(train_on_inputs, "train_on_inputs")
    add_eos_token = parse_bool(add_eos_token, "add_eos_token")
    group_by_length = parse_bool(group_by_length, "group_by_length")
    gradient_checkpointing = parse_bool(gradient_checkpointing, "gradient_checkpointing")
    set_seed(seed)

    # Check the data and the template before spending time on the model.
    records = data_check.load_checked_records(data_path)
    train_records, val_records = data.split_train_val(records, val_set_size, seed, data_path)
    tokenizer = modeling.load_tokenizer(base_model, padding_side="right")
    prompter = Prompter(prompt_template_name, tokenizer)
    logger.info("Data %s: %d records -> %d train, %d validation; template %s",
                data_path, len(records), len(train_records), len(val_records), prompter.template_name)
    train_set = data.build_dataset(train_records, prompter, tokenizer, cutoff_len, train_on_inputs, add_eos_token)
    val_set = (data.build_dataset(val_records, prompter, tokenizer, cutoff_len, train_on_inputs, add_eos_token)
               if val_records else None)
    checkpoint = training.find_checkpoint(resume_from_checkpoint, output_dir)

    if wandb_project:
        os.environ["WANDB_PROJECT"] = wandb_project
        if wandb_watch:
            os.environ["WANDB_WATCH"] = wandb_watch
        if wandb_log_model:
            os.environ["WANDB_LOG_MODEL"] = wandb_log_model

    model = modeling.load_base_model(base_model, load_8bit=load_8bit, load_4bit=load_4bit)
    # A base whose vocabulary was extended says which new modules must learn (extend_vocab.py).
    modules_to_save = parse_list(modules_to_save) or modeling.read_run_info(
        modeling.resolve_model_path(base_model)).get("modules_to_save", [])
    model = modeling.attach_lora(model, lora_r, lora_alpha, lora_dropout, parse_list(lora_target_modules),
                                 gradient_checkpointing, modules_to_save)
    args = training.build_training_arguments(
        output_dir=output_dir, micro_batch_size=micro_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation(batch_size, micro_batch_size),
        num_epochs=num_epochs, learning_rate=learning_rate, has_validation=val_set is not None,
        eval_steps=eval_steps, save_steps=save_steps, logging_steps=logging_steps, max_steps=max_steps,
        warmup_steps=warmup_steps, group_by_length=group_by_length, seed=seed,
        wandb_run_name=wandb_run_name, report_to_wandb=bool(wandb_project),
        bf16=None if bf16 is None else parse_bool(bf16, "bf16"),
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
        data_collator=DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8, padding=True, return_tensors="pt"),
    )
    model.config.use_cache = False  # the KV cache is useless in training and warns with checkpointing
    if training.world_size() > 1:
        import torch.distributed as dist

        logger.info("DDP: %d processes, backend %s, %d gradient accumulation step(s) each",
                    dist.get_world_size(), dist.get_backend(), args.gradient_accumulation_steps)
    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started

    # Evaluation gathers across processes, so every process takes part before rank 0 saves alone.
    eval_loss = trainer.evaluate()["eval_loss"] if val_set is not None else None
    if not trainer.is_world_process_zero():
        return None
    trainer.save_model(output_dir)
    tokenizer.save_pretrained(output_dir)
    training.write_run_info(
        output_dir, base_model=base_model, data_path=data_path, prompt_template=prompter.template_name,
        load_8bit=load_8bit, load_4bit=load_4bit, cutoff_len=cutoff_len, lora_r=lora_r, lora_alpha=lora_alpha,
        train_on_inputs=train_on_inputs, add_eos_token=add_eos_token, global_step=trainer.state.global_step,
    )
    try:
        size = training.verify_saved_adapter(trainer.model, output_dir, trained=trainer.state.global_step > 0)
    except training.TrainingError:
        # Leave no file that looks like a finished adapter.
        for name in (training.ADAPTER_FILE, "adapter_config.json", "cornucopia.json"):
            (Path(output_dir) / name).unlink(missing_ok=True)
        raise
    tokens = trainer.state.num_input_tokens_seen
    summary = {
        "train_loss": round(result.training_loss, 4),
        "global_step": trainer.state.global_step,
        "train_tokens": tokens,
        "train_seconds": round(seconds, 1),
        "train_tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "peak_memory_mib": peak_memory_mib(),
        "adapter_bytes": size,
        "adapter": str(Path(output_dir) / training.ADAPTER_FILE),
    }
    if eval_loss is not None:
        summary["eval_loss"] = round(eval_loss, 4)
    (Path(output_dir) / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info("Adapter saved and checked: %s", summary)
    return summary


def peak_memory_mib() -> float:
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


if __name__ == "__main__":
    run(train)
