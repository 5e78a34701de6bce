"""Read a user's documents into normalized pages: PDF (text layer), .txt, .md, .docx, .html, JSONL with `text`.

Each page keeps its file and page number (PDF pages from 1; one page for a text, Markdown, DOCX or HTML file; the
line number for a JSONL record), so an answer can cite where it comes from. Well-kept parsers do the reading:
pypdf, python-docx, BeautifulSoup. A file that cannot be read raises DocumentError naming it; a PDF page without a
text layer (a scan: there is no OCR here) is reported, not silently indexed as nothing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from utils.errors import CornucopiaError
from utils.retrieval.text import normalize

logger = logging.getLogger(__name__)

SUFFIXES = (".pdf", ".txt", ".md", ".docx", ".html", ".htm", ".jsonl")


class DocumentError(CornucopiaError):
    """A file that cannot be read as a document (its name is in the message)."""


@dataclass
class Page:
    file: str
    page: int  # PDF page (from 1), JSONL line, or 1 for a file without pages
    text: str  # normalized (utils.retrieval.text.normalize)


def read_document(path) -> tuple[list[Page], list[str]]:
    """(pages with text, warnings) of one file; DocumentError if nothing can be read from it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentError(f"{path}: unknown kind of document '{suffix or path.name}'; "
                            f"give {', '.join(SUFFIXES)} files")
    if not path.is_file():
        raise DocumentError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DocumentError(f"{path}: the file is empty")
    reader = {".pdf": _pdf, ".docx": _docx, ".html": _html, ".htm": _html, ".jsonl": _jsonl}.get(suffix, _plain)
    pages, warnings = reader(path)
    pages = [p for p in pages if p.text.strip()]
    if not pages:
        raise DocumentError(f"{path}: no text found" + (f" ({warnings[0]})" if warnings else ""))
    return pages, warnings


def _utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DocumentError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                            f"save it as UTF-8 (e.g. iconv -f GBK -t UTF-8)") from None


def _plain(path: Path):
    return [Page(str(path), 1, normalize(_utf8(path)))], []


def _jsonl(path: Path):
    pages, warnings = [], []
    for number, line in enumerate(_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DocumentError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DocumentError(f"{path}: line {number}: field 'text' must be a string")
        pages.append(Page(str(path), number, normalize(record["text"])))
    return pages, warnings


def _pdf(path: Path):
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{path}: the PDF is encrypted with a password; remove the password first")
        pages, empty = [], []
        for number, page in enumerate(reader.pages, start=1):
            text = normalize(page.extract_text() or "")
            if text.strip():
                pages.append(Page(str(path), number, text))
            else:
                empty.append(number)
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, OSError) as err:
        raise DocumentError(f"{path}: not a readable PDF ({str(err).splitlines()[0][:160]})") from None
    except Exception as err:  # pypdf raises assorted errors on damaged files
        if "decrypt" in str(err).lower() or "encrypt" in str(err).lower():
            raise DocumentError(f"{path}: the PDF is encrypted and cannot be opened ({err})") from None
        raise DocumentError(f"{path}: not a readable PDF ({type(err).__name__}: {str(err)[:160]})") from None
    warnings = []
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        warnings.append(f"{path}: {len(empty)} page(s) without a text layer (scanned images: no OCR here), not "
                        f"indexed: page {shown}")
    return pages, warnings


def _docx(path: Path):
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError) as err:
        raise DocumentError(f"{path}: not a readable .docx file ({err})") from None
    except Exception as err:  # a zip that is no Word document
        raise DocumentError(f"{path}: not a readable .docx file ({type(err).__name__}: {err})") from None
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:  # a table is kept as rows, each row one line
        lines += [" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows]
    return [Page(str(path), 1, normalize("\n".join(lines)))], []


def _html(path: Path):
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_utf8(path), "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    for row in soup.find_all("tr"):  # a table row stays one line: cells joined, then a line break
        cells = [c.get_text(" ", strip=True) for c in row.find_all(["td", "th"])]
        row.replace_with(soup.new_string(" | ".join(cells) + "\n"))
    return [Page(str(path), 1, normalize(soup.get_text("\n")))], []


def find_documents(paths) -> list[Path]:
    """Files given, and the documents inside folders given (recursively, sorted); unknown kinds are left to
    read_document to refuse when named directly."""
    found = []
    for item in paths:
        item = Path(item)
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        else:
            found.append(item)
    return found
