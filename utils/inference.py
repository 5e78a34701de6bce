"""Answer test cases with a loaded model and write them as JSON Lines."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from utils.generation import generate

logger = logging.getLogger(__name__)


def answer_cases(model, tokenizer, prompter, cases: list[dict], batch_size: int = 4, **settings) -> list[dict]:
    """One row per case: instruction, input, reference output, model output, new tokens, seconds."""
    prompts = [prompter.prompt_for(case, tokenizer.eos_token or "") for case in cases]
    answers = generate(model, tokenizer, prompts, batch_size=batch_size, **settings)
    return [
        {
            "instruction": case["instruction"],
            "input": case["input"],
            "output": case["output"],
            "model_output": answer["text"],
            "new_tokens": answer["new_tokens"],
            "seconds": answer["seconds"],
        }
        for case, answer in zip(cases, answers)
    ]


def tokens_per_second(rows: list[dict]) -> float:
    seconds = sum(row["seconds"] for row in rows)
    return round(sum(row["new_tokens"] for row in rows) / seconds, 1) if seconds else 0.0


def write_jsonl(rows: list[dict], path) -> None:
    """Write to a temporary name first, so an interrupted run leaves no partial file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(partial, path)
    logger.info("Wrote %d answers to %s", len(rows), path)
