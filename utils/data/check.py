"""Check a data file before a long run: what is wrong with each record, duplicates, lengths, topics.

    python -m utils.data check instruction_data/fin_data.json --tokenizer base_models/SmolLM2-135M-Instruct

Reports every unusable record (invalid JSON with line and column, missing, empty or
non-string fields), exact and near duplicates, records that --cutoff_len would
truncate and by how much, counts per topic, token-length percentiles and the oldest
`as_of` dates. Exits 1 when any record is unusable. finetune.py runs the same checks
before it loads a model.

`as_of` (optional, YYYY-MM-DD) is the date on which the rules a record's answer states
were in force - normally the date the newest of them took effect. Rules change (rates,
limits, fees, tax standards), so `--as_of D --max_age_days N` lists, as warnings, the
records whose as_of lies more than N days before D: the ones to re-check first.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from utils.data.records import Problem, Row, check_rows, raise_if_unusable
from utils.data.tokenize import IGNORE_INDEX, tokenize_record
from utils.errors import UsageError
from utils.settings import CUTOFF_LEN

logger = logging.getLogger(__name__)

# Two questions whose instruction+input share at least this share of character 5-grams
# (Jaccard) are near duplicates: at 0.8 they differ by little more than punctuation or a word.
NEAR_DUPLICATE_THRESHOLD = 0.8
NGRAM = 5
# How many of the oldest as_of dates the report names.
OLDEST_SHOWN = 3
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def char_ngrams(text: str, n: int = NGRAM) -> frozenset[str]:
    # White space, punctuation (？ or ?) and case do not make two questions different.
    text = "".join(c for c in text.lower() if not c.isspace() and not unicodedata.category(c).startswith("P"))
    return frozenset(text[i:i + n] for i in range(max(1, len(text) - n + 1)))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def question_text(record: dict) -> str:
    # An IE record's instruction is a generated schema listing; its sentence (input) is what can repeat.
    if record.get("task"):
        return record.get("input", "")
    return "\n".join([record["instruction"], record.get("input", "")])


def same_sentence_other_question(a: dict, b: dict) -> bool:
    """Two IE records about one sentence (a large schema is asked in groups, or another task asks it): intended."""
    return bool(a.get("task")) and bool(b.get("task")) and a.get("input") == b.get("input")


def duplicate_problems(path, rows: list[Row], threshold: float = NEAR_DUPLICATE_THRESHOLD) -> list[Problem]:
    """Exact duplicates (same history, question and input) and near duplicates of the question."""
    problems, first_seen = [], {}
    grams = [char_ngrams(question_text(row.raw)) for row in rows]
    for k, row in enumerate(rows):
        key = (str(row.raw.get("history")), row.raw["instruction"].strip(), row.raw["input"].strip())
        if key in first_seen:
            problems.append(Problem(str(path), row.number, row.line,
                                    f"exact duplicate of record {first_seen[key]} (same instruction and input)",
                                    fatal=False))
            continue
        first_seen[key] = row.number
        for j in range(k):
            if same_sentence_other_question(row.raw, rows[j].raw):
                continue
            # Jaccard >= t needs the smaller set to be at least t times the larger one.
            small, large = sorted((len(grams[k]), len(grams[j])))
            if small < threshold * large:
                continue
            score = jaccard(grams[k], grams[j])
            if score >= threshold:  # an exact duplicate of an earlier record was reported above
                problems.append(Problem(str(path), row.number, row.line,
                                        f"near duplicate of record {rows[j].number} (character {NGRAM}-gram "
                                        f"Jaccard {score:.2f} >= {threshold})", fatal=False))
                break
    return problems


def length_problems(path, rows: list[Row], prompter, tokenizer, cutoff_len: int) -> tuple[list[Problem], list[int]]:
    """Records that --cutoff_len cuts (and by how much), and every record's token length."""
    problems, lengths = [], []
    for row in rows:
        tokens = tokenize_record(row.raw, prompter, tokenizer, None)
        n = len(tokens["input_ids"])
        lengths.append(n)
        if n <= cutoff_len:
            continue
        prompt_tokens = next(i for i, label in enumerate(tokens["labels"]) if label != IGNORE_INDEX)
        if prompt_tokens >= cutoff_len:
            problems.append(Problem(str(path), row.number, row.line,
                                    f"the prompt alone has {prompt_tokens} tokens, at least --cutoff_len {cutoff_len}: "
                                    f"nothing of the answer would be learned"))
        else:
            problems.append(Problem(str(path), row.number, row.line,
                                    f"would be truncated at --cutoff_len {cutoff_len}: {n} tokens, {n - cutoff_len} "
                                    f"cut from the end of the answer", fatal=False))
    return problems, lengths


def parse_day(value, what: str) -> date:
    """A date given as YYYY-MM-DD (a datetime.date passes through); UsageError naming `what` otherwise."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise UsageError(f"{what} expects a date YYYY-MM-DD, got {value!r}") from None


def as_of_problems(path, rows: list[Row], reference: date | None = None,
                   max_age_days: int | None = None) -> tuple[list[Problem], list[tuple[date, int]]]:
    """Malformed or future `as_of` values, and (with max_age_days) records dated more than that before reference.

    Returns the problems (all warnings: training ignores the field) and (date, record number) for every dated record.
    """
    problems, dated = [], []
    today = date.today()
    for row in rows:
        value = row.raw.get("as_of")
        if value is None:
            continue
        day = None
        if isinstance(value, str) and ISO_DATE.fullmatch(value.strip()):
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                pass
        if day is None:
            problems.append(Problem(str(path), row.number, row.line,
                                    f"field 'as_of' must be a date YYYY-MM-DD, got {value!r}", fatal=False))
            continue
        dated.append((day, row.number))
        if day > today:
            problems.append(Problem(str(path), row.number, row.line,
                                    f"as_of {day} is in the future (today is {today})", fatal=False))
        elif max_age_days is not None and (reference - day).days > max_age_days:
            problems.append(Problem(str(path), row.number, row.line,
                                    f"as_of {day} is {(reference - day).days} days before {reference} (more than "
                                    f"--max_age_days {max_age_days}): check that the rules it states still apply",
                                    fatal=False))
    return problems, dated


# A year the answer names ("2025年"); one after 至/到 is an end date ("延续至2027年"), which may lie ahead.
NAMED_YEAR = re.compile(r"(?<![至到\d])((?:19|20)\d\d)年")


def later_year_problems(path, rows: list[Row], today: date | None = None) -> list[Problem]:
    """Answers that name a year after their own as_of: the answer states something newer than its date says.

    Years after this one are left out: those are dates a rule looks ahead to (a phase-in until 2030), not news.
    """
    this_year = (today or date.today()).year
    problems = []
    for row in rows:
        value, answer = row.raw.get("as_of"), row.raw.get("output")
        if not isinstance(value, str) or not ISO_DATE.fullmatch(value.strip()) or not isinstance(answer, str):
            continue
        year = int(value.strip()[:4])
        later = sorted({int(y) for y in NAMED_YEAR.findall(answer) if year < int(y) <= this_year})
        if later:
            problems.append(Problem(str(path), row.number, row.line,
                                    f"the answer names {', '.join(f'{y}年' for y in later)}, after its as_of {value}: "
                                    f"update as_of to the date of the newest rule it states", fatal=False))
    return problems


def percentiles(values: list[int], points=(50, 90, 99, 100)) -> dict[int, int]:
    ordered = sorted(values)
    return {p: ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] for p in points} if ordered else {}


@dataclass
class Report:
    path: str
    rows: list[Row]
    problems: list[Problem]
    topics: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=list)
    dated: list[tuple[date, int]] = field(default_factory=list)  # (as_of, record number)

    def oldest(self, n: int = OLDEST_SHOWN) -> list[tuple[date, list[int]]]:
        """The n oldest as_of dates, each with the numbers of the records that carry it."""
        by_day: dict[date, list[int]] = {}
        for day, number in sorted(self.dated):
            by_day.setdefault(day, []).append(number)
        return list(by_day.items())[:n]

    @property
    def unusable(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]

    def render(self) -> str:
        lines = [f"{self.path}: {len(self.rows)} usable record(s), {len(self.unusable)} unusable problem(s), "
                 f"{len(self.problems) - len(self.unusable)} warning(s)"]
        lines += [("ERROR   " if p.fatal else "WARNING ") + str(p) for p in self.problems]
        if self.topics:
            lines.append("records per topic: " + ", ".join(f"{t} {n}" for t, n in self.topics.most_common()))
        kinds = Counter("multi-turn" if r.raw.get("history") else "with input" if r.raw["input"] else "plain"
                        for r in self.rows)
        lines.append("records by kind: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
        if self.dated:
            shown = "; ".join(f"{day} (record{'s' if len(numbers) > 1 else ''} "
                              f"{', '.join(map(str, numbers[:5]))}{', ...' if len(numbers) > 5 else ''})"
                              for day, numbers in self.oldest())
            lines.append(f"records with as_of: {len(self.dated)} of {len(self.rows)}; oldest: {shown}")
        if self.lengths:
            lines.append("tokens per record: " + ", ".join(f"p{p} {v}" for p, v in percentiles(self.lengths).items())
                         + f", total {sum(self.lengths)}")
        return "\n".join(lines)


def check_file(path, tokenizer=None, prompter=None, cutoff_len: int = CUTOFF_LEN, require_output: bool = True,
               threshold: float = NEAR_DUPLICATE_THRESHOLD, as_of=None, max_age_days: int | None = None) -> Report:
    """All the checks on one file; file-level faults (an empty file, a broken JSON list) raise DataError.

    With max_age_days, records whose `as_of` is more than that many days before `as_of` (default: today) are
    listed as warnings.
    """
    if max_age_days is not None and (isinstance(max_age_days, bool) or not isinstance(max_age_days, int)
                                     or max_age_days < 0):
        raise UsageError(f"--max_age_days expects a whole number of days >= 0, got {max_age_days!r}")
    if as_of not in (None, "") and max_age_days is None:
        raise UsageError("--as_of gives the date to measure from; add --max_age_days N to list records older than that")
    reference = parse_day(as_of, "--as_of") if as_of not in (None, "") else date.today()
    rows, problems = check_rows(path, require_output)
    problems += duplicate_problems(path, rows, threshold)
    dating, dated = as_of_problems(path, rows, reference, max_age_days)
    problems += dating + later_year_problems(path, rows)
    lengths = []
    if tokenizer is not None:
        more, lengths = length_problems(path, rows, prompter, tokenizer, cutoff_len)
        problems += more
    problems.sort(key=lambda p: (p.number or 0, p.line or 0))
    topics = Counter(str(row.raw["topic"]) for row in rows if row.raw.get("topic"))
    return Report(str(path), rows, problems, topics, lengths, dated)


def load_checked_records(path) -> list[dict]:
    """finetune.py's data loading: unusable records stop the run, duplicates are logged as warnings.

    Truncation is left to utils.data.build_dataset, which tokenizes anyway.
    """
    report = check_file(path)
    raise_if_unusable(path, report.problems)
    warnings = [p for p in report.problems if not p.fatal]
    for problem in warnings[:10]:
        logger.warning("%s", problem)
    if len(warnings) > 10:
        logger.warning("... and %d more warnings: run `python -m utils.data check %s`", len(warnings) - 10, path)
    return [row.raw for row in report.rows]
