"""LoRA instruction tuning of a causal LM on alpaca-style JSON (flags as in alpaca-lora / Cornucopia).

    python finetune.py --base_model base_models/SmolLM2-135M-Instruct \
        --data_path instruction_data/fin_data.json --output_dir outputs/lora

Multi-GPU (or 2 CPU processes): torchrun --nproc_per_node 2 finetune.py ...
"""
from __future__ import annotations

import logging

from transformers import set_seed

from utils import hardware, safeguards, settings, training
from utils.adapters import attach_lora, read_run_info
from utils.cli import bool_flags, parse_list, renamed, run
from utils.data.mixing import load_data_mix
from utils.loading import compute_dtype, load_base_model, load_tokenizer, pick_device, resolve_model_path
from utils.prompter import Prompter

logger = logging.getLogger("finetune")


@bool_flags
def train(
    # model / data
    base_model: str = settings.BASE_MODEL,
    data_path: str = settings.TRAIN_DATA,
    output_dir: str = settings.ADAPTER_DIR,
    prompt_template: str = settings.PROMPT_TEMPLATE,
    prompt_template_name: str = "",  # alpaca-lora's spelling of --prompt_template, still accepted
    load_8bit: bool | None = None,  # None: 8-bit where it pays (GPU; CPU only if full precision would not fit), see utils/hardware.py
    load_4bit=False,
    trust_remote_code=False,
    # training
    batch_size: int = settings.BATCH_SIZE,
    micro_batch_size: int = settings.MICRO_BATCH_SIZE,
    num_epochs: float = settings.NUM_EPOCHS,
    max_steps: int = -1,
    learning_rate: float = settings.LEARNING_RATE,
    warmup_steps: float = 0.05,  # a float below 1 is a fraction of all steps
    lr_scheduler_type: str = "cosine",
    neftune_noise_alpha: float = 0.0,  # NEFTune noise on the input embeddings (e.g. 5); 0 = off
    cutoff_len: int = settings.CUTOFF_LEN,
    val_set_size: int = 0,
    eval_steps: int = 50,
    save_steps: int = 50,
    save_total_limit: int = 3,  # checkpoints kept (the newest); 0 keeps all
    logging_steps: int = 5,
    seed: int = 42,
    gradient_checkpointing: bool | None = None,  # None: on when cutoff_len x micro_batch_size is large (utils/hardware.py)
    bf16: bool | None = None,  # None: bf16 where the GPU or CPU has it natively (AMX, AVX512-BF16), else float32
    # lora
    lora_r: int = settings.LORA_R,
    lora_alpha: int = settings.LORA_ALPHA,
    lora_dropout: float = settings.LORA_DROPOUT,
    lora_target_modules=None,
    modules_to_save=None,
    # llm
    train_on_inputs=False,
    add_eos_token=True,
    group_by_length=False,
    head_on_labels_only=True,  # the LM head and loss only where labels are (same loss, less work)
    # wandb
    wandb_project: str = "",
    wandb_run_name: str = "",
    wandb_watch: str = "",
    wandb_log_model: str = "",
    resume_from_checkpoint=None,
    overwrite=False,  # replace a finished adapter already in --output_dir
):
    """Fine-tune BASE_MODEL with LoRA on DATA_PATH and save the adapter in OUTPUT_DIR.

    DATA_PATH may mix several files: a.json,b.json:N,c.json:W (N records of b, W x the records of c, drawn with
    --seed; see utils/data/mixing.py)."""
    if load_4bit:
        load_8bit = False  # --load_4bit alone should mean QLoRA without also switching 8-bit off
    device = pick_device()
    bf16 = hardware.resolve_bf16(bf16, device)
    gradient_checkpointing = hardware.resolve_gradient_checkpointing(gradient_checkpointing, cutoff_len,
                                                                     micro_batch_size)
    hardware.configure_threads(training.local_world_size())
    template = renamed(prompt_template, prompt_template_name, "prompt_template_name", "prompt_template")
    set_seed(seed)

    # Setup: flags, data and template are checked before any time is spent on the model.
    accumulation = training.gradient_accumulation(batch_size, micro_batch_size)
    records, data_mix = load_data_mix(data_path, seed)  # a,b:N,c:W mixes several files
    tokenizer = load_tokenizer(base_model, padding_side="right", trust_remote_code=trust_remote_code)
    prompter = Prompter(template, tokenizer)
    train_set, val_set = training.tokenized_splits(records, val_set_size, seed, data_path, prompter, tokenizer,
                                                   cutoff_len, train_on_inputs, add_eos_token)
    checkpoint = training.find_checkpoint(resume_from_checkpoint, output_dir)
    safeguards.refuse_finished_output(output_dir, overwrite,
                                      resuming=resume_from_checkpoint not in (None, False, "", "False", "false"))
    training.configure_wandb(wandb_project, wandb_watch, wandb_log_model)
    if not load_4bit:
        load_8bit, why = hardware.resolve_load_8bit(load_8bit, device, resolve_model_path(base_model))
        logger.info("Weights: %s (%s)", "8-bit" if load_8bit else "full precision", why)
    model = load_base_model(base_model, load_8bit=load_8bit, load_4bit=load_4bit, trust_remote_code=trust_remote_code,
                            dtype=compute_dtype(device, bf16))
    # A base whose vocabulary was extended says which new modules must learn (extend_vocab.py).
    modules_to_save = parse_list(modules_to_save) or read_run_info(resolve_model_path(base_model)).get(
        "modules_to_save", [])
    model = attach_lora(model, lora_r, lora_alpha, lora_dropout, parse_list(lora_target_modules),
                        gradient_checkpointing, modules_to_save)
    args = training.build_training_arguments(
        output_dir=output_dir, micro_batch_size=micro_batch_size, gradient_accumulation_steps=accumulation,
        num_epochs=num_epochs, learning_rate=learning_rate, has_validation=val_set is not None,
        eval_steps=eval_steps, save_steps=save_steps, logging_steps=logging_steps, max_steps=max_steps,
        warmup_steps=warmup_steps, group_by_length=group_by_length, seed=seed,
        wandb_run_name=wandb_run_name, report_to_wandb=bool(wandb_project),
        bf16=bf16, lr_scheduler_type=lr_scheduler_type, neftune_noise_alpha=neftune_noise_alpha,
        save_total_limit=save_total_limit or None,
    )
    trainer = training.build_trainer(model, tokenizer, args, train_set, val_set,
                                     head_on_labels_only)

    # Train.
    outcome = training.train(trainer, checkpoint)
    if not trainer.is_world_process_zero():
        return None

    # Save, check, summarise.
    run_info = dict(base_model=base_model, data_path=data_path, data_mix=data_mix,
                    prompt_template=prompter.template_name, load_8bit=load_8bit, load_4bit=load_4bit, bf16=bf16,
                    gradient_checkpointing=gradient_checkpointing, cutoff_len=cutoff_len, lora_r=lora_r,
                    lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                    lora_target_modules=sorted(trainer.model.peft_config["default"].target_modules),
                    learning_rate=learning_rate, lr_scheduler_type=lr_scheduler_type, batch_size=batch_size,
                    neftune_noise_alpha=neftune_noise_alpha, train_on_inputs=train_on_inputs,
                    add_eos_token=add_eos_token, seed=seed)
    adapter_bytes = training.save_checked_adapter(trainer, tokenizer, output_dir, run_info)
    return training.write_summary(trainer, outcome, adapter_bytes, output_dir)


if __name__ == "__main__":
    run(train)
