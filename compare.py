"""Answer the same test cases with several models; write side-by-side answers, metrics and an HTML report.

    python compare.py --base_model base_models/SmolLM2-135M-Instruct --lora_weights outputs/lora-fin \
        --infer_data_path instruction_data/infer.json --output_dir outputs/comparison

Compares the base alone and base + each adapter in --lora_weights (comma-separated);
--models "name=BASE,name2=BASE@ADAPTER" adds any other (base, adapter) pairs.
"""
from __future__ import annotations

from utils import settings
from utils.cli import bool_flags, parse_list, renamed, run
from utils.comparison import compare, model_specs
from utils.data.records import load_records
from utils.exam import load_exam
from utils.generation import generation_settings


@bool_flags
def main(
    base_model: str = settings.BASE_MODEL,
    lora_weights="",
    models="",
    infer_data_path: str = settings.INFER_DATA,
    output_dir: str = "outputs/comparison",
    general_data_path: str = settings.GENERAL_DATA,
    exam_dir: str = settings.EXAM_DIR,
    k_shot: int = 0,
    load_8bit=False,
    load_4bit=False,
    trust_remote_code=False,
    prompt_template: str = "",
    prompt_template_name: str = "",  # the old training spelling of --prompt_template, still accepted
    cutoff_len: int = 0,
    base_template: str = "chat",
    max_new_tokens: int = None,
    batch_size: int = settings.INFER_BATCH_SIZE,
    limit: int = 0,
    do_sample: bool | None = None,
    temperature: float = None,
    top_p: float = None,
    top_k: int = None,
    num_beams: int = None,
    repetition_penalty: float = None,
    no_repeat_ngram_size: int = None,
):
    """Write OUTPUT_DIR/comparison.md, metrics.md, metrics.json, report.html and <model>.jsonl.

    Each adapter is asked with its training template and scored at its training --cutoff_len
    (from its cornucopia.json) unless --prompt_template / --cutoff_len say otherwise. The base alone is asked
    in its own chat template (--base_template chat, its best chance), in the adapter's training template
    (training) or both (two rows). Generation flags left unset take utils/settings.py's GENERATION, as infer
    and serve do.
    """
    specs = model_specs(base_model, parse_list(lora_weights), parse_list(models), base_template)
    generation = generation_settings(
        max_new_tokens=max_new_tokens, do_sample=do_sample,
        temperature=temperature, top_p=top_p, top_k=top_k, num_beams=num_beams,
        repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
    cases = load_records(infer_data_path, require_output=False)
    cases = cases[:limit] if limit > 0 else cases  # the first N cases only: a quick look
    general = load_records(general_data_path) if general_data_path else None
    exam = load_exam(exam_dir) if exam_dir else None
    template = renamed(prompt_template, prompt_template_name, "prompt_template_name", "prompt_template")
    paths = compare(specs, cases, output_dir, load_8bit=load_8bit, load_4bit=load_4bit, prompt_template=template or None,
                    batch_size=batch_size, general_cases=general, exam=exam, k_shot=k_shot,
                    cutoff_len=cutoff_len or None, trust_remote_code=trust_remote_code, generation=generation)
    print("\n".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    run(main)
