"""Text as people typed it, and chunks that never cut a sentence.

Text pulled out of Chinese PDFs often carries look-alike code points: Kangxi radicals (⾦ U+2FA6 for 金), CJK radical
supplement forms (⻓ U+2ED3 for 长), compatibility ideographs (U+F900-U+FAFF), full-width letters and digits (Ａ１).
A question typed on a keyboard has the ordinary characters, so documents and questions are normalized the same way:
NFKC (which maps Kangxi radicals, compatibility ideographs and full-width forms) plus the radical-supplement forms
NFKC leaves alone, control and zero-width characters dropped, spaces collapsed and dropped between Chinese
characters (PDF extraction puts them between glyphs). Chinese full-width punctuation (，。！？；：) is kept: NFKC would turn it into
ASCII, which reads wrong in a Chinese passage and would hide sentence ends.
"""
from __future__ import annotations

import re
import unicodedata

# CJK Radicals Supplement forms that stand for an ordinary character (not mapped by NFKC).
RADICAL_SUPPLEMENT = dict(zip(
    "⺁⺇⺊⺌⺎⺏⺐⺒⺓⺔⺖⺗⺘⺙⺛⺜⺝⺞⺠⺡⺢⺣⺤⺦⺧⺨⺩⺪⺫⺬⺭⺮⺯⺰⺶⺹⺺⺻⺼⺽⺾⻁⻂⻃⻄⻅⻆⻇⻈⻉⻊⻋⻌⻏⻐⻑⻓⻔⻖⻗⻘⻙⻚⻛⻜⻝⻠⻡⻢⻣⻤⻥⻦⻧⻨⻩⻪⻬⻮⻰⻳",
    "厂几卜小兀尣尢巳幺彐忄心扌攵旡日月歺民氵氺灬爫丬牛犭王疋罒示礻竹糸纟羊耂肀聿肉臼艹虎衤覀西见角角讠贝足车辶阝钅長长门阝雨青韦页风飞食饣首马骨鬼鱼鸟卤麦黄黾齐齿龙龟"))
# Full-width punctuation that belongs in Chinese text and must survive NFKC.
KEEP = set("，。！？；：、（）【】《》“”‘’…—")
SENTENCE_END = "。！？；!?;"
SPACES = re.compile(r"[ \t\u3000\u00a0]+")
# A space between two Chinese characters is an artefact of PDF text extraction (glyphs placed one by one).
CJK = "\u2e80-\u2fdf\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
SPACE_IN_CJK = re.compile(f"(?<=[{CJK}]) (?=[{CJK}])")


def normalize(text: str) -> str:
    """The same characters a keyboard gives: NFKC and radical forms mapped, Chinese punctuation kept, spaces collapsed."""
    out = []
    for ch in text.replace("\r\n", "\n").replace("\r", "\n"):
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf"):
            continue  # NULs and zero-width marks some PDF text layers carry between glyphs
        if ch in KEEP:
            out.append(ch)
        elif ch in RADICAL_SUPPLEMENT:
            out.append(RADICAL_SUPPLEMENT[ch])
        else:
            out.append(unicodedata.normalize("NFKC", ch))
    lines = (SPACE_IN_CJK.sub("", SPACES.sub(" ", line)).strip()
             for line in "".join(out).split("\n"))
    return "\n".join(lines)


def sentences(text: str) -> list[str]:
    """Sentences ending at 。！？；(and their ASCII forms) or at a line break; a table row (a line) stays whole."""
    pieces = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        start = 0
        for k, ch in enumerate(line):
            # a closing quote or bracket right after the end mark belongs to the sentence
            if ch in SENTENCE_END and not (k + 1 < len(line) and line[k + 1] in "”’）)」』"):
                pieces.append(line[start:k + 1])
                start = k + 1
            elif ch in "”’）)」』" and k > 0 and line[k - 1] in SENTENCE_END:
                pieces.append(line[start:k + 1])
                start = k + 1
        if line[start:].strip():
            pieces.append(line[start:])
    return [p.strip() for p in pieces if p.strip()]


def chunk_sentences(parts: list[str], chunk_chars: int, overlap: int) -> list[tuple[int, int]]:
    """Chunks as (first sentence, end sentence) index ranges: whole sentences up to `chunk_chars` characters, each
    chunk starting with the last sentences of the one before that fit in `overlap` characters. A sentence longer than
    `chunk_chars` is a chunk of its own (cut only then, by split_long)."""
    chunks, start = [], 0
    while start < len(parts):
        end, size = start, 0
        while end < len(parts) and (end == start or size + len(parts[end]) <= chunk_chars):
            size += len(parts[end])
            end += 1
        chunks.append((start, end))
        if end >= len(parts):
            break
        back, kept = end, 0  # step back over whole sentences that fit in the overlap, but always move forward
        while back - 1 > start and kept + len(parts[back - 1]) <= overlap:
            back -= 1
            kept += len(parts[back])
        start = back
    return chunks


def split_long(sentence: str, chunk_chars: int, overlap: int) -> list[str]:
    """A single sentence longer than a chunk, cut into windows of `chunk_chars` with `overlap`."""
    step = max(1, chunk_chars - overlap)
    return [sentence[k:k + chunk_chars] for k in range(0, max(1, len(sentence) - overlap), step)]


def chunk_text(text: str, chunk_chars: int = 300, overlap: int = 60) -> list[tuple[str, int, int]]:
    """(chunk, start offset, end offset) over TEXT (already normalized): sentence-aligned chunks of about
    `chunk_chars` characters; the offsets say where in TEXT each chunk lies."""
    if chunk_chars < 20 or not 0 <= overlap < chunk_chars:
        raise ValueError(f"chunk_chars must be at least 20 and overlap from 0 to below it, got {chunk_chars}, {overlap}")
    spans, cursor = [], 0
    for sentence in sentences(text):
        begin = text.find(sentence, cursor)
        begin = cursor if begin < 0 else begin
        cursor = begin + len(sentence)
        if len(sentence) > chunk_chars:
            offset = begin
            for piece in split_long(sentence, chunk_chars, overlap):
                at = text.find(piece, offset)
                spans.append((piece, at, at + len(piece)))
                offset = at + max(1, len(piece) - overlap)
        else:
            spans.append((sentence, begin, cursor))
    chunks = []
    for first, end in chunk_sentences([s for s, _, _ in spans], chunk_chars, overlap):
        start_offset, end_offset = spans[first][1], spans[end - 1][2]
        chunks.append((text[start_offset:end_offset], start_offset, end_offset))
    return chunks
