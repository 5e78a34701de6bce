"""Shared plumbing for the fire entry scripts: logging, flag parsing, clean errors."""
from __future__ import annotations

import logging
import os
import sys

def parse_bool(value, flag: str) -> bool:
    """fire passes `--flag False` as a bool but `--flag=false` as a string; accept both, reject the rest."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "y", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "n", "off", "none", ""):
        return False
    raise SystemExit(f"error: --{flag} expects True or False, got {value!r}")


def parse_list(value) -> list[str]:
    """`[q_proj,v_proj]`, `q_proj,v_proj` and fire's tuples all become ['q_proj', 'v_proj']."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip().strip("'\"") for v in str(value).strip("[]()").split(",") if v.strip()]


def setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=("" if rank == 0 else f"[rank {rank}] ") + "%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # bitsandbytes warns at import that an optional CPU kernel package is absent; it works without it.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def run(fn) -> None:
    """fire.Fire(fn), printing the project's own input errors as one paragraph and exit code 1."""
    import fire

    from utils.data import DataError
    from utils.gguf_export import ExportError
    from utils.modeling import ModelLoadError
    from utils.prompter import TemplateError
    from utils.training import TrainingError

    setup_logging()
    try:
        fire.Fire(fn)
    except (DataError, TemplateError, ModelLoadError, TrainingError, ExportError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
