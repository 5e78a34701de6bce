"""Print generation speed (new tokens/s) and peak memory at several batch sizes.

    python benchmarks/generation_speed.py --lora_weights outputs/quickstart/lora --batch_sizes 1,4

Loads the model once, answers the same test cases at each batch size, greedy.
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from utils import settings  # noqa: E402
from utils.adapters import inference_prompter, load_for_inference  # noqa: E402
from utils.cli import parse_bool, parse_list, run  # noqa: E402
from utils.data.records import load_records  # noqa: E402
from utils.generation import generate  # noqa: E402


def main(base_model: str = settings.BASE_MODEL, lora_weights: str = "",
         infer_data_path: str = settings.INFER_DATA, num_cases: int = 8, max_new_tokens: int = 64,
         batch_sizes="1,4", load_8bit=False, load_4bit=False):
    cases = load_records(infer_data_path, require_output=False)[:num_cases]
    model, tokenizer = load_for_inference(base_model, lora_weights or None, parse_bool(load_8bit, "load_8bit"),
                                          parse_bool(load_4bit, "load_4bit"))
    prompter = inference_prompter(tokenizer, lora_weights=lora_weights)
    prompts = [prompter.generate_prompt(c["instruction"], c["input"]) for c in cases]
    generate(model, tokenizer, prompts[:1], batch_size=1, max_new_tokens=4, progress=False)  # warm-up
    print(f"| batch size | cases | new tokens | seconds | new tokens/s |  ({base_model}"
          f"{' + ' + lora_weights if lora_weights else ''}, {torch.get_num_threads()} threads)")
    print("|---|---|---|---|---|")
    for batch_size in map(int, parse_list(batch_sizes)):
        began = time.perf_counter()
        rows = generate(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                        progress=False)
        seconds = time.perf_counter() - began
        tokens = sum(r["new_tokens"] for r in rows)
        print(f"| {batch_size} | {len(rows)} | {tokens} | {seconds:.1f} | {tokens / seconds:.1f} |", flush=True)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"peak memory: {peak:.0f} MiB")


if __name__ == "__main__":
    run(main)
