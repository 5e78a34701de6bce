"""The IE package's error: a malformed corpus line or record, named by file, line and field."""
from __future__ import annotations

from utils.errors import CornucopiaError


class IEError(CornucopiaError, ValueError):
    """A corpus file that cannot be converted; the message names the file, the line and the field."""


def where(path, line: int | None = None, field: str | None = None) -> str:
    """`path: line 3: field 'spo_list[0].object'` - the prefix of every IE input error."""
    text = str(path)
    if line is not None:
        text += f": line {line}"
    if field:
        text += f": field '{field}'"
    return text
