"""Training speed side by side: the same records, seed and steps under each configuration, one table.

    python benchmarks/train_speed.py                                   # all configurations, 4 steps each
    python benchmarks/train_speed.py --steps 20 --cutoff_len 256 --configurations old_default,default

Each configuration runs finetune.py in its own process (so peak memory is its own) on the first
steps x batch_size records of --data_path, and reports non-padding training tokens per second,
peak resident memory, the mean training loss and the last step's loss. Writes OUTPUT.md and OUTPUT.json.
bf16 configurations are skipped on hardware without native bf16 (they are many times slower there)
unless --bf16_anyway True.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils import hardware, settings  # noqa: E402
from utils.cli import parse_bool, parse_list, run  # noqa: E402
from utils.data.records import load_records  # noqa: E402
from utils.files import atomic_write_json, atomic_write_text  # noqa: E402

# name: (description, finetune.py flags)
CONFIGURATIONS = {
    "old_default": ("8-bit, fp32 compute, checkpointing (the old default path)",
                    ["--load_8bit", "True", "--bf16", "False", "--gradient_checkpointing", "True"]),
    "fp32_ckpt": ("fp32, checkpointing", ["--load_8bit", "False", "--bf16", "False", "--gradient_checkpointing", "True"]),
    "fp32": ("fp32, no checkpointing", ["--load_8bit", "False", "--bf16", "False", "--gradient_checkpointing", "False"]),
    "8bit_bf16_ckpt": ("8-bit, bf16, checkpointing",
                       ["--load_8bit", "True", "--bf16", "True", "--gradient_checkpointing", "True"]),
    "bf16_ckpt": ("bf16 weights and compute, checkpointing",
                  ["--load_8bit", "False", "--bf16", "True", "--gradient_checkpointing", "True"]),
    "bf16": ("bf16 weights and compute, no checkpointing",
             ["--load_8bit", "False", "--bf16", "True", "--gradient_checkpointing", "False"]),
    "default": ("default flags (auto: precision, 8-bit, checkpointing)", []),
    "default_full_head": ("default flags + --head_on_labels_only False (LM head on every position)",
                          ["--head_on_labels_only", "False"]),
    "default_grouped": ("default flags + --group_by_length True", ["--group_by_length", "True"]),
}
NEEDS_BF16 = {"8bit_bf16_ckpt", "bf16_ckpt", "bf16"}


def run_configuration(name, flags, data, cutoff_len, steps, batch_size, micro_batch_size, base_model, seed, work):
    out = Path(work) / name
    command = [sys.executable, str(ROOT / "finetune.py"), "--base_model", base_model, "--data_path", data,
               "--output_dir", str(out), "--cutoff_len", str(cutoff_len), "--max_steps", str(steps),
               "--save_steps", str(steps), "--logging_steps", "1", "--batch_size", str(batch_size),
               "--micro_batch_size", str(micro_batch_size), "--seed", str(seed), "--warmup_steps", "0", *flags]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"configuration": name, "error": (done.stderr or done.stdout).strip().splitlines()[-1][:300]}
    summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    info = json.loads((out / "cornucopia.json").read_text(encoding="utf-8"))
    state = sorted(out.glob("checkpoint-*/trainer_state.json"))[-1]
    losses = [e["loss"] for e in json.loads(state.read_text(encoding="utf-8"))["log_history"] if "loss" in e]
    return {"configuration": name, "description": CONFIGURATIONS[name][0], "flags": " ".join(flags),
            "resolved": {k: info.get(k) for k in ("load_8bit", "bf16", "gradient_checkpointing")},
            "tokens": summary["train_tokens"], "seconds": summary["train_seconds"],
            "tokens_per_second": summary["train_tokens_per_second"],
            "peak_rss_mib": summary["peak_memory_mib"], "train_loss": summary["train_loss"],
            "last_loss": losses[-1] if losses else None, "process_seconds": round(time.perf_counter() - began, 1)}


def markdown(rows, header) -> str:
    lines = [header, "", "| configuration | tokens/s | peak RSS (GB) | mean train loss | last-step loss | resolved |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['configuration']} | failed: {r['error']} | | | | |")
            continue
        resolved = ", ".join(f"{k}={v}" for k, v in r["resolved"].items())
        lines.append(f"| {r['description']} | {r['tokens_per_second']:.0f} | {r['peak_rss_mib'] / 1024:.2f} | "
                     f"{r['train_loss']:.4f} | {r['last_loss']:.4f} | {resolved} |")
    return "\n".join(lines) + "\n"


def main(base_model: str = settings.BASE_MODEL, data_path: str = settings.TRAIN_DATA, steps: int = 4,
         cutoff_len: int = 256, batch_size: int = 8, micro_batch_size: int = 4, seed: int = 42,
         configurations="", bf16_anyway=False, output: str = "benchmarks/results/train_speed"):
    """Run each configuration on the same records; print and write the Markdown table and the JSON."""
    names = parse_list(configurations) or list(CONFIGURATIONS)
    unknown = [n for n in names if n not in CONFIGURATIONS]
    if unknown:
        raise SystemExit(f"error: unknown configuration(s) {unknown}; choose from {list(CONFIGURATIONS)}")
    native = hardware.native_bf16("cuda" if __import__("torch").cuda.is_available() else "cpu")
    skipped = [n for n in names if n in NEEDS_BF16 and not native and not parse_bool(bf16_anyway, "bf16_anyway")]
    records = load_records(data_path)[:steps * batch_size]
    machine = hardware.describe("cuda" if __import__("torch").cuda.is_available() else "cpu")
    header = (f"{base_model}, LoRA r={settings.LORA_R} on the default modules, {len(records)} records of {data_path}, "
              f"cutoff {cutoff_len}, batch {batch_size} = micro {micro_batch_size} x "
              f"{batch_size // micro_batch_size}, {steps} steps, seed {seed}; non-padding tokens/s. Machine: {machine}."
              + (f" Skipped (no native bf16): {', '.join(skipped)}." if skipped else ""))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "records.json"
        data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        for name in names:
            if name in skipped:
                continue
            row = run_configuration(name, CONFIGURATIONS[name][1], str(data), cutoff_len, steps, batch_size,
                                    micro_batch_size, base_model, seed, work)
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    table = markdown(rows, header)
    print(table)
    atomic_write_text(Path(output).with_suffix(".md"), table)
    atomic_write_json(Path(output).with_suffix(".json"), {"machine": machine, "header": header, "rows": rows})


if __name__ == "__main__":
    run(main)
