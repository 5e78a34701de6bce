"""Write the flag tables of the docs from the entry points' own signatures, so they cannot drift.

    python scripts/flag_tables.py           rewrite every table in docs/zh/*.md and docs/en/*.md
    python scripts/flag_tables.py --check   change nothing; exit 1 naming each table that is stale

A table lives between `<!-- flags:NAME -->` and `<!-- /flags:NAME -->`, NAME being a key of ENTRY_POINTS.
Each row is one parameter of the function: its flag, its default (repr; `auto` for a None whose comment starts
with "None:", i.e. says what None chooses) and the `# comment` on the parameter's line of the source.
"""
from __future__ import annotations

import importlib
import inspect
import io
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# table name: (module, function that run() hands to fire)
ENTRY_POINTS = {
    "finetune": ("finetune", "train"),
    "infer": ("infer", "main"),
    "compare": ("compare", "main"),
    "evaluate": ("evaluate", "main"),
    "merge_lora": ("merge_lora", "main"),
    "extend_vocab": ("extend_vocab", "main"),
    "pretrain": ("pretrain", "train"),
    "serve": ("serve", "main"),
}
TABLE = re.compile(r"(<!-- flags:(\w+) -->\n)(.*?)(<!-- /flags:\2 -->)", re.DOTALL)


def parameter_comments(fn) -> dict[str, str]:
    """{parameter: the comment at the end of its line}; a comment on a line of several goes to the last one."""
    tokens = list(tokenize.generate_tokens(io.StringIO(inspect.getsource(fn)).readline))
    comments = {tok.start[0]: tok.string.lstrip("#").strip() for tok in tokens if tok.type == tokenize.COMMENT}
    names_by_line: dict[int, str] = {}
    depth, previous, in_def = 0, None, False
    for tok in tokens:
        if tok.type == tokenize.NAME and tok.string == "def":
            in_def = True  # decorators above the def have parentheses of their own
        elif not in_def:
            continue
        elif tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
            if depth == 0:
                break  # the end of the parameter list
        elif tok.type == tokenize.NAME and depth == 1 and previous in ("(", ","):
            names_by_line[tok.start[0]] = tok.string
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            previous = tok.string
    return {name: comments[line] for line, name in names_by_line.items() if line in comments}


def render_default(value, note: str) -> str:
    if value is inspect.Parameter.empty:
        return "(required)"
    if value is None and note.startswith("None:"):
        return "auto"
    return f"`{value!r}`"


def flag_table(name: str) -> str:
    module, function = ENTRY_POINTS[name]
    fn = getattr(importlib.import_module(module), function)
    notes = parameter_comments(fn)
    rows = ["| flag | default | notes |", "|---|---|---|"]
    for parameter in inspect.signature(fn).parameters.values():
        note = notes.get(parameter.name, "")
        cell = note.replace("|", r"\|")  # a bare pipe would end the table cell
        rows.append(f"| `--{parameter.name}` | {render_default(parameter.default, note)} | {cell} |")
    return "\n".join(rows) + "\n"


def main(check: bool) -> int:
    tables: dict[str, str] = {}  # each entry point imported and rendered once, however many pages show it
    stale = []
    for page in sorted([*ROOT.glob("docs/zh/*.md"), *ROOT.glob("docs/en/*.md")]):
        text = page.read_text(encoding="utf-8")
        for match in TABLE.finditer(text):
            name = match[2]
            if name not in ENTRY_POINTS:
                print(f"error: {page.relative_to(ROOT)}: unknown flag table '{name}'; known: "
                      f"{', '.join(ENTRY_POINTS)}", file=sys.stderr)
                return 1
            tables.setdefault(name, flag_table(name))
            if match[3] != tables[name]:
                stale.append(f"{page.relative_to(ROOT)}: flags:{name}")
        if not check:
            fresh = TABLE.sub(lambda m: m[1] + tables[m[2]] + m[4], text)
            if fresh != text:
                page.write_text(fresh, encoding="utf-8")
    if stale:
        print(("stale flag tables (run python scripts/flag_tables.py):\n" if check else "rewrote:\n")
              + "\n".join(stale), file=sys.stderr if check else sys.stdout)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
