"""`python -m utils.data check PATH [--tokenizer BASE --cutoff_len N] [--as_of D --max_age_days N]`: the data checker's command line."""
from __future__ import annotations

import sys

from utils.cli import parse_bool, run
from utils.data.check import NEAR_DUPLICATE_THRESHOLD, check_file
from utils.loading import load_tokenizer
from utils.prompter import Prompter
from utils.settings import CUTOFF_LEN, PROMPT_TEMPLATE


def check(path: str, tokenizer: str = "", cutoff_len: int = CUTOFF_LEN, prompt_template: str = PROMPT_TEMPLATE,
          threshold: float = NEAR_DUPLICATE_THRESHOLD, require_output=True, as_of: str = "", max_age_days: int = None):
    """Check PATH (JSON list, JSON Lines or CSV); with --tokenizer BASE also lengths and truncation.

    Prints every problem and a summary (with the oldest `as_of` dates); exits 1 when any record is unusable.
    --max_age_days N lists, as warnings, the records whose as_of is more than N days before --as_of (default today).
    """
    tok = load_tokenizer(tokenizer) if tokenizer else None
    prompter = Prompter(prompt_template, tok) if tok is not None else None
    report = check_file(path, tok, prompter, cutoff_len, parse_bool(require_output, "require_output"), threshold,
                        as_of=as_of, max_age_days=max_age_days)
    print(report.render())
    if report.unusable:
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["check"]:  # `check` names the command; the checker is the only one
        del sys.argv[1]
    run(check)
