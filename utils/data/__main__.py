"""`python -m utils.data check PATH [--tokenizer BASE --cutoff_len N] [--as_of D --max_age_days N]`: the data checker's command line."""
from __future__ import annotations

import sys

from utils.cli import bool_flags, run
from utils.data.check import NEAR_DUPLICATE_THRESHOLD, check_file
from utils.data.mixing import mix, parse_data_path
from utils.loading import load_tokenizer
from utils.prompter import Prompter
from utils.settings import CUTOFF_LEN, PROMPT_TEMPLATE


@bool_flags
def check(path: str, tokenizer: str = "", cutoff_len: int = CUTOFF_LEN, prompt_template: str = PROMPT_TEMPLATE,
          threshold: float = NEAR_DUPLICATE_THRESHOLD, require_output=True, as_of: str = "", max_age_days: int = None,
          seed: int = 42):
    """Check PATH (JSON list, JSON Lines or CSV); with --tokenizer BASE also lengths and truncation.

    PATH may be a mix as finetune.py's --data_path takes it (a.json,b.json:N,c.json:W): each file is checked,
    then what the mix draws from each with --seed is shown.
    Prints every problem and a summary (with the oldest `as_of` dates); exits 1 when any record is unusable.
    --max_age_days N lists, as warnings, the records whose as_of is more than N days before --as_of (default today).
    """
    tok = load_tokenizer(tokenizer) if tokenizer else None
    prompter = Prompter(prompt_template, tok) if tok is not None else None
    items = parse_data_path(path)
    reports = [check_file(item.path, tok, prompter, cutoff_len, require_output,
                          threshold, as_of=as_of, max_age_days=max_age_days) for item in items]
    print("\n\n".join(report.render() for report in reports))
    unusable = any(report.unusable for report in reports)
    if not unusable and (len(items) > 1 or items[0].count is not None or items[0].weight is not None):
        records, info = mix([(item, report.rows) for item, report in zip(items, reports)], seed)
        print(f"\nmix (seed {seed}): " + ", ".join(f"{i['path']} {i['used']} of {i['records_in_file']}" for i in info)
              + f" -> {len(records)} records")
    if unusable:
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["check"]:  # `check` names the command; the checker is the only one
        del sys.argv[1]
    run(check)
