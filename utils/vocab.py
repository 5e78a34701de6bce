"""Chinese vocabulary extension: learn pieces from a corpus, add the missing ones, resize the embeddings.

Many bases (LLaMA, SmolLM2) split a Chinese character into 2-3 byte tokens. As
Chinese-LLaMA-Alpaca did, a SentencePiece model trained on Chinese text supplies
whole characters and words; those the base tokenizer lacks are added, and each new
embedding row (input and output) starts as the mean of the rows of the old tokens
that the piece used to be split into, so the extended model first behaves as before.
"""
from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import sentencepiece as spm
import torch

from utils.adapters import write_run_info
from utils.data.records import DataError, check_rows, raise_if_unusable
from utils.loading import load_base_model, load_tokenizer

logger = logging.getLogger(__name__)

ADDED_TOKENS_FILE = "added_tokens.txt"  # the new tokens, one per line, beside the extended base
CJK = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+$")


def corpus_lines(path) -> list[str]:
    """Text to learn from: every string of a JSON/JSONL record file (instructions, inputs, answers, history), or a .txt."""
    path = Path(path)
    if path.suffix == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows, problems = check_rows(path, require_output=False)
    raise_if_unusable(path, problems)  # a malformed line is an error, not text silently left out
    lines = []
    for row in rows:
        record = row.raw
        texts = [record["instruction"], record["input"], record["output"]]
        texts += [t for pair in record.get("history", []) for t in pair]
        lines += [line for text in texts for line in text.splitlines() if line.strip()]
    return lines


def learn_pieces(lines: list[str], vocab_size: int) -> list[str]:
    """The Chinese pieces (characters and words) of a SentencePiece BPE model trained on the lines, by rank."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_prefix=f"{tmp}/sp", vocab_size=vocab_size, model_type="bpe",
                character_coverage=0.9995, split_digits=True, byte_fallback=False, minloglevel=2,
            )
        except RuntimeError as err:  # e.g. fewer pieces allowed than the corpus has distinct characters
            raise DataError(f"SentencePiece could not learn --vocab_size {vocab_size} pieces from the corpus: "
                            f"{str(err).split('] ')[-1]}") from err
        processor = spm.SentencePieceProcessor(model_file=f"{tmp}/sp.model")
        pieces = [processor.id_to_piece(i).lstrip("\u2581") for i in range(processor.get_piece_size())]
    return [p for p in pieces if CJK.match(p)]


def tokens_per_char(tokenizer, texts: list[str]) -> float:
    chinese = sum(len(re.findall(r"[\u4e00-\u9fff]", t)) for t in texts)
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return tokens / max(1, chinese)


@torch.no_grad()
def extend_vocabulary(model, tokenizer, pieces: list[str]) -> list[str]:
    """Add the pieces the tokenizer splits into several tokens; initialise their rows from those tokens."""
    new = []
    splits = {}
    for piece in dict.fromkeys(pieces):
        ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        if len(ids) > 1:
            new.append(piece)
            splits[piece] = ids
    tokenizer.add_tokens(new)
    old_input = model.get_input_embeddings().weight.detach().clone()
    old_output = model.get_output_embeddings().weight.detach().clone()
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    for piece in new:
        row, ids = tokenizer.convert_tokens_to_ids(piece), splits[piece]
        model.get_input_embeddings().weight[row] = old_input[ids].mean(dim=0)
        if not tied:
            model.get_output_embeddings().weight[row] = old_output[ids].mean(dim=0)
    return new


def extend_base(base_model: str, corpus, vocab_size: int, output_dir, eval_path=None) -> dict:
    """Write an extended copy of BASE_MODEL to OUTPUT_DIR; returns what was done, with tokens per character."""
    lines = corpus_lines(corpus)  # the corpus is checked before the base is loaded
    tokenizer = load_tokenizer(base_model)
    model = load_base_model(base_model, dtype=torch.float32, device="cpu")
    sample = corpus_lines(eval_path) if eval_path else lines
    before = tokens_per_char(tokenizer, sample)
    pieces = learn_pieces(lines, vocab_size)
    added = extend_vocabulary(model, tokenizer, pieces)
    after = tokens_per_char(tokenizer, sample)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    summary = {"kind": "vocab-extended", "base_model": base_model, "corpus": str(corpus), "sentencepiece_vocab": vocab_size,
               "added_tokens": len(added), "vocab_size": len(tokenizer), "tokens_per_chinese_char_before": round(before, 3),
               "tokens_per_chinese_char_after": round(after, 3), "measured_on": str(eval_path or corpus),
               "modules_to_save": ["embed_tokens", "lm_head"]}
    write_run_info(output_dir, **summary)
    (output_dir / ADDED_TOKENS_FILE).write_text("\n".join(added) + "\n", encoding="utf-8")
    logger.info("Added %d Chinese tokens; tokens per Chinese character %.3f -> %.3f", len(added), before, after)
    return summary



def new_token_rows(model_dir, tokenizer) -> list[int]:
    """The embedding rows of the tokens extend_base added to MODEL_DIR (its added_tokens.txt); [] if none."""
    path = Path(model_dir) / ADDED_TOKENS_FILE
    if not path.is_file():
        return []
    pieces = [p for p in path.read_text(encoding="utf-8").split("\n") if p.strip()]
    rows = tokenizer.convert_tokens_to_ids(pieces)
    unknown = [p for p, r in zip(pieces, rows) if r is None or r == tokenizer.unk_token_id]
    if unknown:
        raise DataError(f"{path}: {len(unknown)} listed token(s) are not in the tokenizer of {model_dir} "
                        f"(first: {unknown[0]!r}); the file belongs to another extension")
    return rows
