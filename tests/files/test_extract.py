"""Excerpts for LLM prompts: what each file type gives within a character budget."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dukenet.files.detect import detect
from dukenet.files.extract import MORE_ROWS_MARK, TRUNCATION_MARK, excerpt
from dukenet.files.models import File, FileType
from dukenet.files.storage import LocalStorage
from tests.files.conftest import jpeg_bytes, pdf_bytes, png_bytes


class ReadCountingStorage(LocalStorage):
    """A real local storage that also counts the bytes read back."""

    bytes_read = 0

    async def open_stream(self, name: str) -> AsyncIterator[bytes]:
        inner = await super().open_stream(name)

        async def counted() -> AsyncIterator[bytes]:
            async for chunk in inner:
                self.bytes_read += len(chunk)
                yield chunk

        return counted()


@pytest.fixture
def storage(tmp_path: Path) -> ReadCountingStorage:
    return ReadCountingStorage(tmp_path / "files")


async def stored(storage: LocalStorage, name: str, data: bytes) -> File:
    """Store ``data`` and return its (unsaved) file row, typed by content as an upload is."""

    async def one_chunk() -> AsyncIterator[bytes]:
        yield data

    storage_name = uuid.uuid4().hex
    await storage.put_stream(storage_name, one_chunk())
    return File(
        id=uuid.uuid4(),
        owner_id=uuid.uuid4(),
        name=name,
        content_type=detect(data[:65536], complete=len(data) <= 65536),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_name=storage_name,
    )


CSV = "city,population\n" + "".join(f"City {i},{1000 + i}\n" for i in range(500))


class TestCsv:
    async def test_header_and_first_rows_within_the_budget(
        self, storage: ReadCountingStorage
    ) -> None:
        file = await stored(storage, "cities.csv", CSV.encode())
        assert file.content_type is FileType.CSV
        text = await excerpt(file, storage, 200)
        assert len(text) <= 200
        lines = text.splitlines()
        assert lines[0] == f'File "cities.csv" (CSV, {len(CSV):,} bytes), header and first rows:'
        assert lines[1] == "city,population"
        assert lines[2:4] == ["City 0,1000", "City 1,1001"]
        assert text.endswith(MORE_ROWS_MARK)
        assert storage.bytes_read <= 64 * 1024  # read the beginning, not the whole file

    async def test_a_small_csv_is_shown_whole_with_its_own_delimiter(
        self, storage: ReadCountingStorage
    ) -> None:
        data = "a;b;c\n1;2;3\n4;5;6\n"
        file = await stored(storage, "semi.csv", data.encode())
        text = await excerpt(file, storage, 1_000)
        assert text.splitlines()[1:] == ["a;b;c", "1;2;3", "4;5;6"]
        assert not text.endswith(MORE_ROWS_MARK)

    async def test_quoted_fields_with_newlines_stay_one_row(
        self, storage: ReadCountingStorage
    ) -> None:
        data = 'id,comment\n1,"two\nlines"\n2,plain\n'
        file = await stored(storage, "q.csv", data.encode())
        text = await excerpt(file, storage, 1_000)
        assert text.split("\n", 1)[1] == 'id,comment\n1,"two\nlines"\n2,plain'


class TestJson:
    async def test_small_json_is_pretty_printed(self, storage: ReadCountingStorage) -> None:
        data = json.dumps({"name": "Ada", "tags": ["x", "y"], "n": 1}).encode()
        file = await stored(storage, "p.json", data)
        text = await excerpt(file, storage, 1_000)
        assert text == (
            f'File "p.json" (JSON, {len(data)} bytes):\n'
            '{\n  "name": "Ada",\n  "tags": [\n    "x",\n    "y"\n  ],\n  "n": 1\n}'
        )

    async def test_long_json_is_truncated_with_a_mark(self, storage: ReadCountingStorage) -> None:
        data = json.dumps([{"id": i, "value": "v" * 20} for i in range(2_000)]).encode()
        file = await stored(storage, "big.json", data)
        text = await excerpt(file, storage, 300)
        assert len(text) == 300
        assert text.endswith(TRUNCATION_MARK)
        assert '[\n  {\n    "id": 0,\n    "value": "vvvv' in text

    async def test_json_over_the_parse_limit_falls_back_to_its_raw_beginning(
        self, storage: ReadCountingStorage
    ) -> None:
        data = json.dumps([{"id": i} for i in range(300_000)]).encode()  # ≈ 3 MB
        file = await stored(storage, "huge.json", data)
        assert file.content_type is FileType.JSON
        text = await excerpt(file, storage, 100)
        assert len(text) == 100
        assert '[{"id": 0}, {"id": 1}' in text
        assert storage.bytes_read < 200_000


class TestText:
    async def test_text_within_budget_counts_characters_not_bytes(
        self, storage: ReadCountingStorage
    ) -> None:
        data = ("ünïcödé " * 10_000).encode()
        file = await stored(storage, "u.txt", data)
        text = await excerpt(file, storage, 120)
        assert len(text) == 120
        assert text.startswith(f'File "u.txt" (text, {len(data):,} bytes):\nünïcödé ')
        assert text.endswith(TRUNCATION_MARK)
        assert "\ufffd" not in text

    async def test_short_text_is_returned_whole(self, storage: ReadCountingStorage) -> None:
        file = await stored(storage, "n.txt", b"hello\nworld\n")
        assert await excerpt(file, storage, 500) == 'File "n.txt" (text, 12 bytes):\nhello\nworld\n'


class TestBinary:
    async def test_pdf_png_jpeg_get_a_one_line_description(
        self, storage: ReadCountingStorage
    ) -> None:
        pdf = await stored(storage, "r.pdf", pdf_bytes())
        png = await stored(storage, "p.png", png_bytes(640, 480))
        jpeg = await stored(storage, "j.jpg", jpeg_bytes(40, 30))
        texts = [await excerpt(f, storage, 500) for f in (pdf, png, jpeg)]
        assert all("\n" not in t and t.endswith("no text extracted (no OCR).") for t in texts)
        assert texts[0].startswith(f'File "r.pdf" (PDF document, {pdf.size_bytes:,} bytes), ')
        assert "version 1." in texts[0]
        assert ", 640×480 px;" in texts[1]
        assert ", 40×30 px;" in texts[2]


class TestBudget:
    @pytest.mark.parametrize("budget", [1, 7, 15, 40, 80, 200, 1_000])
    async def test_no_excerpt_exceeds_its_budget(
        self, storage: ReadCountingStorage, budget: int
    ) -> None:
        files = [
            await stored(storage, "c.csv", CSV.encode()),
            await stored(storage, "j.json", json.dumps(list(range(500))).encode()),
            await stored(storage, "t.txt", ("word " * 2_000).encode()),
            await stored(storage, "p.png", png_bytes()),
            await stored(storage, "r.pdf", pdf_bytes()),
        ]
        for file in files:
            text = await excerpt(file, storage, budget)
            assert 0 < len(text) <= budget, (file.name, text)

    async def test_a_zero_budget_gives_nothing(self, storage: ReadCountingStorage) -> None:
        file = await stored(storage, "t.txt", b"text")
        assert await excerpt(file, storage, 0) == ""
