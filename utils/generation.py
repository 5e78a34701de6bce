"""Generation, the one module for it: batched left-padded generate, answers to test cases, speed.

infer.py, compare.py, the exams' generate method, the benchmarks and the server all generate here.
"""
from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm

from utils import settings
from utils.files import atomic_write_jsonl

logger = logging.getLogger(__name__)


def generation_kwargs(tokenizer, max_new_tokens=settings.MAX_NEW_TOKENS, do_sample=False,
                      temperature=settings.TEMPERATURE, top_p=settings.TOP_P, top_k=settings.TOP_K,
                      num_beams=settings.NUM_BEAMS, repetition_penalty=settings.REPETITION_PENALTY) -> dict:
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
def generate(model, tokenizer, prompts: list[str], batch_size: int = settings.INFER_BATCH_SIZE,
             progress: bool = True, **settings_) -> list[dict]:
    """Answer each prompt; returns [{'text', 'new_tokens', 'seconds'}] in the prompts' order.

    `seconds` is the wall time of the prompt's batch divided by the batch's size.
    """
    if tokenizer.padding_side != "left":
        raise ValueError("batched generation needs a tokenizer with padding_side='left'")
    kwargs = generation_kwargs(tokenizer, **settings_)
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


def answer_cases(model, tokenizer, prompter, cases: list[dict], batch_size: int = settings.INFER_BATCH_SIZE,
                 **settings_) -> list[dict]:
    """One row per case: instruction, input, reference output, model output, new tokens, seconds."""
    prompts = [prompter.prompt_for(case, tokenizer.eos_token or "") for case in cases]
    answers = generate(model, tokenizer, prompts, batch_size=batch_size, **settings_)
    return [
        {
            "instruction": case["instruction"],
            "input": case["input"],
            "output": case["output"],
            "model_output": answer["text"],
            "new_tokens": answer["new_tokens"],
            "seconds": answer["seconds"],
            **({"task": case["task"]} if case.get("task") else {}),  # an IE case is scored by F1 (utils/ie)
        }
        for case, answer in zip(cases, answers)
    ]


def tokens_per_second(rows: list[dict]) -> float:
    seconds = sum(row["seconds"] for row in rows)
    return round(sum(row["new_tokens"] for row in rows) / seconds, 1) if seconds else 0.0


def write_answers(rows: list[dict], path) -> None:
    """JSON Lines, written atomically: an interrupted run leaves no partial file under the real name."""
    atomic_write_jsonl(path, rows)
    logger.info("Wrote %d answers to %s", len(rows), path)
