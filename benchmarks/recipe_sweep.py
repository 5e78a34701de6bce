"""Choose the fine-tuning recipe by measurement: arms trained one after another and scored the same way.

    python benchmarks/recipe_sweep.py                                  # every arm, resumable
    python benchmarks/recipe_sweep.py --arms base,default,linear_r16 --max_steps 40 --curve_every 10

Each arm runs finetune.py in its own process on the same data with the same seed and number of steps, keeping a
checkpoint every --curve_every steps. Then, in this process, for each arm:
- held-out financial loss (teacher-forced, instruction_data/infer.json) at every checkpoint: a curve against the
  training wall time (the Trainer's own clock, model loading left out);
- at the end: general-domain loss (evaluation_data/general.json: forgetting), the adapter's answers to infer.json
  with the default generation settings (ROUGE-L; repetition: looping answers, distinct-2, answers that ran into
  the template's turn marker), and IE F1 on --ie_per_task held-out ie_test.json cases per task.
The base alone is the arm `base` (asked in the training template, as the adapters are, and in its own chat template).

Writes OUT/results.json as each arm finishes (a rerun skips finished arms, and a training that was cut off resumes
from its last checkpoint), OUT/recipe_sweep.md (the table) and OUT/recipe_sweep.png (held-out loss against time).
Run it alone on a quiet machine: the wall times are the point.
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from utils import hardware, settings  # noqa: E402
from utils.adapters import inference_prompter, load_for_inference  # noqa: E402
from utils.cli import parse_bool, parse_list, run  # noqa: E402
from utils.data.records import load_records  # noqa: E402
from utils.errors import UsageError  # noqa: E402
from utils.files import atomic_write_json, atomic_write_text  # noqa: E402
from utils.generation import answer_cases, generation_settings  # noqa: E402
from utils.ie.metrics import flat_scores, score_ie  # noqa: E402
from utils.loading import load_tokenizer, pick_device  # noqa: E402
from utils.metrics import score_answers  # noqa: E402
from utils.reference_loss import reference_loss  # noqa: E402

IE_DATA = "instruction_data/ie/ner_bio.json,instruction_data/ie/ner_boson.json,instruction_data/ie/re_duie.json," \
          "instruction_data/ie/re_finre.json,instruction_data/ie/ee_duee.json"
IE_TEST = "instruction_data/ie/ie_test.json"
ALL_LINEAR = ["--lora_target_modules", "all-linear"]
ATTENTION = ["--lora_target_modules", "q_proj,k_proj,v_proj,o_proj"]

# name: (what it tries, finetune.py flags on top of the common ones). `base` trains nothing.
ARMS = {
    "base": ("the base alone (no training)", None),
    "default": ("today's finetune.py defaults: r 8 on q,v, lr 3e-4", []),
    "qv_lr1e-3": ("r 8 on q,v, lr 1e-3 (the old quickstart)", ["--learning_rate", "1e-3"]),
    "attn_lr1e-3": ("r 8 on q,k,v,o, lr 1e-3", [*ATTENTION, "--learning_rate", "1e-3"]),
    "linear_r8": ("r 8 on all linear layers, lr 1e-3", [*ALL_LINEAR, "--learning_rate", "1e-3"]),
    "linear_r16": ("r 16 (alpha 32) on all linear layers, lr 1e-3",
                   [*ALL_LINEAR, "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "1e-3"]),
    "linear_r64": ("r 64 (alpha 128) on all linear layers, lr 1e-3",
                   [*ALL_LINEAR, "--lora_r", "64", "--lora_alpha", "128", "--learning_rate", "1e-3"]),
    "linear_r16_dropout0": ("r 16 on all linear layers, lr 1e-3, LoRA dropout 0 (no dropout masks: faster)",
                            [*ALL_LINEAR, "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "1e-3",
                             "--lora_dropout", "0"]),
    "linear_r16_lr2e-3": ("r 16 on all linear layers, lr 2e-3",
                          [*ALL_LINEAR, "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "2e-3"]),
    "linear_r16_lr5e-4": ("r 16 on all linear layers, lr 5e-4",
                          [*ALL_LINEAR, "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "5e-4"]),
    "linear_r16_b8": ("r 16 on all linear layers, lr 1e-3, batch 8 (twice the steps for the same records)",
                      [*ALL_LINEAR, "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "1e-3",
                       "--batch_size", "8"]),
    "linear_r16_constant": ("r 16 on all linear layers, lr 1e-3, constant schedule after warm-up",
                            [*ALL_LINEAR, "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "1e-3",
                             "--lr_scheduler_type", "constant_with_warmup"]),
    "linear_r16_neftune": ("r 16 on all linear layers, lr 1e-3, NEFTune noise alpha 5",
                           [*ALL_LINEAR, "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "1e-3",
                            "--neftune_noise_alpha", "5"]),
    "linear_r16_cutoff512": ("r 16 on all linear layers, lr 1e-3, cutoff 512 (long records lose their end)",
                             [*ALL_LINEAR, "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "1e-3",
                              "--cutoff_len", "512"]),
    "ie_linear_r16": ("extraction: the IE training files, r 16 on all linear layers, lr 1e-3",
                      [*ALL_LINEAR, "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "1e-3",
                       "--data_path", IE_DATA]),
}
DEFAULT_ARMS = [name for name in ARMS if not name.startswith("ie_")]


def arm_flags(name: str, max_steps: int, batch_size: int, curve_every: int, data_path: str, template: str,
              cutoff_len: int) -> dict[str, str]:
    """finetune.py's flags for an arm: the common ones, overridden by the arm's own."""
    own = ARMS[name][1]
    own = dict(zip(own[::2], own[1::2]))
    arm_batch = int(own.get("--batch_size", batch_size))
    steps = max_steps * batch_size // arm_batch  # the same number of records: smaller batches take more steps
    flags = {"--data_path": data_path, "--max_steps": str(steps), "--batch_size": str(batch_size),
             "--save_steps": str(curve_every * steps // max_steps), "--save_total_limit": "0",
             "--logging_steps": "1", "--group_by_length": "True", "--seed": "42",
             "--prompt_template_name": template, "--cutoff_len": str(cutoff_len), "--overwrite": "True"}
    flags.update(own)
    return flags


def train_arm(name: str, folder: Path, flags: dict[str, str], base_model: str, extra: list[str]) -> None:
    if (folder / "train_summary.json").is_file():
        print(f"[{name}] already trained in {folder}", flush=True)
        return
    command = [sys.executable, str(ROOT / "finetune.py"), "--base_model", base_model, "--output_dir", str(folder),
               *[part for flag, value in flags.items() for part in (flag, value)], *extra]
    if any(folder.glob("checkpoint-*")):
        command += ["--resume_from_checkpoint", "True"]
    print(f"[{name}] training: {' '.join(command[2:])}", flush=True)
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        raise UsageError(f"arm {name}: finetune.py failed (exit {done.returncode}); rerun to resume it")


def curve_points(folder: Path) -> list[tuple[int, float, Path]]:
    """(step, training seconds at that step, checkpoint folder) for every checkpoint, in order."""
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((checkpoints[-1] / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    clock = {entry["step"]: entry["train_runtime"] for entry in history if "train_runtime" in entry}
    return [(int(c.name.split("-")[1]), clock.get(int(c.name.split("-")[1]), float("nan")), c) for c in checkpoints]


def free(model) -> None:
    del model
    gc.collect()


def score_model(base_model, adapter, template, fin_cases, general_cases, ie_cases, cutoff_len, generation,
                batch_size) -> dict:
    """The end-of-arm figures for base + ADAPTER (or the base alone), asked in TEMPLATE."""
    model, tokenizer = load_for_inference(base_model, str(adapter) if adapter else None)
    prompter = inference_prompter(tokenizer, template)
    began = time.perf_counter()
    result = {"template": prompter.template_name,
              "fin_loss": reference_loss(model, tokenizer, prompter, fin_cases, batch_size, cutoff_len)["loss"],
              "general_loss": reference_loss(model, tokenizer, prompter, general_cases, batch_size, cutoff_len)["loss"]}
    answers = answer_cases(model, tokenizer, prompter, fin_cases, batch_size=batch_size, generation=generation)
    scores = score_answers(answers)
    result.update({k: scores[k] for k in ("rouge-l", "char-rouge-l", "loop_share", "distinct-2", "marker_share",
                                          "mean_answer_chars")})
    result["finish_reasons"] = {r: sum(a["finish_reason"] == r for a in answers) for r in ("stop", "marker", "length")}
    result["answers"] = [a["model_output"] for a in answers]
    if ie_cases:
        ie_answers = answer_cases(model, tokenizer, prompter, ie_cases, batch_size=batch_size,
                                  generation=generation_settings(max_new_tokens=256))
        ie = score_ie(ie_answers)
        result.update(flat_scores(ie), ie=ie)
    result["scoring_seconds"] = round(time.perf_counter() - began, 1)
    free(model)
    return result


def held_out_curve(base_model, folder, template, fin_cases, cutoff_len, batch_size) -> list[dict]:
    curve = []
    for step, seconds, checkpoint in curve_points(folder):
        model, tokenizer = load_for_inference(base_model, str(checkpoint))
        prompter = inference_prompter(tokenizer, template)
        loss = reference_loss(model, tokenizer, prompter, fin_cases, batch_size, cutoff_len, progress=False)["loss"]
        curve.append({"step": step, "train_seconds": round(seconds, 1), "fin_loss": loss})
        print(f"  step {step}: {seconds:.0f} s of training, held-out loss {loss:.4f}", flush=True)
        free(model)
    return curve


def ie_subset(path: str, per_task: int) -> list[dict]:
    """The first PER_TASK cases of each task (0: all), in file order."""
    cases, taken = [], {}
    for case in load_records(path, require_output=False):
        task = case.get("task")
        if per_task <= 0 or taken.get(task, 0) < per_task:
            cases.append(case)
            taken[task] = taken.get(task, 0) + 1
    return cases


def pct(value, base) -> str:
    return f"{(value - base) / base:+.1%}" if isinstance(value, (int, float)) and base else "—"


def num(value, pattern="{:.3f}") -> str:
    return pattern.format(value) if isinstance(value, (int, float)) else "—"


def markdown(results: dict, machine: str, common: str) -> str:
    base = results.get("base", {}).get("training_template", {})
    lines = [f"Recipe sweep, {date.today()}, {machine}. {common}", "",
             "| arm | what it tries | steps × batch | train s | tokens/s | held-out fin. loss (vs base) | "
             "general loss (vs base) | ROUGE-L | looping % | ran into marker % | distinct-2 | NER F1 | RE F1 | "
             "EE event F1 | IE invalid |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        rows = [("", result.get("training_template", result.get("final", {})))]
        if name == "base":
            rows = [(f" ({key.replace('_', ' ')})", result[key]) for key in ("training_template", "chat_template")
                    if key in result]
        for suffix, m in rows:
            train = result.get("train", {})
            lines.append(
                f"| {name}{suffix} | {result['description']} | {train.get('steps_x_batch', '—')} | "
                f"{num(train.get('train_seconds'), '{:.0f}')} | {num(train.get('tokens_per_second'), '{:.0f}')} | "
                f"{num(m.get('fin_loss'))} ({pct(m.get('fin_loss'), base.get('fin_loss'))}) | "
                f"{num(m.get('general_loss'))} ({pct(m.get('general_loss'), base.get('general_loss'))}) | "
                f"{num(m.get('rouge-l'), '{:.2f}')} | {num(m.get('loop_share'), '{:.1f}')} | "
                f"{num(m.get('marker_share'), '{:.1f}')} | {num(m.get('distinct-2'), '{:.1f}')} | "
                f"{num(m.get('ner-f1'), '{:.1f}')} | {num(m.get('re-f1'), '{:.1f}')} | "
                f"{num(m.get('ee-event-f1'), '{:.1f}')} | {num(m.get('ie_invalid'), '{:d}')} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    base = results.get("base", {}).get("training_template", {}).get("fin_loss")
    start = [(0.0, base)] if base else []  # every arm starts from the base at minute 0
    for name, result in results.items():
        curve = result.get("curve")
        if curve:
            points = start + [(p["train_seconds"] / 60, p["fin_loss"]) for p in curve]
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", markersize=3, label=name)
    if base:
        ax.axhline(base, color="grey", linestyle="--", label="base")
        ax.axhline(base * 0.7, color="grey", linestyle=":", label="base − 30 %")
    ax.set_xlabel("training wall time (minutes)")
    ax.set_ylabel("held-out financial loss per token (infer.json)")
    ax.set_title("Recipe sweep: held-out loss against training time")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(arms: str = ",".join(DEFAULT_ARMS), output_dir: str = "benchmarks/results/recipe_sweep",
         work_dir: str = "outputs/recipe_sweep", base_model: str = settings.BASE_MODEL,
         data_path: str = settings.TRAIN_DATA, max_steps: int = 24, batch_size: int = 16, curve_every: int = 6,
         ie_per_task: int = 12, eval_batch_size: int = 8, template: str = settings.PROMPT_TEMPLATE,
         cutoff_len: int = settings.CUTOFF_LEN, max_new_tokens: int = None, extra_flags: str = "",
         rescore: bool = False):
    """Train and score each arm of --arms (see ARMS) in turn; write OUTPUT_DIR/results.json, .md and .png.

    --max_steps x --batch_size records per arm (an arm with its own --batch_size takes more steps for the same
    records); a checkpoint (curve point) every --curve_every steps. --extra_flags go to every finetune.py run
    (e.g. "--bf16 False"). --rescore True scores finished trainings again.
    """
    names = parse_list(arms)
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise UsageError(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    if max_steps % curve_every:
        raise UsageError(f"--max_steps ({max_steps}) must be a multiple of --curve_every ({curve_every})")
    out, work = Path(output_dir), Path(work_dir)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    fin_cases = load_records(settings.INFER_DATA)
    general_cases = load_records(settings.GENERAL_DATA)
    ie_cases = ie_subset(IE_TEST, ie_per_task)
    generation = generation_settings(max_new_tokens=max_new_tokens)
    machine = hardware.describe(pick_device())
    common = (f"Every arm: {data_path} unless it says otherwise, {max_steps} steps × batch {batch_size} "
              f"(micro-batch {settings.MICRO_BATCH_SIZE}), seed 42, group_by_length, cutoff {cutoff_len}, "
              f"template {template}, extra flags `{extra_flags or 'none'}`; held-out loss on {len(fin_cases)} "
              f"infer.json cases, general loss on {len(general_cases)}, answers with {generation}, IE on "
              f"{len(ie_cases)} ie_test.json cases.")
    for name in names:
        if name in results and not parse_bool(rescore, "rescore"):
            print(f"[{name}] done before; skipped", flush=True)
            continue
        description, flags = ARMS[name]
        began = time.perf_counter()
        if flags is None:
            result = {"description": description,
                      "training_template": score_model(base_model, None, template, fin_cases, general_cases, ie_cases,
                                                       cutoff_len, generation, eval_batch_size)}
            if getattr(load_tokenizer(base_model), "chat_template", None):
                result["chat_template"] = score_model(base_model, None, "chat", fin_cases, general_cases, ie_cases,
                                                      cutoff_len, generation, eval_batch_size)
        else:
            folder = work / name
            arm = arm_flags(name, max_steps, batch_size, curve_every, data_path, template, cutoff_len)
            train_arm(name, folder, arm, base_model, extra_flags.split())
            summary = json.loads((folder / "train_summary.json").read_text(encoding="utf-8"))
            info = json.loads((folder / "cornucopia.json").read_text(encoding="utf-8"))
            print(f"[{name}] held-out loss at each checkpoint", flush=True)
            curve = held_out_curve(base_model, folder, template, fin_cases, info["cutoff_len"], eval_batch_size)
            print(f"[{name}] scoring the final adapter", flush=True)
            final = score_model(base_model, folder, template, fin_cases, general_cases, ie_cases, info["cutoff_len"],
                                generation, eval_batch_size)
            steps = summary["global_step"]
            result = {"description": description, "flags": {**arm, "extra": extra_flags}, "data_path": arm["--data_path"],
                      "train": {"steps_x_batch": f"{steps} × {info.get('batch_size')}",
                                "train_seconds": summary["train_seconds"],
                                "tokens_per_second": summary["train_tokens_per_second"],
                                "train_tokens": summary["train_tokens"], "peak_memory_mib": summary["peak_memory_mib"],
                                "bf16": info.get("bf16"), "gradient_checkpointing": info.get("gradient_checkpointing"),
                                "lora_target_modules": info.get("lora_target_modules")},
                      "curve": curve, "training_template": final}
        result["arm_seconds"] = round(time.perf_counter() - began, 1)
        results[name] = result
        atomic_write_json(results_path, results)
        atomic_write_text(out / "recipe_sweep.md", markdown(results, machine, common))
        plot(results, out / "recipe_sweep.png")
        print(f"[{name}] done in {result['arm_seconds']:.0f} s", flush=True)
    print(markdown(results, machine, common))


if __name__ == "__main__":
    run(main)
