"""The project's one base error: every module's input or usage error derives from it.

The command-line layer (utils/cli.py) turns a CornucopiaError into a one-line
`error: ...` and exit status 1; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class CornucopiaError(Exception):
    """Bad input or an unusable combination of settings; the message names the file, record or flag."""


class UsageError(CornucopiaError, ValueError):
    """A flag's value or a combination of flags that cannot work."""
