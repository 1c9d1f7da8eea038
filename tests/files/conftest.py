"""Fixtures of the files tests: fast password hashing, real sample files, storage listings."""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from matplotlib.figure import Figure
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts.models import User
from dukenet.files import service as files_service
from dukenet.files.storage import local_root
from dukenet.kit.state import AppState
from tests.factories import create_admin, credit, llm_agent, register, submit_task

BOUNDARY = "dukenet-test-boundary"
UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"


def storage_listing(state: AppState) -> list[str]:
    """Every entry of the local storage directory, temporary files included."""
    root = local_root(state.settings)
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def png_bytes(width: int = 3, height: int = 2) -> bytes:
    """A valid grey PNG, written by hand (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = b"".join(b"\x00" + bytes(x % 256 for x in range(width)) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes(width: int = 40, height: int = 30) -> bytes:
    """A real JPEG encoded by Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def pdf_bytes() -> bytes:
    """A real one-page PDF rendered by matplotlib."""
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([1, 2, 3])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="pdf")
    return buffer.getvalue()


def elf_bytes() -> bytes:
    """The start of a 64-bit Linux ELF executable."""
    header = b"\x7fELF\x02\x01\x01" + b"\x00" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x401000, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    return header + b"\x00" * 200 + b"\xc3" * 64


def pe_bytes() -> bytes:
    """The start of a Windows PE executable (MZ stub, PE header)."""
    stub = bytearray(b"MZ" + b"\x90\x00\x03\x00" + b"\x00" * 58)
    stub[0x3C:0x40] = struct.pack("<I", 0x80)
    body = bytes(stub) + b"\x00" * (0x80 - len(stub)) + b"PE\x00\x00" + b"\x64\x86"
    return body + b"\x00" * 300


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, data: bytes
) -> httpx.Response:
    """POST one file as multipart field ``file``."""
    return await client.post("/files", headers=headers, files={"file": (name, data)})


def multipart_envelope(
    disposition: str, *, content_type: str = "application/octet-stream"
) -> tuple[bytes, bytes]:
    """Return the bytes before and after a part's data, for hand-built multipart bodies."""
    before = (
        f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return before, f"\r\n--{BOUNDARY}--\r\n".encode()


class CountingBody:
    """A streamed request body (no Content-Length) that counts how much the server pulled."""

    def __init__(self, name: str, size: int, *, chunk_bytes: int = 64 * 1024, fill: bytes = b"a"):
        self.before, self.after = multipart_envelope(f'form-data; name="file"; filename="{name}"')
        self.size = size
        self.chunk_bytes = chunk_bytes
        self.fill = fill
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.before
        remaining = self.size
        line = (self.fill * 63 + b"\n")[: self.chunk_bytes]
        chunk = (line * (self.chunk_bytes // len(line) + 1))[: self.chunk_bytes]
        while remaining > 0:
            piece = chunk[: min(remaining, self.chunk_bytes)]
            remaining -= len(piece)
            self.sent += len(piece)
            yield piece
        yield self.after

    def request_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``client.post`` sending this body."""
        return {
            "content": self,
            "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        }


def path_of(state: AppState, storage_name: str) -> Path:
    """Where the local storage keeps a blob."""
    return local_root(state.settings) / storage_name


@dataclass
class AssignedTask:
    """A buyer's task assigned to an operator's LLM agent (no runner executes it)."""

    buyer: dict[str, str]
    buyer_user: User
    operator: dict[str, str]
    agent: dict[str, Any]
    task_id: uuid.UUID


@pytest.fixture
async def assigned_task(client: httpx.AsyncClient, state: AppState) -> AssignedTask:
    """One credited buyer, one operator with the market's only agent, one task routed to it."""
    _, admin = await create_admin(state)
    buyer, buyer_headers = await register(client)
    await credit(client, admin, buyer["id"], 1_000_000)
    _, operator = await register(client, role="agent")
    agent = await llm_agent(client, operator, base_url=UNUSED_ENDPOINT, base_price_sat=1_000)
    response = await submit_task(client, buyer_headers)
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["agent_id"] == agent["id"]
    async with state.sessionmaker() as session:
        user = await session.get(User, uuid.UUID(buyer["id"]))
    assert user is not None
    return AssignedTask(buyer_headers, user, operator, agent, uuid.UUID(task["id"]))


async def attach(
    sessionmaker: async_sessionmaker[AsyncSession], task: AssignedTask, *file_ids: str
) -> None:
    """Attach the buyer's files to the task, as the tasks domain will."""
    async with sessionmaker() as session:
        await files_service.attach_to_task(
            session,
            task_id=task.task_id,
            file_ids=[uuid.UUID(f) for f in file_ids],
            owner=task.buyer_user,
        )
        await session.commit()
