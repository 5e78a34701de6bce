"""Answer the same test cases with several models and lay the answers side by side.

A model is a base, alone or with a LoRA adapter. Each one's answers go to
`<output_dir>/<label>.jsonl`; `comparison.md` holds one row per question and
one column per model, as in the original Cornucopia README.
"""
from __future__ import annotations

import gc
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from utils import report
from utils.adapters import check_adapter_fits_base, inference_prompter, load_for_inference, trained_cutoff
from utils.errors import UsageError
from utils.exam import evaluate_exam
from utils.generation import answer_cases, tokens_per_second, write_answers
from utils.metrics import score_answers
from utils.prompter import CHAT_TEMPLATE
from utils.reference_loss import reference_loss
from utils.settings import GENERATION, GenerationSettings

logger = logging.getLogger(__name__)


# How the base alone is asked (--base_template): in its own chat template where it has one ("chat"; a base
# that has none falls back to the adapters' template), in the adapters' training template ("training"), or both.
BASE_TEMPLATES = ("chat", "training", "both")


@dataclass
class ModelSpec:
    label: str
    base_model: str
    lora_weights: str | None = None
    template: str | None = None  # "chat": the base's own chat template where it has one
    template_from: str | None = None  # the base alone asked in this adapter's training template


def model_specs(base_model: str, lora_weights: list[str] = (), models: list[str] = (),
                base_template: str = "chat") -> list[ModelSpec]:
    """The base alone, then base + each adapter; `models` adds `LABEL=BASE` or `LABEL=BASE@ADAPTER` entries.

    The base alone is asked as BASE_TEMPLATE says: "chat" (its own chat template, its best chance), "training"
    (the first adapter's training template, exactly as the adapter is asked) or "both" (two rows).
    """
    if base_template not in BASE_TEMPLATES:
        raise UsageError(f"--base_template must be one of {', '.join(BASE_TEMPLATES)}, got {base_template!r}")
    specs = []
    if base_model:
        training = lora_weights[0] if lora_weights else None
        if base_template in ("chat", "both"):
            specs.append(ModelSpec("base", base_model, template=CHAT_TEMPLATE))
        if base_template in ("training", "both"):
            # asked as the first adapter is: the same template lookup, with that adapter's run info
            specs.append(ModelSpec("base" if base_template == "training" else "base-training-template", base_model,
                                   template_from=training))
        specs += [ModelSpec(Path(a).name or a, base_model, a) for a in lora_weights]
    for entry in models:
        label, sep, target = entry.partition("=")
        if not sep or not label or not target:
            raise UsageError(f"--models entry {entry!r}: expected LABEL=BASE or LABEL=BASE@ADAPTER")
        base, _, adapter = target.partition("@")
        specs.append(ModelSpec(label, base, adapter or None))
    if not specs:
        raise UsageError("nothing to compare: give --base_model (and --lora_weights) or --models")
    seen = {}
    for spec in specs:  # two adapters both called `lora` must not overwrite each other's file
        seen[spec.label] = seen.get(spec.label, 0) + 1
        if seen[spec.label] > 1:
            spec.label = f"{spec.label}-{seen[spec.label]}"
    return specs


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>") if text else "—"


def markdown_table(cases: list[dict], answers: dict[str, list[dict]]) -> str:
    labels = list(answers)
    lines = ["| # | 问题 | 参考答案 | " + " | ".join(labels) + " |",
             "|---|---|---|" + "---|" * len(labels)]
    for i, case in enumerate(cases):
        question = case["instruction"] + (f"<br>（{case['input']}）" if case["input"] else "")
        row = [str(i + 1), _cell(question), _cell(case["output"])]
        row += [_cell(answers[label][i]["model_output"]) for label in labels]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def spec_prompter(spec: ModelSpec, tokenizer, prompt_template: str | None):
    """The Prompter a model is asked with (utils.adapters.trained_template decides; --prompt_template wins, except
    for the row that asks the base in its own chat template)."""
    if spec.template == CHAT_TEMPLATE:
        return inference_prompter(tokenizer, prefer_chat=True)
    return inference_prompter(tokenizer, prompt_template, spec.lora_weights or spec.template_from)


def compare(specs: list[ModelSpec], cases: list[dict], output_dir, load_8bit=False, load_4bit=False,
            prompt_template=None, batch_size=4, general_cases=None, exam=None, k_shot=0, cutoff_len=None,
            trust_remote_code=False, generation: GenerationSettings = GENERATION) -> dict:
    """Answer `cases` with every model and measure it; returns the report's paths.

    Per model: reference scores of its answers (ROUGE, BLEU, character ROUGE-L), the teacher-forced
    loss of the financial references and, if given, of a general-domain set (forgetting), the
    accuracy on a multiple-choice exam, and generation speed. Losses are scored at each adapter's
    training --cutoff_len unless `cutoff_len` is given.
    """
    for spec in specs:  # every adapter must fit its base before the first model answers anything
        if spec.lora_weights:
            check_adapter_fits_base(spec.base_model, spec.lora_weights, trust_remote_code)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    answers, metrics = {}, {}
    referenced = [c for c in cases if c["output"]]
    for spec in specs:
        logger.info("Model '%s': %s%s", spec.label, spec.base_model,
                    f" + {spec.lora_weights}" if spec.lora_weights else " (alone)")
        model, tokenizer = load_for_inference(spec.base_model, spec.lora_weights, load_8bit, load_4bit,
                                              trust_remote_code)
        prompter = spec_prompter(spec, tokenizer, prompt_template)
        cutoff = trained_cutoff(spec.lora_weights, cutoff_len)
        rows = answer_cases(model, tokenizer, prompter, cases, batch_size=batch_size, generation=generation)
        write_answers(rows, output_dir / f"{spec.label}.jsonl")
        answers[spec.label] = rows
        m = {"base_model": spec.base_model, "lora_weights": spec.lora_weights, "template": prompter.template_name}
        m.update(score_answers(rows))
        m["tokens_per_second"] = tokens_per_second(rows)
        if referenced:
            fin = reference_loss(model, tokenizer, prompter, referenced, batch_size, cutoff)
            m.update(fin_loss=fin["loss"], fin_perplexity=fin["perplexity"], fin_loss_per_char=fin["loss_per_char"])
        if general_cases:
            m["general_loss"] = reference_loss(model, tokenizer, prompter, general_cases, batch_size, cutoff)["loss"]
        if exam is not None:
            result = evaluate_exam(model, tokenizer, *exam, k_shot=k_shot, batch_size=batch_size)
            m["exam_accuracy"] = result["subjects"]["overall"]["accuracy"]
            m["exam_subjects"] = {s: r["accuracy"] for s, r in result["subjects"].items() if s != "overall"}
        metrics[spec.label] = m
        logger.info("Model '%s': %s", spec.label, {k: v for k, v in m.items() if isinstance(v, (int, float))})
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    run_settings = {"cases": len(cases), "k_shot": k_shot, "load_8bit": load_8bit, "load_4bit": load_4bit,
                    **asdict(generation)}
    paths = report.write_report(output_dir, metrics, cases, answers, markdown_table(cases, answers), run_settings)
    logger.info("Report: %s", ", ".join(str(p) for p in paths.values()))
    return paths
