"""Content type detection: binary signatures with puremagic, then a UTF-8 text/CSV/JSON sniff.

The client's file name and declared content type play no part: a PE or ELF executable named
``data.csv`` is rejected because its bytes are neither an allowed binary type nor text.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re

import puremagic

from dukenet.files.errors import UnsupportedFileType
from dukenet.files.models import FileType

HEAD_BYTES = 64 * 1024
"""How much of an upload is read before its type is decided (bytes)."""

CSV_SNIFF_ROWS = 50
"""Rows of a text head examined for a consistent CSV shape."""

CSV_DELIMITERS = (",", "\t", ";", "|")

_BINARY_TYPES = {
    "application/pdf": FileType.PDF,
    "image/png": FileType.PNG,
    "image/jpeg": FileType.JPEG,
}
# C0 controls other than tab, LF, FF, CR, plus DEL: their presence means "binary".
_BINARY_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
# A truncated JSON head fails to parse within a token's length of its end.
_JSON_TRUNCATION_SLACK = 8

ALLOWED_TYPES = ", ".join(t.value for t in FileType)


def detect(head: bytes, *, complete: bool) -> FileType:
    """Return the type of a file from its first bytes (``complete``: ``head`` is all of it).

    Raises:
        UnsupportedFileType: neither PDF, PNG, JPEG nor UTF-8 text.
    """
    binary = _magic_type(head)
    if binary is not None:
        return binary
    text = _decode_text(head, final=complete)
    if text is None:
        raise UnsupportedFileType(f"unsupported file type; allowed: {ALLOWED_TYPES}")
    if _looks_like_json(text, complete=complete):
        return FileType.JSON
    if csv_delimiter(text, complete=complete) is not None:
        return FileType.CSV
    return FileType.TEXT


def _magic_type(head: bytes) -> FileType | None:
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return None
    if not matches:
        return None
    best = max(m.confidence for m in matches)
    for match in matches:
        if match.confidence == best and match.mime_type in _BINARY_TYPES:
            return _BINARY_TYPES[match.mime_type]
    return None


def _decode_text(data: bytes, *, final: bool) -> str | None:
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError:
        return None
    if _BINARY_CONTROL.search(text):
        return None
    return text.removeprefix("\ufeff")


def _looks_like_json(text: str, *, complete: bool) -> bool:
    stripped = text.strip()
    if stripped[:1] not in ("{", "["):
        return False
    try:
        json.loads(stripped)
    except json.JSONDecodeError as exc:
        if complete:
            return False
        # Only the head was read: accept it if parsing failed because the input stopped.
        return exc.msg.startswith("Unterminated string") or (
            exc.pos >= len(stripped) - _JSON_TRUNCATION_SLACK
        )
    return True


def csv_delimiter(text: str, *, complete: bool = True) -> str | None:
    """Return the delimiter that splits ``text`` into ≥ 2 rows of the same width ≥ 2, or None.

    When ``complete`` is False the last row (possibly cut off) is ignored.
    """
    for delimiter in CSV_DELIMITERS:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            rows = list(itertools.islice((row for row in reader if row), CSV_SNIFF_ROWS + 1))
        except csv.Error:
            continue
        if not complete and len(rows) <= CSV_SNIFF_ROWS:
            rows = rows[:-1]
        rows = rows[:CSV_SNIFF_ROWS]
        widths = {len(row) for row in rows}
        if len(rows) >= 2 and len(widths) == 1 and widths.pop() >= 2:
            return delimiter
    return None


class TextCheck:
    """Checks, chunk by chunk, that a whole upload is UTF-8 text without binary controls."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes) -> None:
        """Check the next chunk.

        Raises:
            UnsupportedFileType: the bytes so far are not UTF-8 text.
        """
        self._check(chunk, final=False)

    def finish(self) -> None:
        """Check that the text does not end inside a multi-byte character."""
        self._check(b"", final=True)

    def _check(self, chunk: bytes, *, final: bool) -> None:
        try:
            text = self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            raise UnsupportedFileType("text files must be UTF-8 throughout") from exc
        if _BINARY_CONTROL.search(text):
            raise UnsupportedFileType("text files must not contain binary control characters")
