"""Continued pre-training on raw text, in Chinese-LLaMA-Alpaca's two stages (after extend_vocab.py, before finetune.py).

    # stage 1: only the embeddings and the LM head learn (on an extended base: only the new rows)
    python pretrain.py --base_model base_models/SmolLM2-135M-Instruct-zh --data_path instruction_data/pretrain \
        --train_embeddings_only True --output_dir outputs/pt-stage1
    # stage 2: LoRA plus the embeddings and LM head in full, from stage 1's merged result
    python pretrain.py --base_model outputs/pt-stage1/merged --data_path instruction_data/pretrain \
        --output_dir outputs/pt-stage2
    # then instruction-tune the merged stage-2 result like any base
    python finetune.py --base_model outputs/pt-stage2/merged ...

Each stage saves its adapter in OUTPUT_DIR (checked as finetune.py checks its adapters) and the adapter
folded into the base in OUTPUT_DIR/merged, with cornucopia.json recording stage, corpus and block size.
"""
from __future__ import annotations

from transformers import set_seed

from utils import hardware, safeguards, settings, training
from utils.adapters import attach_embedding_training, attach_lora
from utils.cli import bool_flags, parse_list, run
from utils.data.raw_text import build_block_dataset, load_corpus
from utils.data.records import split_train_val
from utils.loading import compute_dtype, load_base_model, load_tokenizer, pick_device
from utils.pretraining import merge_stage, stage_one_rows, stage_two_modules


@bool_flags
def train(
    # model / data
    base_model: str = settings.BASE_MODEL,
    data_path: str = settings.PRETRAIN_DATA,
    output_dir: str = "outputs/pretrain",
    block_size: int = settings.BLOCK_SIZE,
    train_embeddings_only=False,
    new_rows_only=True,
    merge=True,
    load_8bit=False,
    load_4bit=False,
    trust_remote_code=False,
    # training
    batch_size: int = settings.BATCH_SIZE,
    micro_batch_size: int = settings.MICRO_BATCH_SIZE,
    num_epochs: float = 1,
    max_steps: int = -1,
    learning_rate: float = settings.PRETRAIN_LEARNING_RATE,
    warmup_steps: float = 0.05,
    val_set_size: int = 0,
    eval_steps: int = 50,
    save_steps: int = 50,
    logging_steps: int = 5,
    seed: int = 42,
    gradient_checkpointing=False,
    bf16: bool | None = None,
    # lora (stage 2)
    lora_r: int = settings.LORA_R,
    lora_alpha: int = settings.LORA_ALPHA,
    lora_dropout: float = settings.LORA_DROPOUT,
    lora_target_modules=None,
    modules_to_save=None,
    # wandb
    wandb_project: str = "",
    wandb_run_name: str = "",
    wandb_watch: str = "",
    wandb_log_model: str = "",
    resume_from_checkpoint=None,
    overwrite=False,  # replace a finished stage already in --output_dir
):
    """Continue pre-training BASE_MODEL on the raw text of DATA_PATH (.txt / .jsonl files or folders, comma-mixed).

    --train_embeddings_only True is stage 1 (embeddings and LM head only; with --new_rows_only True, the default,
    only the rows extend_vocab.py added, when the base lists them); otherwise stage 2 (LoRA plus embeddings and
    LM head in full). --val_set_size counts blocks.
    """
    if load_4bit:
        load_8bit = False
    embeddings_only = train_embeddings_only
    stage = 1 if embeddings_only else 2
    set_seed(seed)

    # Setup: flags and corpus are checked before any time is spent on the model.
    accumulation = training.gradient_accumulation(batch_size, micro_batch_size)
    documents = load_corpus(data_path, seed)
    tokenizer = load_tokenizer(base_model, padding_side="right", trust_remote_code=trust_remote_code)
    blocks, counts = build_block_dataset(documents, tokenizer, block_size)
    train_rows, val_rows = split_train_val(list(range(len(blocks))), val_set_size, seed, f"{data_path} (blocks)")
    train_set = blocks.select(train_rows)
    val_set = blocks.select(val_rows) if val_rows else None
    checkpoint = training.find_checkpoint(resume_from_checkpoint, output_dir)
    safeguards.refuse_finished_output(output_dir, overwrite,
                                      resuming=resume_from_checkpoint not in (None, False, "", "False", "false"))
    training.configure_wandb(wandb_project, wandb_watch, wandb_log_model)
    bf16 = hardware.resolve_bf16(bf16, pick_device())  # decided once: the weights' dtype and the Trainer agree
    model = load_base_model(base_model, load_8bit=load_8bit, load_4bit=load_4bit, trust_remote_code=trust_remote_code,
                            dtype=compute_dtype(pick_device(), bf16))
    modules = stage_two_modules(model, base_model, parse_list(modules_to_save))
    if embeddings_only:
        rows, trained = stage_one_rows(base_model, tokenizer, new_rows_only)
        model = attach_embedding_training(model, rows, gradient_checkpointing)
    else:
        trained = f"LoRA r={lora_r} and {', '.join(modules)} in full"
        model = attach_lora(model, lora_r, lora_alpha, lora_dropout, parse_list(lora_target_modules),
                            gradient_checkpointing, modules)
    args = training.build_training_arguments(
        output_dir=output_dir, micro_batch_size=micro_batch_size, gradient_accumulation_steps=accumulation,
        num_epochs=num_epochs, learning_rate=learning_rate, has_validation=val_set is not None,
        eval_steps=eval_steps, save_steps=save_steps, logging_steps=logging_steps, max_steps=max_steps,
        warmup_steps=warmup_steps, group_by_length=False, seed=seed,
        wandb_run_name=wandb_run_name, report_to_wandb=bool(wandb_project),
        bf16=bf16,
    )
    trainer = training.build_trainer(model, tokenizer, args, train_set, val_set)

    # Train.
    outcome = training.train(trainer, checkpoint)
    if not trainer.is_world_process_zero():
        return None

    # Save, check, merge, summarise.
    run_info = dict(kind="pretrain", stage=stage, base_model=base_model, corpus=data_path, block_size=block_size,
                    corpus_counts=counts, trained=trained, load_8bit=load_8bit, load_4bit=load_4bit, seed=seed,
                    learning_rate=learning_rate)
    if not embeddings_only:
        run_info.update(lora_r=lora_r, lora_alpha=lora_alpha, modules_to_save=modules)
    adapter_bytes = training.save_checked_adapter(trainer, tokenizer, output_dir, run_info)
    summary = training.write_summary(trainer, outcome, adapter_bytes, output_dir)
    if merge:
        info = {k: v for k, v in run_info.items() if k not in ("kind", "base_model")}
        info["modules_to_save"] = modules  # what stage 2 and finetune.py then train in full beside LoRA
        summary["merged"] = str(merge_stage(base_model, output_dir, {**info, "pretrained_from": base_model}))
    return summary


if __name__ == "__main__":
    run(train)
