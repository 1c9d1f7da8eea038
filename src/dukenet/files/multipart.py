"""A streaming ``multipart/form-data`` reader: yields one file part's bytes as they arrive.

Starlette's form parser spools a whole upload to a temporary file before the endpoint runs;
this reader drives python-multipart's push parser from the raw request stream instead, so an
upload is checked (size, type) and written to storage chunk by chunk, and an oversize body is
refused as soon as it crosses the limit.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from dukenet.errors import BadRequest
from dukenet.files.errors import MalformedUpload, PayloadTooLarge

MAX_PART_HEADERS = 8
MAX_HEADER_BYTES = 4096

_PARAM = re.compile(rb';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)
# What browsers and httpx percent-encode in a quoted ``filename`` (HTML5): controls and '"'.
_HTML5_ESCAPE = re.compile(rb"%(0[0-9A-Fa-f]|1[0-9A-Fa-f]|22|7[Ff])")

Event = tuple[str, bytes]


def parse_content_disposition(value: bytes) -> dict[str, bytes | str]:
    """Return the parameters of a part's ``Content-Disposition`` header.

    ``name`` is bytes; ``filename`` is the client's name decoded as UTF-8 (``filename*`` per
    RFC 5987 wins over ``filename``), with HTML5's ``%22``/``%0A``-style escapes undone and
    nothing else changed: path separators and NUL bytes stay for the caller to refuse.

    Raises:
        BadRequest: the file name is not valid UTF-8 (or its declared charset).
    """
    params: dict[bytes, bytes] = {}
    for match in _PARAM.finditer(value):
        raw = match.group(2).strip()
        if raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2:
            raw = _QUOTED_PAIR.sub(rb"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
    result: dict[str, bytes | str] = {}
    if b"name" in params:
        result["name"] = params[b"name"]
    try:
        if b"filename*" in params:
            charset, _, rest = params[b"filename*"].partition(b"'")
            _, _, encoded = rest.partition(b"'")
            result["filename"] = unquote_to_bytes(encoded).decode(charset.decode() or "utf-8")
        elif b"filename" in params:
            unescaped = _HTML5_ESCAPE.sub(
                lambda m: bytes([int(m.group(1), 16)]), params[b"filename"]
            )
            result["filename"] = unescaped.decode("utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadRequest("the file name is not valid UTF-8") from exc
    return result


class MultipartFilePart:
    """The one file part of a streamed ``multipart/form-data`` body.

    Use: ``part = await MultipartFilePart.open(...)``, read ``part.filename`` (only headers have
    been read so far), then iterate ``part.chunks()``. The iteration ends only after the whole
    body was parsed to its closing boundary, so a truncated upload raises instead of ending.
    """

    def __init__(self, stream: AsyncIterator[bytes], boundary: bytes, max_body_bytes: int) -> None:
        self._stream = stream
        self._max_body_bytes = max_body_bytes
        self._received = 0
        self._events: deque[Event] = deque()
        self._exhausted = False
        self._ended = False
        self._field = b""
        self.filename = ""
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": lambda: self._events.append(("part_begin", b"")),
                "on_header_field": lambda d, s, e: self._events.append(("header_field", d[s:e])),
                "on_header_value": lambda d, s, e: self._events.append(("header_value", d[s:e])),
                "on_header_end": lambda: self._events.append(("header_end", b"")),
                "on_headers_finished": lambda: self._events.append(("headers_finished", b"")),
                "on_part_data": lambda d, s, e: self._events.append(("data", d[s:e])),
                "on_part_end": lambda: self._events.append(("part_end", b"")),
                "on_end": lambda: self._events.append(("end", b"")),
            },
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_HEADER_BYTES,
        )

    @classmethod
    async def open(
        cls, stream: AsyncIterator[bytes], content_type: str, *, field: str, max_body_bytes: int
    ) -> MultipartFilePart:
        """Read ``stream`` up to the headers of the file part named ``field``.

        ``max_body_bytes`` bounds the whole request body (bytes).

        Raises:
            MalformedUpload: not multipart, broken, or without a file part named ``field``.
            PayloadTooLarge: the body crossed ``max_body_bytes``.
        """
        media_type, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if media_type != b"multipart/form-data" or not boundary:
            raise MalformedUpload("expected a multipart/form-data body with a boundary")
        part = cls(stream, boundary, max_body_bytes)
        part._field = field.encode()
        await part._find_file_part()
        return part

    async def _next_event(self) -> Event | None:
        while not self._events:
            if self._exhausted:
                return None
            try:
                chunk = await anext(self._stream)
            except StopAsyncIteration:
                self._exhausted = True
                self._parse(None)
                continue
            self._received += len(chunk)
            if self._received > self._max_body_bytes:
                raise PayloadTooLarge(f"the request body exceeds {self._max_body_bytes} bytes")
            self._parse(chunk)
        event = self._events.popleft()
        if event[0] == "end":
            self._ended = True
        return event

    def _parse(self, chunk: bytes | None) -> None:
        try:
            if chunk is None:
                self._parser.finalize()
            elif chunk:
                self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedUpload(f"malformed multipart body: {exc}") from exc

    async def _part_headers(self) -> dict[bytes, bytes]:
        """Collect the current part's headers (lower-cased names) up to ``headers_finished``."""
        headers: dict[bytes, bytes] = {}
        name, value = b"", b""
        while (event := await self._next_event()) is not None:
            kind, data = event
            if kind == "header_field":
                name += data
            elif kind == "header_value":
                value += data
            elif kind == "header_end":
                headers[name.lower()] = value
                name, value = b"", b""
            elif kind == "headers_finished":
                return headers
        raise MalformedUpload("the multipart body ends inside a part's headers")

    async def _find_file_part(self) -> None:
        while (event := await self._next_event()) is not None:
            if event[0] != "part_begin":
                continue  # data of a part we skip
            headers = await self._part_headers()
            params = parse_content_disposition(headers.get(b"content-disposition", b""))
            if params.get("name") == self._field and "filename" in params:
                self.filename = str(params["filename"])
                return
        raise MalformedUpload(f"no file part named {self._field.decode()!r}")

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the file part's bytes as they arrive, then read the body to its end.

        Raises:
            MalformedUpload: the body is truncated or holds a second file part ``field``.
            PayloadTooLarge: the body crossed ``max_body_bytes``.
        """
        while True:
            event = await self._next_event()
            if event is None:
                raise MalformedUpload("the multipart body ends inside the file part")
            kind, data = event
            if kind == "data":
                if data:
                    yield data
            elif kind == "part_end":
                break
        while (event := await self._next_event()) is not None:
            if event[0] == "part_begin":
                headers = await self._part_headers()
                params = parse_content_disposition(headers.get(b"content-disposition", b""))
                if params.get("name") == self._field:
                    raise MalformedUpload(f"send one file per request in {self._field.decode()!r}")
        if not self._ended:
            raise MalformedUpload("the multipart body has no closing boundary")
