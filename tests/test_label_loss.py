"""The LM head on label positions only gives the full forward's loss and gradients."""
import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import DataCollatorForSeq2Seq

import finetune
from conftest import RECORDS
from utils.adapters import attach_lora
from utils.data.tokenize import tokenize_record
from utils.label_loss import label_position_loss
from utils.loading import load_base_model, load_tokenizer
from utils.prompter import Prompter


def padded_batch(tiny_model):
    tokenizer = load_tokenizer(tiny_model, padding_side="right")
    prompter = Prompter("fin_qa", tokenizer)
    rows = [tokenize_record(r, prompter, tokenizer, 128) for r in RECORDS[:4]]
    return DataCollatorForSeq2Seq(tokenizer, padding=True, return_tensors="pt")(rows)


def test_label_position_loss_and_gradients_equal_the_full_forward(tiny_model):
    torch.manual_seed(0)
    model = attach_lora(load_base_model(tiny_model, dtype=torch.float32), lora_r=4, lora_dropout=0.0)
    for name, p in model.named_parameters():  # non-zero lora_B so that gradients reach lora_A too
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    batch = padded_batch(tiny_model)
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()  # prompt and padding are masked

    full = model(**batch).loss
    full.backward()
    full_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()

    total, count = label_position_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert int(count) == int((batch["labels"][:, 1:] != -100).sum())
    (total / count).backward()
    assert torch.allclose(total / count, full, rtol=1e-5, atol=1e-6)
    for name, grad in full_grads.items():
        assert torch.allclose(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6), name


def logged_losses(output_dir):
    state = sorted(Path(output_dir).glob("checkpoint-*/trainer_state.json"))[-1]
    return [e["loss"] for e in json.loads(state.read_text())["log_history"] if "loss" in e]


def test_training_with_the_head_on_labels_only_logs_the_same_losses(tiny_model, train_file, tmp_path, caplog):
    """Two accumulation steps per update, so the Trainer's token-count normalisation is exercised too."""
    runs = {}
    caplog.set_level(logging.INFO, logger="utils.label_loss")
    for label_only in (True, False):
        out = tmp_path / str(label_only)
        finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=3, save_steps=3,
                       batch_size=4, micro_batch_size=2, cutoff_len=128, learning_rate=1e-2, logging_steps=1,
                       bf16=False, head_on_labels_only=label_only)
        runs[label_only] = logged_losses(out)
    assert len(runs[True]) == 3
    assert "the LM head now skips prompt and padding positions" in caplog.text and "differs" not in caplog.text
    for fast, full in zip(runs[True], runs[False]):
        assert abs(fast - full) < 1e-3 * max(1.0, abs(full)), runs


def test_a_label_position_loss_that_differs_falls_back_to_the_models_own(tiny_model, train_file, tmp_path, caplog,
                                                                         monkeypatch):
    """Where the fast loss would not be the model's (an architecture it does not fit), the first batch's check
    switches it off with a warning and training goes on with the model's own loss: the same losses as without it."""
    from utils import label_loss

    real = label_loss.label_position_loss
    monkeypatch.setattr(label_loss, "label_position_loss",
                        lambda *args: (lambda total, count: (total * 1.5, count))(*real(*args)))
    caplog.set_level(logging.INFO, logger="utils.label_loss")
    runs = {}
    for label_only in (True, False):
        out = tmp_path / str(label_only)
        finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=3, save_steps=3,
                       batch_size=2, micro_batch_size=2, cutoff_len=128, learning_rate=1e-2, logging_steps=1,
                       bf16=False, head_on_labels_only=label_only, lora_dropout=0.0)  # the same masks in both
        runs[label_only] = logged_losses(out)
    assert "differs from the model's own" in caplog.text and "using the model's own loss" in caplog.text
    assert runs[True] == pytest.approx(runs[False], abs=1e-6)
