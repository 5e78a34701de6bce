"""Print generation speed (new tokens/s) and peak memory at several batch sizes, before and after.

    python benchmarks/generation_speed.py --lora_weights outputs/quickstart/lora --batch_sizes 1,4

Answers the same test cases greedily at each batch size: "before" in float32 with batches in file
order, "after" in the dtype utils.hardware chooses (bf16 where native) with batches sorted by prompt
length. Counts the answers that differ from "before" (bf16 rounding can flip a token).
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from utils import hardware, settings  # noqa: E402
from utils.adapters import inference_prompter, load_adapter  # noqa: E402
from utils.cli import parse_bool, parse_list, run  # noqa: E402
from utils.data.records import load_records  # noqa: E402
from utils.generation import generate, generation_settings  # noqa: E402
from utils.loading import compute_dtype, load_base_model, load_tokenizer, pick_device  # noqa: E402


def load(base_model, lora_weights, dtype, load_8bit, load_4bit):
    model = load_base_model(base_model, load_8bit=load_8bit, load_4bit=load_4bit, dtype=dtype)
    return (load_adapter(model, lora_weights) if lora_weights else model).eval()


def main(base_model: str = settings.BASE_MODEL, lora_weights: str = "",
         infer_data_path: str = settings.INFER_DATA, num_cases: int = 8, max_new_tokens: int = 64,
         batch_sizes="1,4", load_8bit=False, load_4bit=False, before=True):
    cases = load_records(infer_data_path, require_output=False)[:num_cases]
    load_8bit, load_4bit = parse_bool(load_8bit, "load_8bit"), parse_bool(load_4bit, "load_4bit")
    tokenizer = load_tokenizer(base_model, padding_side="left")
    prompter = inference_prompter(tokenizer, lora_weights=lora_weights or None)
    prompts = [prompter.generate_prompt(c["instruction"], c["input"]) for c in cases]
    device = pick_device()
    variants = [("after", compute_dtype(device), True)]
    if parse_bool(before, "before"):
        variants.insert(0, ("before", torch.float32 if device.type == "cpu" else compute_dtype(device), False))
    print(f"{base_model}{' + ' + lora_weights if lora_weights else ''}, {len(prompts)} cases, greedy, "
          f"{max_new_tokens} new tokens at most. Machine: {hardware.describe(device)}.\n")
    print("| path | dtype | batch size | new tokens | seconds | new tokens/s | answers differing from before |")
    print("|---|---|---|---|---|---|---|")
    reference = {}
    for name, dtype, sort in variants:
        model = load(base_model, lora_weights or None, dtype, load_8bit, load_4bit)
        generate(model, tokenizer, prompts[:1], batch_size=1, generation=generation_settings(max_new_tokens=4),
                 progress=False)  # warm-up
        for batch_size in map(int, parse_list(batch_sizes)):
            began = time.perf_counter()
            rows = generate(model, tokenizer, prompts, batch_size=batch_size, progress=False, sort_by_length=sort,
                            generation=generation_settings(max_new_tokens=max_new_tokens))
            seconds = time.perf_counter() - began
            texts = [r["text"] for r in rows]
            reference.setdefault(batch_size, texts)
            differing = sum(a != b for a, b in zip(texts, reference[batch_size]))
            tokens = sum(r["new_tokens"] for r in rows)
            print(f"| {name}: {'sorted by length' if sort else 'file order'} | {str(dtype)[6:]} | {batch_size} | "
                  f"{tokens} | {seconds:.1f} | {tokens / seconds:.1f} | {differing} |", flush=True)
        del model
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"\npeak memory: {peak:.0f} MiB")


if __name__ == "__main__":
    run(main)
