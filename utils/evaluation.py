"""Teacher-forced loss of reference answers: how well a model predicts the answers it should give.

    python -m utils.evaluation --lora_weights outputs/quickstart/lora --infer_data_path instruction_data/infer.json

The prompt is masked exactly as in training (utils.data.tokenize_record), so the
figure is the mean cross-entropy per answer token (EOS included), comparable
between the base alone and base + adapter on the same cases.
"""
from __future__ import annotations

import math

import torch

from utils.data import IGNORE_INDEX, tokenize_record


@torch.inference_mode()
def reference_loss(model, tokenizer, prompter, cases: list[dict], batch_size: int = 4, cutoff_len: int = 1024) -> dict:
    """Mean loss per answer token, perplexity, and loss per answer character, over all cases."""
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


def main(base_model: str = "base_models/SmolLM2-135M-Instruct", lora_weights="",
         infer_data_path: str = "instruction_data/infer.json", prompt_template: str = "", batch_size: int = 4,
         cutoff_len: int = 1024, load_8bit=False):
    """Print the reference loss of the base alone and of base + each adapter (comma-separated)."""
    import json

    from utils import data, modeling
    from utils.cli import parse_bool, parse_list

    cases = data.load_records(infer_data_path)
    for adapter in [None] + parse_list(lora_weights):
        model, tokenizer = modeling.load_for_inference(base_model, adapter, parse_bool(load_8bit, "load_8bit"))
        prompter = modeling.inference_prompter(tokenizer, prompt_template, adapter)
        scores = reference_loss(model, tokenizer, prompter, cases, batch_size, cutoff_len)
        print(json.dumps({"model": adapter or "base", "cases": len(cases), **scores}, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    from utils.cli import run

    run(main)
