"""Does continued pre-training pay for itself? Held-out loss per character at equal training wall time.

    python benchmarks/pretrain_recipe.py --step all --budget_s 360

Three arms, each given BUDGET_S seconds of training on this machine:
  (a) instruction tuning of the unextended base;
  (b) instruction tuning of the extended base (extend_vocab.py);
  (c) extension -> stage 1 (embeddings only) -> stage 2 (LoRA + embeddings) -> instruction tuning,
      the budget split by --shares (default 0.25, 0.25, 0.5).
Each training run's step count is set from a 3-step probe of the same run (seconds per step), so every arm
spends about the same time; the table shows the time each really took (probes and model loading not counted).
The score is the teacher-forced loss of infer.json's reference answers, in nats per character (comparable across
tokenizers), and tokens per character of those answers.

Steps can run one at a time (`--step extend`, `a`, `b`, `c1`, `c2`, `c3`, `table`), each under ~8 minutes, so that
a shared machine is held in short turns; results accumulate in OUT/results.json.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import finetune  # noqa: E402
import pretrain  # noqa: E402
from utils import settings  # noqa: E402
from utils.adapters import load_for_inference  # noqa: E402
from utils.cli import parse_bool, parse_list, run  # noqa: E402
from utils.data.records import load_records  # noqa: E402
from utils.files import atomic_write_json  # noqa: E402
from utils.prompter import Prompter  # noqa: E402
from utils.reference_loss import reference_loss  # noqa: E402
from utils.vocab import extend_base  # noqa: E402

STEPS = ("extend", "a", "b", "c1", "c2", "c3", "table")


class Bench:
    def __init__(self, out, base_model, train_data, eval_data, corpus, budget_s, shares, batch_size,
                 micro_batch_size, stage1_lr, stage2_lr, learning_rate, block_size, vocab_size, score_stages=True, steps=0):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results_file = self.out / "results.json"
        self.results = json.loads(self.results_file.read_text()) if self.results_file.is_file() else {}
        self.base_model, self.train_data, self.eval_data, self.corpus = base_model, train_data, eval_data, corpus
        self.budget_s, self.shares = budget_s, shares
        self.batch = dict(batch_size=batch_size, micro_batch_size=micro_batch_size)
        self.stage1_lr, self.stage2_lr, self.learning_rate = stage1_lr, stage2_lr, learning_rate
        self.block_size, self.vocab_size = block_size, vocab_size
        self.extended = self.out / "extended"
        self.score_stages = score_stages
        self.steps = steps

    def save(self, key, value):
        self.results[key] = value
        atomic_write_json(self.results_file, self.results)
        print(f"{key}: {json.dumps(value, ensure_ascii=False)}", flush=True)

    def timed(self, name, fn, seconds, **kwargs):
        """Run fn (finetune.train or pretrain.train) for about SECONDS: a 3-step probe sets the step count.

        With --steps N the probe is skipped: the arm's share of N optimizer steps (blocks of --block_size tokens
        and instruction records of about as many tokens cost about the same per step)."""
        shutil.rmtree(self.out / name, ignore_errors=True)  # a fresh run each time (finetune.py keeps finished ones)
        if self.steps:
            share = seconds / self.budget_s
            steps = max(1, round(self.steps * share))
            summary = fn(output_dir=str(self.out / name), max_steps=steps, save_steps=10**6, **kwargs)
            return {"steps": steps, "seconds": summary["train_seconds"], "tokens": summary["train_tokens"],
                    "train_loss": summary["train_loss"]}
        probe_dir = self.out / f"probe-{name}"
        probe = fn(output_dir=str(probe_dir), max_steps=3, save_steps=10**6, **kwargs)
        shutil.rmtree(probe_dir, ignore_errors=True)
        steps = max(1, round(seconds / (probe["train_seconds"] / 3)))
        if fn is finetune.train:
            kwargs["overwrite"] = True  # a rerun of the benchmark replaces its own earlier adapter
        summary = fn(output_dir=str(self.out / name), max_steps=steps, save_steps=10**6, **kwargs)
        return {"steps": steps, "seconds": summary["train_seconds"], "tokens": summary["train_tokens"],
                "train_loss": summary["train_loss"], "probe_s_per_step": round(probe["train_seconds"] / 3, 2)}

    def instruction_tune(self, name, base, seconds):
        return self.timed(name, finetune.train, seconds, base_model=str(base), data_path=self.train_data,
                          load_8bit=False, learning_rate=self.learning_rate, **self.batch)

    def score(self, base, lora=None) -> dict:
        """Loss per character and tokens per character of the held-out reference answers."""
        # One case at a time, so no padding and no batch of full-vocabulary logits (the sum does not depend on it).
        cases = load_records(self.eval_data)
        model, tokenizer = load_for_inference(str(base), str(lora) if lora else None)
        prompter = Prompter(settings.PROMPT_TEMPLATE, tokenizer)
        scored = reference_loss(model, tokenizer, prompter, cases, batch_size=1)
        answers = [c["output"] for c in cases]
        tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
        return {"loss_per_char": scored["loss_per_char"], "loss_per_token": scored["loss"],
                "tokens_per_char": round(tokens / sum(map(len, answers)), 3)}

    def step(self, name):
        budget, (s1, s2, s3) = self.budget_s, self.shares
        if name == "extend":
            started = time.perf_counter()
            info = extend_base(self.base_model, self.train_data, self.vocab_size, self.extended, self.eval_data)
            self.save("extend", {"seconds": round(time.perf_counter() - started, 1), "added": info["added_tokens"]})
            self.save("start-base", self.score(self.base_model))
            self.save("start-extended", self.score(self.extended))
        elif name == "a":
            run_ = self.instruction_tune("a", self.base_model, budget)
            self.save("a", {**run_, **self.score(self.base_model, self.out / "a")})
        elif name == "b":
            run_ = self.instruction_tune("b", self.extended, budget)
            self.save("b", {**run_, **self.score(self.extended, self.out / "b")})
        elif name == "c1":
            run_ = self.timed("c1", pretrain.train, s1 * budget, base_model=str(self.extended), data_path=self.corpus,
                              train_embeddings_only=True, block_size=self.block_size, learning_rate=self.stage1_lr,
                              **self.batch)
            self.save("c1", {**run_, **(self.score(self.out / "c1" / "merged") if self.score_stages else {})})
        elif name == "c2":
            run_ = self.timed("c2", pretrain.train, s2 * budget, base_model=str(self.out / "c1" / "merged"),
                              data_path=self.corpus, block_size=self.block_size, learning_rate=self.stage2_lr,
                              **self.batch)
            self.save("c2", {**run_, **(self.score(self.out / "c2" / "merged") if self.score_stages else {})})
        elif name == "c3":
            base = self.out / "c2" / "merged"
            run_ = self.instruction_tune("c3", base, s3 * budget)
            self.save("c3", {**run_, **self.score(base, self.out / "c3")})
        elif name == "table":
            print(self.table())
        else:
            raise SystemExit(f"unknown --step {name}; one of {', '.join(STEPS)} or all")

    def table(self) -> str:
        r = self.results
        rows = ["| arm | training runs (steps) | training wall time | held-out loss / char ↓ | loss / token | "
                "tokens / char |", "|---|---|---|---|---|---|"]

        def line(label, parts, score):
            if not all(p in r for p in parts) or "loss_per_char" not in r.get(score, {}):
                return
            seconds = sum(r[p]["seconds"] for p in parts)
            steps = " + ".join(f"{p} ({r[p]['steps']})" for p in parts)
            s = r[score]
            rows.append(f"| {label} | {steps} | {seconds:.0f} s | {s['loss_per_char']:.3f} | "
                        f"{s['loss_per_token']:.3f} | {s['tokens_per_char']:.3f} |")

        for label, key in (("base, untrained", "start-base"), ("extended base, untrained", "start-extended")):
            if key in r:
                rows.append(f"| {label} | - | - | {r[key]['loss_per_char']:.3f} | {r[key]['loss_per_token']:.3f} | "
                            f"{r[key]['tokens_per_char']:.3f} |")
        line("(a) instruction tuning, unextended base", ["a"], "a")
        line("(b) extension → instruction tuning", ["b"], "b")
        line("(c) after stage 1 only", ["c1"], "c1")
        line("(c) after stages 1 + 2", ["c1", "c2"], "c2")
        line("(c) extension → stage 1 → stage 2 → instruction tuning", ["c1", "c2", "c3"], "c3")
        return "\n".join(rows)


def main(step: str = "all", out: str = "outputs/bench-pretrain", base_model: str = settings.BASE_MODEL,
         train_data: str = settings.TRAIN_DATA, eval_data: str = settings.INFER_DATA,
         corpus: str = settings.PRETRAIN_DATA, budget_s: float = 360, shares="0.25,0.25,0.5", batch_size: int = 8,
         micro_batch_size: int = 4, stage1_lr: float = 2e-3, stage2_lr: float = 3e-4,
         learning_rate: float = settings.LEARNING_RATE, block_size: int = settings.BLOCK_SIZE,
         vocab_size: int = 4000, score_stages=True, steps: int = 0):
    """Run one step (extend, a, b, c1, c2, c3, table), a comma list of them, or all; print the Markdown table.

    --score_stages False skips scoring the stage-1 and stage-2 models on their own (saves time). --steps N gives
    every arm N optimizer steps (split by --shares in arm c) instead of probing for BUDGET_S seconds: use it where
    other work shares the CPU and probes would time noise; the table shows the time each arm really took.
    """
    split = [float(s) for s in parse_list(shares)]
    if len(split) != 3 or abs(sum(split) - 1) > 1e-6:
        raise SystemExit("--shares needs three fractions that add up to 1 (stage 1, stage 2, instruction tuning)")
    bench = Bench(out, base_model, train_data, eval_data, corpus, budget_s, split, batch_size, micro_batch_size,
                  stage1_lr, stage2_lr, learning_rate, block_size, vocab_size, parse_bool(score_stages, "score_stages"),
                  steps)
    names = STEPS if step == "all" else parse_list(step)
    for name in names:
        bench.step(name)
    if "table" not in names:
        print(bench.table())
    print(f"(budget {budget_s:.0f} s per arm, shares {shares}, batch {batch_size}, "
          f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    run(main)
