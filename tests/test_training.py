import json

import pytest

from utils import training
from utils.training import TrainingError


def test_gradient_accumulation_spreads_the_batch_over_processes(monkeypatch):
    assert training.gradient_accumulation(16, 4) == 4
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert training.gradient_accumulation(16, 4) == 2
    assert training.gradient_accumulation(4, 4) == 1
    with pytest.raises(TrainingError, match="--batch_size \\(2\\) must be >= --micro_batch_size \\(4\\)"):
        training.gradient_accumulation(2, 4)


def write_fake_checkpoint(folder, step):
    """The files a Trainer checkpoint of a LoRA run holds, small but each loadable."""
    import json

    import torch
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"w": torch.zeros(2)}, str(folder / "adapter_model.safetensors"))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"step": step}, folder / name)


def test_find_checkpoint(tmp_path):
    assert training.find_checkpoint(None, tmp_path) is None
    assert training.find_checkpoint("False", tmp_path) is None
    assert training.find_checkpoint(True, tmp_path / "missing") is None
    for step in (2, 10):
        write_fake_checkpoint(tmp_path / f"checkpoint-{step}", step)
    assert training.find_checkpoint("True", tmp_path).endswith("checkpoint-10")
    assert training.find_checkpoint(str(tmp_path / "checkpoint-2"), tmp_path).endswith("checkpoint-2")
    with pytest.raises(TrainingError, match="no trainer_state.json"):
        training.find_checkpoint(str(tmp_path), tmp_path)


def test_training_arguments_follow_the_flags(tmp_path):
    args = training.build_training_arguments(
        output_dir=str(tmp_path), micro_batch_size=2, gradient_accumulation_steps=3, num_epochs=1, learning_rate=1e-3,
        has_validation=True, eval_steps=7, save_steps=7, logging_steps=1, max_steps=-1, warmup_steps=0.1,
        group_by_length=True, seed=5, wandb_run_name="", report_to_wandb=False, bf16=False)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 3)
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert args.eval_steps == 7 and args.report_to == [] and args.seed == args.data_seed == 5
    assert args.train_sampling_strategy == "group_by_length" and not args.bf16
    plain = training.build_training_arguments(
        output_dir=str(tmp_path), micro_batch_size=2, gradient_accumulation_steps=1, num_epochs=1, learning_rate=1e-3,
        has_validation=False, eval_steps=7, save_steps=7, logging_steps=1, max_steps=3, warmup_steps=0,
        group_by_length=False, seed=5, wandb_run_name="r", report_to_wandb=True)
    assert not plain.load_best_model_at_end and plain.eval_strategy == "no" and plain.report_to == ["wandb"]


def test_configure_wandb_sets_only_what_is_given(monkeypatch):
    for name in ("WANDB_PROJECT", "WANDB_WATCH", "WANDB_LOG_MODEL"):
        monkeypatch.delenv(name, raising=False)
    training.configure_wandb("")
    import os

    assert "WANDB_PROJECT" not in os.environ
    training.configure_wandb("fin", watch="gradients")
    assert os.environ["WANDB_PROJECT"] == "fin" and os.environ["WANDB_WATCH"] == "gradients"
    assert "WANDB_LOG_MODEL" not in os.environ


def test_summary_reports_tokens_per_second(tmp_path):
    class State:
        num_input_tokens_seen, global_step = 1000, 4

    trainer = type("T", (), {"state": State()})()
    summary = training.write_summary(trainer, {"train_loss": 1.23456, "seconds": 4.0, "eval_loss": None}, 321, tmp_path)
    assert summary["train_tokens_per_second"] == 250.0 and summary["train_loss"] == 1.2346
    assert "eval_loss" not in summary and summary["adapter_bytes"] == 321
    assert json.loads((tmp_path / "train_summary.json").read_text()) == summary
