"""Step-wise batched decoding, the server's engine (utils/serving/engine.py) drives it.

generate() (utils/generation.py) answers a fixed list of prompts. A server gets requests one by one, for different
adapters, and must hand out text as it is made: DecodeBatch keeps one left-padded batch and its KV cache, lets rows
join and leave between steps, and turns each row's tokens into text deltas that never split a character and never
show the start of a stop string. The penalties are the ones generate() applies (utils.generation.apply_penalties),
to the same tokens, so a served answer equals infer's.
"""
from __future__ import annotations

import dataclasses

import torch
from transformers import TopKLogitsWarper, TopPLogitsWarper
from transformers.cache_utils import DynamicLayer

from utils import settings
from utils.generation import apply_penalties, has_penalties

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
