"""The training loss computed only where there is something to learn: the LM head on label positions.

A causal LM's forward projects every position through the LM head (SmolLM2: 576 x 49,152, about a
fifth of the forward FLOPs) although the prompt and the padding are masked out of the loss. Here the
decoder's hidden states are gathered at the positions whose next token carries a label, and only those
go through the head and the cross-entropy. The result is the same loss (sum over label tokens divided
by their count, or by the Trainer's token count across gradient accumulation).

Used only where it is provably the same: one process (DDP needs the wrapped forward), and a first
batch on which the full forward gives the same loss; otherwise the Trainer's own loss is used.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from transformers import Trainer

from utils.data.tokenize import IGNORE_INDEX

logger = logging.getLogger(__name__)


def causal_lm(model):
    """The transformers causal LM inside a PeftModel (LoRA layers are injected in place, so it runs with them)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def label_position_loss(model, input_ids, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the cross-entropy over label tokens, number of label tokens), the head applied only there."""
    lm = causal_lm(model)
    hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep])
    loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, keep.sum()


class LabelPositionTrainer(Trainer):
    """A Trainer whose training loss runs the LM head on label positions only (see the module's note)."""

    def __init__(self, *args, label_positions_only: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        # "unchecked" until the first batch compares it with the full forward, then "on" or "off".
        self._label_only = "unchecked" if label_positions_only else "off"

    def _check(self, model, inputs, fast: torch.Tensor, count: torch.Tensor, rng_before) -> bool:
        # The same dropout masks as the fast pass, and the random state left as if no check had run
        # (a resumed run must draw the same numbers as an uninterrupted one).
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.set_rng_state(rng_before[0])
            if devices:
                torch.cuda.set_rng_state(rng_before[1])
            full = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                         labels=inputs["labels"]).loss.float()
        mean = fast.detach().float() / max(int(count), 1)
        same = bool(torch.isclose(mean, full, rtol=1e-3, atol=1e-3))
        if same:
            logger.info("Loss on label positions only: %.4f, the full forward's %.4f; the LM head now skips "
                        "prompt and padding positions", float(mean), float(full))
        else:
            logger.warning("Loss on label positions only (%.4f) differs from the model's own (%.4f) for this "
                           "architecture; using the model's own loss", float(mean), float(full))
        return same

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._label_only != "off" and self.accelerator.unwrap_model(model) is not model:
            # DDP (or FSDP, DeepSpeed) synchronizes gradients in the wrapped model's forward, which must run
            self._label_only = "off"
            logger.info("LM head on label positions only: off, the model is wrapped for %s (its own forward runs)",
                        type(model).__name__)
        usable = (self._label_only != "off" and not return_outputs and "labels" in inputs
                  and self.label_smoother is None and self.compute_loss_func is None)
        if not usable:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        rng_before = (torch.get_rng_state(), torch.cuda.get_rng_state() if torch.cuda.is_available() else None) \
            if self._label_only == "unchecked" else None
        total, count = label_position_loss(model, inputs["input_ids"], inputs.get("attention_mask"),
                                           inputs["labels"])
        if self._label_only == "unchecked":
            self._label_only = "on" if self._check(model, inputs, total, count, rng_before) else "off"
            if self._label_only == "off":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            # The Trainer then treats the loss as already scaled over the accumulated batch, as the model's own.
            return total / num_items_in_batch
        return total / count.clamp(min=1)
