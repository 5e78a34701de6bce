import math

import pytest
import torch

from conftest import RECORDS
from utils.adapters import load_for_inference
from utils.data import tokenize_record
from utils.reference_loss import reference_loss
from utils.prompter import Prompter


def test_reference_loss_equals_the_models_own_masked_loss(tiny_model):
    model, tokenizer = load_for_inference(tiny_model)
    prompter = Prompter("fin_template")
    expected_total, expected_tokens = 0.0, 0
    for case in RECORDS[:3]:
        row = tokenize_record(case, prompter, tokenizer, 1024)
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])).loss.item()
        n = sum(1 for label in row["labels"][1:] if label != -100)
        expected_total += loss * n
        expected_tokens += n
    # Batched with padding, the figure must not change.
    scores = reference_loss(model, tokenizer, prompter, RECORDS[:3], batch_size=3)
    assert scores["answer_tokens"] == expected_tokens
    assert scores["loss"] == pytest.approx(expected_total / expected_tokens, abs=1e-3)
    assert scores["perplexity"] == pytest.approx(math.exp(scores["loss"]), rel=1e-3)
    assert scores["loss_per_char"] == pytest.approx(expected_total / sum(len(c["output"]) for c in RECORDS[:3]), abs=1e-3)
