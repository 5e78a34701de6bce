"""Batched generation with left padding: text, new-token counts and timings."""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm


def generation_kwargs(tokenizer, max_new_tokens=256, do_sample=False, temperature=0.7, top_p=0.9, top_k=40,
                      num_beams=1, repetition_penalty=1.0) -> dict:
    """Greedy by default; sampling settings only reach generate() when sampling is asked for."""
    kwargs = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "num_beams": num_beams,
        "repetition_penalty": repetition_penalty,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
    else:
        # Override sampling defaults a base model's generation_config may carry, so greedy means greedy.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], batch_size: int = 4, progress: bool = True, **settings) -> list[dict]:
    """Answer each prompt; returns [{'text', 'new_tokens', 'seconds'}] in the prompts' order.

    `seconds` is the wall time of the prompt's batch divided by the batch's size.
    """
    if tokenizer.padding_side != "left":
        raise ValueError("batched generation needs a tokenizer with padding_side='left'")
    kwargs = generation_kwargs(tokenizer, **settings)
    device = next(model.parameters()).device
    results = []
    batches = range(0, len(prompts), batch_size)
    for start in tqdm(batches, desc="Generating", unit="batch", disable=not progress or len(batches) < 2):
        batch = prompts[start:start + batch_size]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=True).to(device)
        began = time.perf_counter()
        output = model.generate(**encoded, **kwargs)
        seconds = time.perf_counter() - began
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        for row in new_tokens:
            # Count up to and including the first EOS; what follows is padding.
            eos = (row == tokenizer.eos_token_id).nonzero()
            count = int(eos[0]) + 1 if len(eos) else len(row)
            results.append({
                # A cut at max_new_tokens can split a character's bytes: drop the dangling half.
                "text": tokenizer.decode(row[:count], skip_special_tokens=True).strip().rstrip("\ufffd"),
                "new_tokens": count,
                "seconds": round(seconds / len(batch), 3),
            })
    return results
