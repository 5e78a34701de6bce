"""Teacher-forced loss of reference answers: how well a model predicts the answers it should give.

compare.py and `infer.py --score True` report it. The prompt is masked exactly as
in training (utils.data.tokenize.tokenize_record), so the figure is the mean
cross-entropy per answer token (EOS included), comparable between the base alone
and base + adapter on the same cases.
"""
from __future__ import annotations

import math

import torch

from utils.data.tokenize import IGNORE_INDEX, tokenize_record
from utils.settings import CUTOFF_LEN


@torch.inference_mode()
def reference_loss(model, tokenizer, prompter, cases: list[dict], batch_size: int = 4,
                   cutoff_len: int = CUTOFF_LEN) -> dict:
    """Mean loss per answer token, perplexity, and loss per answer character, over all cases.

    Score at the adapter's training --cutoff_len (utils.adapters.trained_cutoff), so that a record is
    cut where training cut it.
    """
    rows = [tokenize_record(case, prompter, tokenizer, cutoff_len) for case in cases]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, tokens = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(r["input_ids"]) for r in batch)

        def padded(key, value):
            return torch.tensor([r[key] + [value] * (width - len(r[key])) for r in batch], device=device)

        logits = model(input_ids=padded("input_ids", pad), attention_mask=padded("attention_mask", 0)).logits
        labels = padded("labels", IGNORE_INDEX)[:, 1:]
        total += torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
            ignore_index=IGNORE_INDEX, reduction="sum").item()
        tokens += int((labels != IGNORE_INDEX).sum())
    chars = sum(len(case["output"]) for case in cases)
    loss = total / tokens
    return {"loss": round(loss, 4), "perplexity": round(math.exp(loss), 2), "answer_tokens": tokens,
            "loss_per_char": round(total / chars, 4)}
