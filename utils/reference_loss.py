"""Teacher-forced loss of reference answers: how well a model predicts the answers it should give.

compare.py and `infer.py --score True` report it. The prompt is masked exactly as
in training (utils.data.tokenize.tokenize_record), so the figure is the mean
cross-entropy per answer token (EOS included), comparable between the base alone
and base + adapter on the same cases.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from utils.data.tokenize import IGNORE_INDEX, tokenize_record
from utils.generation import length_sorted_batches
from utils.label_loss import label_position_loss
from utils.settings import CUTOFF_LEN


def answer_loss_sum(model, input_ids, attention_mask, labels) -> float:
    """Sum of the cross-entropy over label tokens; the LM head on those positions only where the model allows."""
    try:
        total, _ = label_position_loss(model, input_ids, attention_mask, labels)
        return total.item()
    except (AttributeError, NotImplementedError, TypeError):  # no get_decoder / get_output_embeddings
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX, reduction="sum").item()


@torch.inference_mode()
def reference_loss(model, tokenizer, prompter, cases: list[dict], batch_size: int = 4,
                   cutoff_len: int = CUTOFF_LEN, progress: bool = True) -> dict:
    """Mean loss per answer token, perplexity, and loss per answer character, over all cases.

    Score at the adapter's training --cutoff_len (utils.adapters.trained_cutoff), so that a record is
    cut where training cut it. Batches hold cases of similar length (a sum over tokens does not depend
    on the order), and the LM head runs only on the answer positions.
    """
    rows = [tokenize_record(case, prompter, tokenizer, cutoff_len) for case in cases]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, tokens = 0.0, 0
    bar = tqdm(total=len(rows), desc="Reference loss", unit="case", disable=not progress or len(rows) <= batch_size)
    for indices in length_sorted_batches([len(r["input_ids"]) for r in rows], batch_size):
        batch = [rows[i] for i in indices]
        width = max(len(r["input_ids"]) for r in batch)

        def padded(key, value):
            return torch.tensor([r[key] + [value] * (width - len(r[key])) for r in batch], device=device)

        total += answer_loss_sum(model, padded("input_ids", pad), padded("attention_mask", 0),
                                 padded("labels", IGNORE_INDEX))
        tokens += sum(sum(label != IGNORE_INDEX for label in r["labels"][1:]) for r in batch)
        bar.update(len(batch))
        bar.set_postfix(loss=f"{total / max(tokens, 1):.4f}")
    bar.close()
    chars = sum(len(case["output"]) for case in cases)
    loss = total / tokens
    return {"loss": round(loss, 4), "perplexity": round(math.exp(loss), 2), "answer_tokens": tokens,
            "loss_per_char": round(total / chars, 4)}
