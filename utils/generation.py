"""Generation settings and offline generation: batched left-padded generate, answers to test cases, speed.

infer.py, compare.py, the exams' generate method and the benchmarks generate here; the server's step-wise decoder
(utils/serving/decoder.py) takes its settings and penalties from here, so both answer alike.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import torch
from tqdm.auto import tqdm
from transformers import (LogitsProcessor, LogitsProcessorList, NoRepeatNGramLogitsProcessor,
                          RepetitionPenaltyLogitsProcessor)

from utils import settings
from utils.errors import CornucopiaError
from utils.files import atomic_write_jsonl
from utils.settings import GenerationSettings

logger = logging.getLogger(__name__)


class GenerationSettingsError(CornucopiaError, ValueError):
    """A generation setting out of its range."""


def generation_settings(**flags) -> GenerationSettings:
    """settings.GENERATION with the flags a user set (None = not set); the very same object when none was set."""
    given = {k: v for k, v in flags.items() if v is not None}
    chosen = dataclasses.replace(settings.GENERATION, **given) if given else settings.GENERATION
    checks = [("max_new_tokens", chosen.max_new_tokens >= 1, "at least 1"),
              ("num_beams", chosen.num_beams >= 1, "at least 1"),
              ("repetition_penalty", chosen.repetition_penalty > 0, "above 0 (1.0 = off)"),
              ("no_repeat_ngram_size", chosen.no_repeat_ngram_size >= 0, "0 (off) or more"),
              ("temperature", not chosen.do_sample or chosen.temperature > 0, "above 0 when sampling"),
              ("top_p", 0 < chosen.top_p <= 1, "above 0 and at most 1"),
              ("top_k", chosen.top_k >= 0, "0 (off) or more")]
    for name, ok, rule in checks:
        if not ok:
            raise GenerationSettingsError(f"--{name} must be {rule}, got {getattr(chosen, name)!r}")
    return chosen


def apply_penalties(generation: GenerationSettings, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """repetition_penalty and no_repeat_ngram_size (transformers' own processors) on one row's tokens [1, n]."""
    if generation.repetition_penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(generation.repetition_penalty)(ids, scores)
    if generation.no_repeat_ngram_size > 0:
        scores = NoRepeatNGramLogitsProcessor(generation.no_repeat_ngram_size)(ids, scores)
    return scores


def has_penalties(generation: GenerationSettings) -> bool:
    return generation.repetition_penalty != 1.0 or generation.no_repeat_ngram_size > 0


class PenaltiesOnOwnTokens(LogitsProcessor):
    """The penalties over each row's own tokens, its left padding left out.

    transformers applies them to the whole padded row, so the pad token (EOS for many bases) counts as
    already said and is penalised: whether an answer may stop would depend on the batch it is in. The server's
    decoder applies the same penalties to the same tokens, so both paths give the same answer.
    """

    def __init__(self, generation: GenerationSettings, pad_lengths: list[int]):
        self.generation, self.pad_lengths = generation, pad_lengths

    def __call__(self, input_ids, scores):
        per_prompt = input_ids.shape[0] // len(self.pad_lengths)  # rows per prompt (beams)
        for row in range(input_ids.shape[0]):
            own = input_ids[row:row + 1, self.pad_lengths[row // per_prompt]:]
            scores[row:row + 1] = apply_penalties(self.generation, own, scores[row:row + 1])
        return scores


def generation_kwargs(tokenizer, generation: GenerationSettings = settings.GENERATION,
                      stop_token_ids=()) -> dict:
    """model.generate's arguments: greedy unless sampling is asked for; the penalties go in as a processor."""
    eos = [tokenizer.eos_token_id, *stop_token_ids] if tokenizer.eos_token_id is not None else list(stop_token_ids)
    kwargs = {
        "max_new_tokens": generation.max_new_tokens,
        "do_sample": generation.do_sample,
        "num_beams": generation.num_beams,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": list(dict.fromkeys(eos)) or None,
    }
    if generation.do_sample:
        kwargs.update(temperature=generation.temperature, top_p=generation.top_p, top_k=generation.top_k)
    else:
        # Override sampling defaults a base model's generation_config may carry, so greedy means greedy.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (least padding), longest first so memory peaks early."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def cut_at_marker(text: str, markers) -> tuple[str, bool]:
    """TEXT up to the first stop marker (which is left out), and whether one was found."""
    hits = [i for i in (text.find(m) for m in markers if m) if i >= 0]
    return (text[:min(hits)], True) if hits else (text, False)


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], batch_size: int = settings.INFER_BATCH_SIZE,
             progress: bool = True, sort_by_length: bool = True,
             generation: GenerationSettings = settings.GENERATION, stop=(), stop_token_ids=()) -> list[dict]:
    """Answer each prompt; returns [{'text', 'new_tokens', 'seconds', 'finish_reason'}] in the prompts' order.

    An answer ends at EOS (or a `stop_token_ids` token), at a `stop` marker - the template's next turn, cut
    off and not returned - or at max_new_tokens: finish_reason "stop", "marker" or "length".
    Prompts are batched by similar token length (less padding to compute), answers put back in input order.
    `seconds` is the wall time of the prompt's batch divided by the batch's size.
    """
    if tokenizer.padding_side != "left":
        raise ValueError("batched generation needs a tokenizer with padding_side='left'")
    kwargs = generation_kwargs(tokenizer, generation, stop_token_ids)
    markers = [m for m in stop if m]
    if markers:
        kwargs.update(stop_strings=markers, tokenizer=tokenizer)
    stop_ids = set(kwargs["eos_token_id"] or [])
    device = next(model.parameters()).device
    if sort_by_length and len(prompts) > batch_size:
        lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"]]
        batches = length_sorted_batches(lengths, batch_size)
    else:
        batches = [list(range(start, min(start + batch_size, len(prompts))))
                   for start in range(0, len(prompts), batch_size)]
    results: list[dict] = [{}] * len(prompts)
    for indices in tqdm(batches, desc="Generating", unit="batch", disable=not progress or len(batches) < 2):
        batch = [prompts[i] for i in indices]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=True).to(device)
        if has_penalties(generation):
            pads = (encoded["attention_mask"].shape[1] - encoded["attention_mask"].sum(1)).tolist()
            kwargs["logits_processor"] = LogitsProcessorList([PenaltiesOnOwnTokens(generation, pads)])
        began = time.perf_counter()
        output = model.generate(**encoded, **kwargs)
        seconds = time.perf_counter() - began
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        for i, row in zip(indices, new_tokens.tolist()):
            # Count up to and including the first EOS; what follows is padding.
            ends = [k for k, token in enumerate(row) if token in stop_ids]
            count = ends[0] + 1 if ends else len(row)
            # A cut at max_new_tokens can split a character's bytes: drop the dangling half.
            text = tokenizer.decode(row[:count], skip_special_tokens=True).rstrip("\ufffd")
            text, at_marker = cut_at_marker(text, markers)
            if at_marker and not ends and tokenizer.pad_token_id is not None:
                while count > 1 and row[count - 1] == tokenizer.pad_token_id:  # filled in after the marker
                    count -= 1
            results[i] = {
                "text": text.strip(),
                "new_tokens": count,
                "seconds": round(seconds / len(batch), 3),
                "finish_reason": "marker" if at_marker else "stop" if ends else "length",
            }
    return results


def answer_cases(model, tokenizer, prompter, cases: list[dict], batch_size: int = settings.INFER_BATCH_SIZE,
                 generation: GenerationSettings = settings.GENERATION, progress: bool = True) -> list[dict]:
    """One row per case: instruction, input, reference output, model output, new tokens, seconds, finish reason.

    Asked in the prompter's template; the answer stops at EOS and at the template's own next-turn markers.
    """
    prompts = [prompter.prompt_for(case, tokenizer.eos_token or "") for case in cases]
    answers = generate(model, tokenizer, prompts, batch_size=batch_size, generation=generation, progress=progress,
                       stop=prompter.stop_markers(), stop_token_ids=prompter.stop_token_ids())
    return [
        {
            "instruction": case["instruction"],
            "input": case["input"],
            "output": case["output"],
            "model_output": answer["text"],
            "new_tokens": answer["new_tokens"],
            "seconds": answer["seconds"],
            "finish_reason": answer["finish_reason"],
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
