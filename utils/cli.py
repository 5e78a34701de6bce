"""The command-line layer under the fire entry scripts: logging, flag parsing, clean errors.

Only entry scripts (and `__main__` modules) import this; library modules raise
CornucopiaError subclasses and never print or exit themselves.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import warnings

import fire

from utils.errors import CornucopiaError, UsageError


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
    raise UsageError(f"--{flag} expects True or False, got {value!r}")


def bool_flags(fn):
    """Parse FN's yes/no flags once, for every caller: fire hands `--flag=false` over as the string "false".

    A yes/no flag is a parameter whose default is True or False, or one annotated `bool | None` (None = decide
    automatically). Anything but a recognisable yes or no is a UsageError naming the flag.
    """
    signature = inspect.signature(fn)
    names = [name for name, p in signature.parameters.items()
             if isinstance(p.default, bool) or str(p.annotation).replace(" ", "") in ("bool|None", "bool")]

    @functools.wraps(fn)
    def parsed(*args, **kwargs):
        bound = signature.bind_partial(*args, **kwargs)
        for name in names:
            if bound.arguments.get(name) is not None:
                bound.arguments[name] = parse_bool(bound.arguments[name], name)
        return fn(*bound.args, **bound.kwargs)

    return parsed


def renamed(value, old_value, old: str, new: str):
    """One flag per idea: a value given under the flag's old spelling wins (a user typed it), with a line saying so."""
    if old_value in (None, ""):
        return value
    logging.getLogger("cli").warning("--%s is the old spelling of --%s: it still works, but use --%s", old, new, new)
    return old_value


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
    # bitsandbytes warns on every 8-bit matmul on CPU that it casts inputs to float16.
    warnings.filterwarnings("ignore", message=".*inputs will be cast from.*")
    # peft still calls a transformers method that transformers 5 renamed; harmless.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated.*")


def run(fn) -> None:
    """fire.Fire(fn); the project's own errors become one `error: ...` paragraph and exit status 1."""
    setup_logging()
    try:
        fire.Fire(fn)
    except CornucopiaError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
