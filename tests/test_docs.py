"""The docs stay whole: every entry point named in both languages, no dead relative link, fresh flag tables."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from conftest import ROOT, run_script

LANGUAGES = {"zh": "README.md", "en": "README_en.md"}
# [text](target) and ![alt](target); an optional "title" after the target is not part of it.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def pages(language: str) -> list[Path]:
    return [ROOT / LANGUAGES[language], *sorted((ROOT / "docs" / language).glob("*.md"))]


def things_to_document() -> list[str]:
    files = [*ROOT.glob("*.py"), *(ROOT / "scripts").glob("*.sh"), *(ROOT / "benchmarks").glob("*.py")]
    return sorted(str(path.relative_to(ROOT)) for path in files)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_entry_script_and_benchmark_is_named_in_each_language(language):
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages(language))
    # A root script is named by its file name, the others with their folder (benchmarks/x.py, scripts/x.sh).
    missing = [name for name in things_to_document() if name not in text]
    assert missing == [], f"not named in the {language} docs: {missing}"


def test_every_relative_link_and_image_resolves():
    dead = []
    for page in [*pages("zh"), *pages("en")]:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)  # code is not links
        for target in LINK.findall(text):
            path = target.split("#", 1)[0]
            if re.match(r"[a-z]+:", target) or not path:
                continue  # http(s), mailto and pure #anchors
            if not (page.parent / path).exists():
                dead.append(f"{page.relative_to(ROOT)}: {target}")
    assert dead == []


def test_the_link_pattern_finds_links_and_images():
    found = LINK.findall('[a](docs/x.md#y) ![b](../chat_page.png "t") [c](https://e.org)')
    assert found == ["docs/x.md#y", "../chat_page.png", "https://e.org"]


def test_both_languages_have_the_same_pages():
    names = {language: sorted(p.name for p in (ROOT / "docs" / language).glob("*.md")) for language in LANGUAGES}
    assert names["zh"] == names["en"] != []


def test_the_flag_tables_match_the_entry_points():
    done = run_script("scripts/flag_tables.py", "--check")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


def example_entry(
    plain: int = 3,
    chosen=None,  # None: picked from the hardware
    unset=None,  # a list | or nothing
    first="a", second=(1, 2),  # said of the last parameter on the line
):
    pass


def test_the_flag_table_reads_defaults_and_comments_from_the_source():
    spec = importlib.util.spec_from_file_location("flag_tables", ROOT / "scripts" / "flag_tables.py")
    flag_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flag_tables)
    notes = flag_tables.parameter_comments(example_entry)
    assert notes == {"chosen": "None: picked from the hardware", "unset": "a list | or nothing",
                     "second": "said of the last parameter on the line"}
    assert flag_tables.render_default(None, notes["chosen"]) == "auto"  # None that the comment calls automatic
    assert flag_tables.render_default(None, notes["unset"]) == "`None`"
    assert flag_tables.render_default("fin_qa", "") == "`'fin_qa'`"
