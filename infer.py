"""Answer test cases with a base model, alone or with a LoRA adapter.

    python infer.py --base_model base_models/SmolLM2-135M-Instruct --lora_weights outputs/lora-fin \
        --infer_data_path instruction_data/infer.json --output_path outputs/answers.jsonl

Without --infer_data_path (or the original's --instruct_dir) it asks questions interactively.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from utils import settings
from utils.adapters import inference_prompter, load_for_inference, trained_cutoff
from utils.cli import bool_flags, renamed, run
from utils.data.records import load_records
from utils.errors import UsageError
from utils.files import atomic_write_json
from utils.generation import answer_cases, generate, generation_settings, tokens_per_second, write_answers
from utils.metrics import score_answers
from utils.reference_loss import reference_loss
from utils.retrieval import DocumentIndex
from utils.retrieval.answer import attach_sources, citations, ground_cases, grounded_record

logger = logging.getLogger("infer")


@bool_flags
def main(
    base_model: str = settings.BASE_MODEL,
    lora_weights: str = "",
    load_8bit=False,
    load_4bit=False,
    trust_remote_code=False,
    prompt_template: str = "",
    prompt_template_name: str = "",  # the old training spelling of --prompt_template, still accepted
    infer_data_path: str = "",
    output_path: str = "outputs/infer_results.jsonl",
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
    score=False,
    cutoff_len: int = 0,
    index_dir: str = "",  # answer over passages retrieved from this document index (python -m utils.retrieval index)
    index_top_k: int = 3,  # passages per question with --index_dir
    # the original Cornucopia's flag names
    instruct_dir: str = "",  # the original's spelling of --infer_data_path, still accepted
    use_lora: bool | None = None,
):
    """Answer INFER_DATA_PATH (JSON list or JSONL of {instruction, input, output}) into OUTPUT_PATH.

    Generation flags left unset (--max_new_tokens, --do_sample, --temperature, --top_p, --top_k, --num_beams,
    --repetition_penalty, --no_repeat_ngram_size) take utils/settings.py's GENERATION, as compare and serve do;
    answers stop at EOS and at the template's own next-turn markers.
    --score True also writes OUTPUT_PATH with .scores.json: ROUGE/BLEU and repetition of the answers and the
    reference loss, scored at the adapter's training --cutoff_len unless --cutoff_len is given.
    --index_dir DIR: each question is asked over the --index_top_k passages it retrieves from DIR (numbered, in the
    template's background slot); each row keeps its `passages` and the `citations` its answer makes ([1] -> file, page).
    """
    if use_lora is not None and not use_lora:
        lora_weights = ""  # --use_lora False means the base alone, whatever --lora_weights says
    elif use_lora is not None and not lora_weights:
        raise UsageError("--use_lora True needs --lora_weights PATH")
    infer_data_path = renamed(infer_data_path, instruct_dir, "instruct_dir", "infer_data_path")
    prompt_template = renamed(prompt_template, prompt_template_name, "prompt_template_name", "prompt_template")
    cases = load_records(infer_data_path, require_output=False) if infer_data_path else None
    if cases and limit > 0:
        cases = cases[:limit]  # the first N cases only: a quick look
    if score and cases is not None and not any(case["output"] for case in cases):
        raise UsageError(f"--score needs reference answers ('output') in the test cases of {infer_data_path}")

    store = DocumentIndex.load(index_dir) if index_dir else None
    model, tokenizer = load_for_inference(base_model, lora_weights or None, load_8bit,
                                          load_4bit,
                                          trust_remote_code)
    prompter = inference_prompter(tokenizer, prompt_template, lora_weights)
    generation = generation_settings(
        max_new_tokens=max_new_tokens, do_sample=do_sample,
        temperature=temperature, top_p=top_p, top_k=top_k, num_beams=num_beams,
        repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)

    if cases is None:
        return interactive(model, tokenizer, prompter, generation, store, index_top_k)
    if store is not None:
        cases, passages = ground_cases(store, cases, index_top_k)
    rows = answer_cases(model, tokenizer, prompter, cases, batch_size=batch_size, generation=generation)
    if store is not None:
        attach_sources(rows, passages)
    write_answers(rows, output_path)
    logger.info("%d cases, %.1f new tokens/s at batch size %d (%s)", len(rows), tokens_per_second(rows),
                batch_size, "base + " + lora_weights if lora_weights else "base alone")
    if score:
        referenced = [case for case in cases if case["output"]]
        cutoff = trained_cutoff(lora_weights, cutoff_len)
        scores = {**score_answers(rows), **reference_loss(model, tokenizer, prompter, referenced, batch_size, cutoff),
                  "tokens_per_second": tokens_per_second(rows), "cutoff_len": cutoff}
        path = atomic_write_json(Path(output_path).with_suffix(".scores.json"), scores)
        logger.info("Scores %s -> %s", scores, path)
    return None


def interactive(model, tokenizer, prompter, generation, store=None, top_k: int = 3) -> None:
    print("输入问题后回车；空行或 Ctrl-D 退出。 Type a question; an empty line or Ctrl-D quits.", flush=True)
    while True:
        try:
            question = input("问题> ").strip()
        except EOFError:
            break
        if not question:
            break
        passages = store.search(question, top_k) if store is not None else []
        record = grounded_record(question, passages)
        answer = generate(model, tokenizer, [prompter.generate_prompt(record["instruction"], record["input"])],
                          batch_size=1, progress=False, generation=generation, stop=prompter.stop_markers(),
                          stop_token_ids=prompter.stop_token_ids())[0]
        print(f"回答> {answer['text']}\n", flush=True)
        for cited in citations(answer["text"], passages):
            print(f"  [{cited['n']}] {cited['file']} 第{cited['page']}页：{cited['text'][:80]}", flush=True)
    print(file=sys.stderr)


if __name__ == "__main__":
    run(main)
