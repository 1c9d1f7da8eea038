"""The storage backends behind one interface: the local directory, and the obstore adapter on
obstore's LocalStore and MemoryStore (the S3 code path minus the network; no bucket here)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import obstore
import pytest
from obstore.store import LocalStore, MemoryStore

from dukenet.config import Settings
from dukenet.files.storage import (
    LocalStorage,
    ObjectStoreStorage,
    Storage,
    check_name,
    storage_from_settings,
)
from tests.factories import register
from tests.files.conftest import CountingBody, png_bytes, upload

BACKENDS = ["local", "obstore-local", "obstore-memory"]


def make_storage(kind: str, root: Path) -> Storage:
    """A fresh storage of one kind; local kinds keep their files under ``root``."""
    if kind == "local":
        return LocalStorage(root)
    if kind == "obstore-local":
        root.mkdir(parents=True, exist_ok=True)
        return ObjectStoreStorage(LocalStore(root))
    return ObjectStoreStorage(MemoryStore())


def stored_names(storage: Storage, root: Path) -> list[str]:
    """Every object the backend holds; for directories every entry, temporary files included."""
    if isinstance(storage, ObjectStoreStorage) and isinstance(storage.store, MemoryStore):
        return sorted(meta["path"] for batch in obstore.list(storage.store) for meta in batch)
    return sorted(p.name for p in root.rglob("*")) if root.exists() else []


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class Boom(Exception):
    """Raised by a chunk source halfway through."""


async def failing_after(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise Boom("source failed")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Storage, Path]:
    root = tmp_path / "blobs"
    return make_storage(request.param, root), root


class TestStorageContract:
    async def test_put_open_exists_delete_round_trip(self, backend: tuple[Storage, Path]) -> None:
        storage, root = backend
        data = bytes(range(256)) * 1000  # 256,000 bytes, several chunks
        assert await storage.put_stream("abc123", chunks_of(data, 7_000)) == len(data)
        assert await storage.exists("abc123")
        assert stored_names(storage, root) == ["abc123"]
        read = b"".join([c async for c in await storage.open_stream("abc123")])
        assert hashlib.sha256(read).digest() == hashlib.sha256(data).digest()
        await storage.delete("abc123")
        assert not await storage.exists("abc123")
        await storage.delete("abc123")  # deleting twice is fine
        assert stored_names(storage, root) == []

    async def test_a_failing_source_propagates_and_leaves_nothing(
        self, backend: tuple[Storage, Path]
    ) -> None:
        storage, root = backend
        with pytest.raises(Boom):
            await storage.put_stream("partial", failing_after(b"x" * 200_000))
        assert not await storage.exists("partial")
        assert stored_names(storage, root) == []

    async def test_opening_a_missing_name_raises_file_not_found(
        self, backend: tuple[Storage, Path]
    ) -> None:
        storage, _ = backend
        with pytest.raises(FileNotFoundError):
            await storage.open_stream("missing")

    @pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x\x00", "é", "a" * 129])
    async def test_unsafe_names_are_refused(self, backend: tuple[Storage, Path], name: str) -> None:
        storage, root = backend
        with pytest.raises(ValueError, match="unsafe storage name"):
            await storage.put_stream(name, chunks_of(b"data"))
        with pytest.raises(ValueError):
            await storage.delete(name)
        assert stored_names(storage, root) == []

    def test_check_name_accepts_generated_names(self) -> None:
        assert check_name("0123456789abcdef0123456789abcdef") == "0123456789abcdef0123456789abcdef"


class TestStorageFromSettings:
    def test_default_is_a_local_directory_under_var_dir(self, tmp_path: Path) -> None:
        storage = storage_from_settings(Settings(var_dir=tmp_path))
        assert isinstance(storage, LocalStorage)
        assert storage.root == tmp_path / "files"

    def test_urls_select_an_obstore_backend(self, tmp_path: Path) -> None:
        local = storage_from_settings(Settings(storage_url=f"file://{tmp_path}/objects"))
        assert isinstance(local, ObjectStoreStorage)
        assert isinstance(local.store, LocalStore)
        assert (tmp_path / "objects").is_dir()
        memory = storage_from_settings(Settings(storage_url="memory:///"))
        assert isinstance(memory, ObjectStoreStorage)
        assert isinstance(memory.store, MemoryStore)


class TestApiOnObjectStore:
    """The upload/download/delete endpoints on the obstore adapter (``storage_url``)."""

    @pytest.fixture
    def settings(self, settings: Settings, tmp_path: Path) -> Settings:
        return settings.model_copy(
            update={"storage_url": f"file://{tmp_path}/objects", "max_upload_bytes": 300_000}
        )

    async def test_upload_dedup_download_delete_and_rejections_leave_nothing(
        self, client: httpx.AsyncClient, settings: Settings, tmp_path: Path
    ) -> None:
        root = tmp_path / "objects"
        _, headers = await register(client)
        data = png_bytes(200, 100)
        first = await upload(client, headers, "plot.png", data)
        assert first.status_code == 201, first.text
        assert (await upload(client, headers, "again.png", data)).status_code == 200
        assert len(list(root.iterdir())) == 1
        file_id = first.json()["id"]
        content = await client.get(f"/files/{file_id}/content", headers=headers)
        assert content.content == data
        assert content.headers["content-type"] == "image/png"

        body = CountingBody("big.csv", 2_000_000)
        auth = {**body.request_kwargs()["headers"], **headers}
        too_big = await client.post("/files", content=body, headers=auth)
        assert too_big.status_code == 413
        assert (await upload(client, headers, "x.csv", b"\x7fELF" + b"\0" * 64)).status_code == 415
        assert len(list(root.iterdir())) == 1

        assert (await client.delete(f"/files/{file_id}", headers=headers)).status_code == 204
        assert list(root.iterdir()) == []
