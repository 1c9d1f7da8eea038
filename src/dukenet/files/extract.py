"""Text excerpts of files for LLM agents, within a character budget.

Only as much of a blob is read as the budget can show (at most 4 bytes per character), except
JSON up to ``JSON_PARSE_MAX_BYTES``, which is parsed whole to be pretty-printed.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import AsyncIterator

import anyio.to_thread

from dukenet.files.detect import csv_delimiter
from dukenet.files.models import File, FileType
from dukenet.files.storage import Storage

TRUNCATION_MARK = "\n…[truncated]"
MORE_ROWS_MARK = "\n…[more rows not shown]"
JSON_PARSE_MAX_BYTES = 2 * 1024 * 1024
"""JSON files up to this size (bytes) are pretty-printed; larger ones are shown as raw text."""

UTF8_MAX_BYTES_PER_CHAR = 4
IMAGE_HEADER_BYTES = 64 * 1024
"""How much of an image is read to find its dimensions (bytes)."""

_LABELS = {
    FileType.CSV: "CSV",
    FileType.JSON: "JSON",
    FileType.TEXT: "text",
    FileType.PDF: "PDF document",
    FileType.PNG: "PNG image",
    FileType.JPEG: "JPEG image",
}
# JPEG start-of-frame markers (they carry the dimensions); C4, C8 and CC are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})


async def excerpt(file: File, storage: Storage, budget_chars: int) -> str:
    """Return what an LLM should see of ``file``, at most ``budget_chars`` characters long.

    CSV: a title line, the header row and as many first rows as fit; JSON: pretty-printed
    (2-space indent) and truncated; plain text: its beginning; PDF, PNG, JPEG: a one-line
    description (type, size in bytes, image dimensions; no text extraction, no OCR). Cut
    text ends with ``TRUNCATION_MARK`` (CSV: ``MORE_ROWS_MARK``).
    """
    if budget_chars <= 0:
        return ""
    title = f'File "{file.name}" ({_LABELS[file.content_type]}, {file.size_bytes:,} bytes)'
    if file.content_type is FileType.CSV:
        return await _csv_excerpt(file, storage, title, budget_chars)
    if file.content_type is FileType.JSON:
        return await _json_excerpt(file, storage, title, budget_chars)
    if file.content_type is FileType.TEXT:
        text, complete = await _read_text(file, storage, budget_chars)
        return fit(f"{title}:\n{text}", budget_chars, truncated=not complete)
    return fit(await _describe_binary(file, storage, title), budget_chars)


def fit(text: str, budget_chars: int, *, truncated: bool = False) -> str:
    """Return ``text`` cut to ``budget_chars`` characters, marked when anything was left out."""
    if len(text) <= budget_chars and not truncated:
        return text
    keep = budget_chars - len(TRUNCATION_MARK)
    if keep <= 0:
        return text[:budget_chars]
    return text[:keep] + TRUNCATION_MARK


async def _read_prefix(storage: Storage, file: File, limit_bytes: int) -> tuple[bytes, bool]:
    """Read the first ``limit_bytes`` of a blob (or all of it); return (bytes, whole file?)."""
    parts: list[bytes] = []
    size = 0
    chunks: AsyncIterator[bytes] = await storage.open_stream(file.storage_name)
    try:
        async for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= limit_bytes:
                break
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    data = b"".join(parts)[:limit_bytes]
    return data, len(data) >= file.size_bytes


def _decode(data: bytes, *, final: bool) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final=final).removeprefix("\ufeff")


async def _read_text(file: File, storage: Storage, budget_chars: int) -> tuple[str, bool]:
    data, complete = await _read_prefix(
        storage, file, budget_chars * UTF8_MAX_BYTES_PER_CHAR + UTF8_MAX_BYTES_PER_CHAR
    )
    return _decode(data, final=complete), complete


async def _csv_excerpt(file: File, storage: Storage, title: str, budget_chars: int) -> str:
    text, complete = await _read_text(file, storage, budget_chars)
    delimiter = csv_delimiter(text, complete=complete) or ","
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]
    except csv.Error:
        rows = []
    if not complete:
        rows = rows[:-1]  # the last row may be cut off
    heading = f"{title}, header and first rows:"
    lines: list[str] = []
    used = len(heading)
    omitted = not complete
    for row in rows:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerow(row)
        line = buffer.getvalue().removesuffix("\n")
        if used + 1 + len(line) + len(MORE_ROWS_MARK) > budget_chars:
            omitted = True
            break
        lines.append(line)
        used += 1 + len(line)
    if not lines:  # not even the header fits: show the raw beginning instead
        return fit(f"{title}:\n{text}", budget_chars, truncated=True)
    out = "\n".join([heading, *lines])
    return out + MORE_ROWS_MARK if omitted else out


def _pretty_json(data: bytes) -> str | None:
    try:
        value = json.loads(_decode(data, final=True))
    except ValueError:
        return None
    return json.dumps(value, indent=2, ensure_ascii=False)


async def _json_excerpt(file: File, storage: Storage, title: str, budget_chars: int) -> str:
    if file.size_bytes <= JSON_PARSE_MAX_BYTES:
        data, _ = await _read_prefix(storage, file, file.size_bytes)
        pretty = await anyio.to_thread.run_sync(_pretty_json, data)
        if pretty is not None:
            return fit(f"{title}:\n{pretty}", budget_chars)
    text, complete = await _read_text(file, storage, budget_chars)
    return fit(f"{title}:\n{text}", budget_chars, truncated=not complete)


async def _describe_binary(file: File, storage: Storage, title: str) -> str:
    data, _ = await _read_prefix(storage, file, IMAGE_HEADER_BYTES)
    details = ""
    size: tuple[int, int] | None = None
    if file.content_type is FileType.PNG:
        size = png_size(data)
    elif file.content_type is FileType.JPEG:
        size = jpeg_size(data)
    elif file.content_type is FileType.PDF and data.startswith(b"%PDF-"):
        version = data[5:8].decode("ascii", errors="replace")
        details = f", version {version}"
    if size is not None:
        details = f", {size[0]}×{size[1]} px"
    return f"{title}{details}; binary content, no text extracted (no OCR)."


def png_size(data: bytes) -> tuple[int, int] | None:
    """Return (width, height) in pixels from a PNG's IHDR chunk, or None."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Return (width, height) in pixels from a JPEG's start-of-frame segment, or None."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None
