"""Continued pre-training on raw text: which rows stage 1 trains, and the merged base each stage leaves behind.

pretrain.py runs the steps through the same functions as finetune.py (utils.loading, utils.adapters,
utils.training); this module holds only what pre-training adds.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from utils.adapters import embedding_module_names, read_run_info, write_run_info
from utils.loading import resolve_model_path
from utils.merging import merge_adapter
from utils.vocab import ADDED_TOKENS_FILE, new_token_rows

logger = logging.getLogger(__name__)

MERGED_SUBDIR = "merged"


def stage_one_rows(base_model: str, tokenizer, new_rows_only: bool) -> tuple[list[int] | None, str]:
    """(embedding rows stage 1 trains, None meaning all; a description): the extension's new rows if asked and known."""
    if not new_rows_only:
        return None, "all rows"
    rows = new_token_rows(resolve_model_path(base_model), tokenizer)
    if not rows:
        logger.info("%s lists no tokens added by extend_vocab.py, so stage 1 trains every embedding row", base_model)
        return None, "all rows"
    return rows, f"the {len(rows)} rows added by extend_vocab.py"


def stage_two_modules(model, base_model: str, flag: list[str]) -> list[str]:
    """Modules trained in full beside LoRA in stage 2: the flag, else the base's run info, else embeddings + head."""
    if flag:
        return flag
    recorded = read_run_info(resolve_model_path(base_model)).get("modules_to_save")
    if recorded:
        return list(recorded)
    embed, head, _ = embedding_module_names(model)
    return [name.rsplit(".", 1)[-1] for name in (embed, head) if name]


def merge_stage(base_model: str, adapter_dir, run_info: dict) -> Path:
    """Fold the stage's adapter into its base as ADAPTER_DIR/merged (float32): the next stage's --base_model.

    The merged folder keeps the base's list of added tokens and records which modules later training should
    train in full (modules_to_save), so stage 2 and finetune.py treat it like the extended base it came from.
    """
    merged = merge_adapter(base_model, str(adapter_dir), Path(adapter_dir) / MERGED_SUBDIR, dtype="float32")
    added = Path(resolve_model_path(base_model)) / ADDED_TOKENS_FILE
    if added.is_file():
        shutil.copyfile(added, merged / ADDED_TOKENS_FILE)
    info = {k: v for k, v in read_run_info(merged).items() if k not in ("created", "versions") and v is not None}
    info.update(kind="pretrained", **run_info)
    write_run_info(merged, **info)
    logger.info("Stage %s result merged into %s: pass it as --base_model to the next stage or to finetune.py",
                run_info.get("stage"), merged)
    return merged
