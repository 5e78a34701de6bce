"""Generation, the one module for it: batched left-padded generate, answers to test cases, speed.

infer.py, compare.py, the exams' generate method, the benchmarks and the server all generate here.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import torch
from tqdm.auto import tqdm
from transformers import (LogitsProcessor, LogitsProcessorList, NoRepeatNGramLogitsProcessor,
                          RepetitionPenaltyLogitsProcessor, TopKLogitsWarper, TopPLogitsWarper)
from transformers.cache_utils import DynamicLayer

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


# ---- Step-wise batched decoding: the server's engine (utils/serving) drives it ----------------------------
#
# generate() above answers a fixed list of prompts. A server gets requests one by one, for different adapters,
# and must hand out text as it is made: DecodeBatch keeps one left-padded batch and its KV cache, lets rows
# join and leave between steps, and turns each row's tokens into text deltas that never split a character
# and never show the start of a stop string.

REPLACEMENT = "\ufffd"  # what decode() shows for the bytes of a character not yet complete


class TextStream:
    """A growing answer's token ids -> text deltas that are safe to show.

    Holds back (1) bytes of a character split across tokens (decode shows them as U+FFFD) and (2) a tail
    that could be the start of a stop string. The deltas joined are exactly `text` at the end, so a
    streamed answer equals the same answer unstreamed.
    """

    def __init__(self, tokenizer, stop=()):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.text = ""        # handed out so far
        self.stopped = False  # a stop string was found; the text ends before it

    def _visible(self) -> str:
        # Replacement characters are dropped wherever they are: at the end they are a character still being
        # built (it appears whole with a later token); elsewhere, bytes the model made that form no character.
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).replace(REPLACEMENT, "")

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        return self._advance(final=False)

    def finish(self) -> str:
        """The rest of the text, once no more tokens will come."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if self.stopped:
            return ""
        full = self._visible()
        hits = [i for i in (full.find(s) for s in self.stop) if i >= 0]
        if hits:
            full, final, self.stopped = full[:min(hits)], True, True
        if not full.startswith(self.text):
            return ""  # a tokenizer that rewrites earlier text once more comes (rare): wait until it settles
        end = len(full) if final else len(full) - self._held_tail(full)
        delta = full[len(self.text):end] if end > len(self.text) else ""
        self.text += delta
        return delta

    def _held_tail(self, text: str) -> int:
        """Length of the longest end of `text` that is the start of a stop string."""
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest


class DecodeRow:
    """One prompt in a DecodeBatch: its settings, its tokens so far, its text stream, and why it ended."""

    def __init__(self, tokenizer, prompt_ids: list[int], max_new_tokens: int, adapter: str | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, repetition_penalty: float = 1.0,
                 no_repeat_ngram_size: int = 0, seed: int | None = None, stop=(), stop_token_ids=(), owner=None,
                 ignore_eos: bool = False):
        self.prompt_ids = list(prompt_ids)
        self.ignore_eos = ignore_eos  # go on to max_new_tokens past EOS (fixed-length answers for benchmarks)
        self.max_new_tokens = max_new_tokens
        self.adapter = adapter  # a PEFT adapter's name; None = the base alone
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.penalties = dataclasses.replace(settings.GENERATION, repetition_penalty=repetition_penalty,
                                             no_repeat_ngram_size=no_repeat_ngram_size)
        self.stop_token_ids = set(stop_token_ids)  # tokens that open the template's next turn
        self.generator = None
        if temperature > 0:
            self.generator = torch.Generator()
            if seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(int(seed))
        self.stream = TextStream(tokenizer, stop)
        self.new_ids: list[int] = []
        self.finish_reason: str | None = None  # "stop" (EOS or a stop string) or "length"
        self.owner = owner  # whatever the caller ties to this row (the server's request)

    @property
    def greedy(self) -> bool:
        """The plain argmax of the logits, which the batch can take for all such rows at once."""
        return self.temperature <= 0 and not has_penalties(self.penalties)

    def pick(self, logits: torch.Tensor) -> int:
        """The next token from this row's last logits: greedy at temperature 0, else sampled."""
        if has_penalties(self.penalties):
            seen = torch.tensor([self.prompt_ids + self.new_ids], device=logits.device)
            logits = apply_penalties(self.penalties, seen, logits[None].float())[0]
        if self.temperature <= 0:
            return int(logits.argmax())
        scores = logits[None].float() / self.temperature
        if self.top_k > 0:
            scores = TopKLogitsWarper(self.top_k)(None, scores)
        if self.top_p < 1.0:
            scores = TopPLogitsWarper(self.top_p)(None, scores)
        return int(torch.multinomial(scores.softmax(-1)[0], 1, generator=self.generator))

    def accept(self, token: int, eos_ids: set[int]) -> str:
        """Record a new token; returns the text it makes safe to show, and sets finish_reason when done."""
        self.new_ids.append(token)
        if (token in eos_ids or token in self.stop_token_ids) and not self.ignore_eos:
            self.finish_reason = "stop"
            return self.stream.finish()
        delta = self.stream.push(token)
        if self.stream.stopped:
            self.finish_reason = "stop"
        elif len(self.new_ids) >= self.max_new_tokens:
            self.finish_reason = "length"
            delta += self.stream.finish()
        return delta


def eos_token_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {int(i) for i in ids if i is not None}


class DecodeBatch:
    """Rows decoded together, one token per step, over one KV cache; rows join (`add`) and leave between steps.

    Left padding with an attention mask and per-row position ids keeps every row's answer what it would be
    alone. Rows name their adapter; with any adapter loaded the batch passes PEFT's `adapter_names`, so the
    base and several adapters share one forward pass ("__base__" is PEFT's name for the base alone).
    """

    BASE = "__base__"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.with_adapters = hasattr(model, "peft_config")
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.rows: list[DecodeRow] = []
        self.cache = None
        self.mask = None       # [rows, cached positions]: 1 for a real token, 0 for padding
        self.positions = None  # [rows]: the position id of each row's next token

    def _forward(self, rows, input_ids, attention_mask, position_ids, cache):
        kwargs = {}
        if self.with_adapters:
            kwargs["adapter_names"] = [row.adapter or self.BASE for row in rows]
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          past_key_values=cache, use_cache=True, logits_to_keep=1, **kwargs)

    @torch.inference_mode()
    def add(self, rows: list[DecodeRow]) -> list[tuple[DecodeRow, str]]:
        """Read the new rows' prompts (one forward pass) and pick each one's first token."""
        width = max(len(row.prompt_ids) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, row in enumerate(rows):
            ids[k, width - len(row.prompt_ids):] = torch.tensor(row.prompt_ids)
            mask[k, width - len(row.prompt_ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        output = self._forward(rows, ids, mask, positions, None)
        self._join(rows, output.past_key_values, mask, positions[:, -1] + 1)
        return self._pick(rows, output.logits[:, -1])

    @torch.inference_mode()
    def step(self) -> list[tuple[DecodeRow, str]]:
        """One more token for every row still running."""
        last = torch.tensor([[row.new_ids[-1]] for row in self.rows], device=self.device)
        self.mask = torch.cat([self.mask, torch.ones_like(last)], dim=1)
        output = self._forward(self.rows, last, self.mask, self.positions[:, None], self.cache)
        self.cache = output.past_key_values
        self.positions = self.positions + 1
        return self._pick(self.rows, output.logits[:, -1])

    def _pick(self, rows, logits) -> list[tuple[DecodeRow, str]]:
        greedy = logits.argmax(-1).tolist()
        return [(row, row.accept(greedy[k] if row.greedy else row.pick(logits[k]), self.eos_ids))
                for k, row in enumerate(rows)]

    def _join(self, rows, cache, mask, positions) -> None:
        if not self.rows:
            self.rows, self.cache, self.mask, self.positions = list(rows), cache, mask, positions
            return
        width = max(self.mask.shape[1], mask.shape[1])
        old, new = self.cache.layers, cache.layers
        for a, b in zip(old, new):
            a.keys = torch.cat([_pad_left(a.keys, width, dim=2), _pad_left(b.keys, width, dim=2)], dim=0)
            a.values = torch.cat([_pad_left(a.values, width, dim=2), _pad_left(b.values, width, dim=2)], dim=0)
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), _pad_left(mask, width, dim=1)], dim=0)
        self.positions = torch.cat([self.positions, positions])
        self.rows += rows

    def keep(self, keep: list[DecodeRow]) -> None:
        """Drop every row not in `keep` (finished or abandoned), and the padding no remaining row needs."""
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mask, self.positions = [], None, None, None
            return
        index = torch.tensor([k for k, row in enumerate(self.rows) if row in keep], device=self.device)
        self.mask = self.mask[index]
        self.positions = self.positions[index]
        unused = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # leading columns that are padding in every row
        self.mask = self.mask[:, unused:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index][:, :, unused:]
            layer.values = layer.values[index][:, :, unused:]
        self.rows = [self.rows[k] for k in index.tolist()]

    def can_join(self) -> bool:
        """Whether rows may join a running batch: every cache layer is a plain growing one (no sliding window)."""
        return self.cache is None or all(type(layer) is DynamicLayer for layer in self.cache.layers)


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
