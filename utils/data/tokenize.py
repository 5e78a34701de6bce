"""Tokenize instruction records for training: prompt tokens masked, every answer (and EOS) learned."""
from __future__ import annotations

import logging

from datasets import Dataset
from tqdm.auto import tqdm

from utils.data.records import DataError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value that the loss skips


def tokenize_record(record: dict, prompter, tokenizer, cutoff_len: int | None,
                    train_on_inputs: bool = False, add_eos_token: bool = True) -> dict:
    """input_ids / attention_mask / labels for one record, single- or multi-turn.

    Each turn's prompt and answer are tokenized separately, so the prompt tokens
    are exactly those seen at inference and the mask boundary is exact. Every
    assistant turn is learned (answer + EOS); prompts are masked unless
    `train_on_inputs`. Past `cutoff_len` (if not None) the end is cut off.
    """
    input_ids, labels = [], []
    for k, (prompt, answer) in enumerate(prompter.turns(record)):
        prompt_ids = tokenizer(prompt, add_special_tokens=k == 0)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if add_eos_token and tokenizer.eos_token_id is not None:
            answer_ids = answer_ids + [tokenizer.eos_token_id]
        input_ids += prompt_ids + answer_ids
        labels += (prompt_ids if train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)) + answer_ids
    if cutoff_len is not None:
        input_ids, labels = input_ids[:cutoff_len], labels[:cutoff_len]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def build_dataset(records, prompter, tokenizer, cutoff_len, train_on_inputs=False, add_eos_token=True,
                  desc="Tokenizing"):
    """A `datasets.Dataset` of tokenized records; records left with nothing to learn are dropped."""
    rows, dropped, truncated, longest = [], 0, 0, 0
    for record in tqdm(records, desc=desc, leave=False):
        row = tokenize_record(record, prompter, tokenizer, None, train_on_inputs, add_eos_token)
        if len(row["input_ids"]) > cutoff_len:
            truncated += 1
            longest = max(longest, len(row["input_ids"]))
            row = {key: value[:cutoff_len] for key, value in row.items()}
        if all(label == IGNORE_INDEX for label in row["labels"]):
            dropped += 1
            continue
        rows.append(row)
    if truncated:
        logger.warning("%d of %d record(s) are longer than --cutoff_len %d and lose their end (the longest has %d "
                       "tokens); `python -m utils.data check` lists them", truncated, len(records), cutoff_len, longest)
    if dropped:
        logger.warning("%d record(s) dropped: the prompt alone fills --cutoff_len %d", dropped, cutoff_len)
    if not rows:
        raise DataError(f"No record has any answer token left within --cutoff_len {cutoff_len}; raise it")
    return Dataset.from_list(rows)
