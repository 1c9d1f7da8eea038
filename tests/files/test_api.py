"""Files through the API: upload checks (type, size, name, emptiness), deduplication, download,
visibility, deletion, and what each rejected upload leaves behind (nothing)."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.config import Settings
from dukenet.kit.state import AppState
from tests.factories import create_admin, register
from tests.files.conftest import (
    BOUNDARY,
    AssignedTask,
    CountingBody,
    attach,
    elf_bytes,
    jpeg_bytes,
    multipart_envelope,
    path_of,
    pdf_bytes,
    pe_bytes,
    png_bytes,
    storage_listing,
    upload,
)

CSV = b"city,population\nLisbon,545923\nPorto,231800\n"


async def assert_nothing_stored(
    client: httpx.AsyncClient, headers: dict[str, str], state: AppState
) -> None:
    """No blob, no temporary file, no row."""
    assert storage_listing(state) == []
    listed = await client.get("/files", headers=headers)
    assert listed.status_code == 200
    assert listed.json()["total"] == 0


class TestUpload:
    @pytest.mark.parametrize(
        ("name", "kind"),
        [
            ("cities.csv", "csv"),
            ("data.json", "json"),
            ("notes.txt", "text"),
            ("report.pdf", "pdf"),
            ("pixel.png", "png"),
            ("photo.jpg", "jpeg"),
        ],
    )
    async def test_each_allowed_type_is_stored_with_its_sha256_and_detected_type(
        self, client: httpx.AsyncClient, state: AppState, name: str, kind: str
    ) -> None:
        data, expected_type = {
            "csv": (CSV, "text/csv"),
            "json": (b'{"rows": [1, 2, 3], "ok": true}\n', "application/json"),
            "text": ("Olá, plain text.\nSecond line\n".encode(), "text/plain"),
            "pdf": (pdf_bytes(), "application/pdf"),
            "png": (png_bytes(), "image/png"),
            "jpeg": (jpeg_bytes(), "image/jpeg"),
        }[kind]
        user, headers = await register(client)
        response = await upload(client, headers, name, data)
        assert response.status_code == 201, response.text
        file = response.json()
        assert file["name"] == name
        assert file["owner_id"] == user["id"]
        assert file["content_type"] == expected_type
        assert file["size_bytes"] == len(data)
        assert file["sha256"] == hashlib.sha256(data).hexdigest()
        # One blob, under a generated name that has nothing to do with the client's name.
        [blob] = storage_listing(state)
        assert name not in blob and len(blob) == 32
        assert path_of(state, blob).read_bytes() == data

    async def test_type_comes_from_the_content_not_the_name(
        self, client: httpx.AsyncClient
    ) -> None:
        _, headers = await register(client)
        png = await upload(client, headers, "table.csv", png_bytes())
        assert png.status_code == 201
        assert png.json()["content_type"] == "image/png"
        prose = await upload(client, headers, "table.csv", b"just one line of prose")
        assert prose.json()["content_type"] == "text/plain"
        tsv = await upload(client, headers, "x.txt", b"a\tb\tc\n1\t2\t3\n4\t5\t6\n")
        assert tsv.json()["content_type"] == "text/csv"

    async def test_a_large_text_file_streams_through(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, headers = await register(client)
        body = CountingBody("big.csv", 3 * 1024 * 1024 + 17)
        response = await client.post("/files", **_with_auth(body.request_kwargs(), headers))
        assert response.status_code == 201, response.text
        assert response.json()["size_bytes"] == body.size
        assert response.json()["content_type"] == "text/plain"
        [blob] = storage_listing(state)
        assert path_of(state, blob).stat().st_size == body.size


def _with_auth(kwargs: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    return {**kwargs, "headers": {**kwargs["headers"], **headers}}


class TestRejectedUploads:
    @pytest.mark.parametrize(
        ("name", "data"),
        [
            ("invoice.csv", elf_bytes()),
            ("invoice.csv", pe_bytes()),
            ("archive.json", b"PK\x03\x04" + b"\x00" * 100),
            ("noise.txt", bytes(range(256)) * 4),
            ("latin1.txt", "café crème".encode("latin-1")),
        ],
        ids=["elf-named-csv", "pe-named-csv", "zip-named-json", "random-binary", "not-utf8"],
    )
    async def test_disallowed_content_is_415_and_leaves_nothing(
        self, client: httpx.AsyncClient, state: AppState, name: str, data: bytes
    ) -> None:
        _, headers = await register(client)
        response = await upload(client, headers, name, data)
        assert response.status_code == 415, response.text
        assert "allowed" in response.json()["detail"] or "UTF-8" in response.json()["detail"]
        await assert_nothing_stored(client, headers, state)

    async def test_binary_after_a_text_head_is_415_and_the_written_blob_is_removed(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        """The type is decided on the first 64 KiB; the rest is still checked while it streams."""
        _, headers = await register(client)
        data = b"a,b\n1,2\n" * 20_000 + elf_bytes()
        response = await upload(client, headers, "mixed.csv", data)
        assert response.status_code == 415, response.text
        await assert_nothing_stored(client, headers, state)

    async def test_empty_file_is_400(self, client: httpx.AsyncClient, state: AppState) -> None:
        _, headers = await register(client)
        response = await upload(client, headers, "empty.csv", b"")
        assert response.status_code == 400
        assert response.json()["detail"] == "the file is empty"
        await assert_nothing_stored(client, headers, state)

    @pytest.mark.parametrize(
        "name",
        ["../x.csv", "a/b.csv", "/etc/passwd", "..\\x.csv", "C:\\data\\x.csv", "nul\x00.csv",
         "line\nbreak.csv", "evil\u202egnp.exe", ".", "..", "   ", "x" * 252 + ".csv"],
        ids=["dotdot", "slash", "absolute", "backslash", "windows", "nul", "newline", "bidi",
             "dot", "dotdot-only", "blank", "256-chars"],
    )  # fmt: skip
    async def test_path_like_or_unprintable_names_are_400(
        self, client: httpx.AsyncClient, state: AppState, name: str
    ) -> None:
        _, headers = await register(client)
        response = await upload(client, headers, name, CSV)
        assert response.status_code == 400, response.text
        await assert_nothing_stored(client, headers, state)

    async def test_a_raw_nul_byte_in_the_part_header_is_400(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, headers = await register(client)
        before, after = multipart_envelope('form-data; name="file"; filename="a\x00.csv"')
        response = await client.post(
            "/files",
            content=before + CSV + after,
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert response.status_code == 400, response.text
        await assert_nothing_stored(client, headers, state)

    async def test_a_255_character_name_is_kept_and_an_rfc5987_name_is_decoded(
        self, client: httpx.AsyncClient
    ) -> None:
        _, headers = await register(client)
        longest = "é" * 251 + ".csv"
        assert (await upload(client, headers, longest, CSV)).json()["name"] == longest
        before, after = multipart_envelope(
            'form-data; name="file"; filename="fallback.csv"; filename*=UTF-8\'\'na%C3%AFve.csv'
        )
        response = await client.post(
            "/files",
            content=before + b"x,y\n1,2\n" + after,
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "naïve.csv"

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("application/json", b'{"file": "x"}'),
            (f"multipart/form-data; boundary={BOUNDARY}", b""),
            (
                f"multipart/form-data; boundary={BOUNDARY}",
                b"".join(multipart_envelope('form-data; name="other"; filename="a.csv"')),
            ),
            (
                f"multipart/form-data; boundary={BOUNDARY}",
                multipart_envelope('form-data; name="file"; filename="a.csv"')[0] + CSV,
            ),
        ],
        ids=["not-multipart", "empty-body", "no-file-field", "truncated"],
    )
    async def test_malformed_requests_are_422_and_leave_nothing(
        self, client: httpx.AsyncClient, state: AppState, content_type: str, body: bytes
    ) -> None:
        _, headers = await register(client)
        response = await client.post(
            "/files", content=body, headers={**headers, "Content-Type": content_type}
        )
        assert response.status_code == 422, response.text
        await assert_nothing_stored(client, headers, state)

    async def test_two_file_parts_are_422(self, client: httpx.AsyncClient, state: AppState) -> None:
        _, headers = await register(client)
        response = await client.post(
            "/files", headers=headers, files=[("file", ("a.csv", CSV)), ("file", ("b.csv", CSV))]
        )
        assert response.status_code == 422, response.text
        await assert_nothing_stored(client, headers, state)

    async def test_anonymous_upload_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/files", files={"file": ("a.csv", CSV)})
        assert response.status_code == 401


LIMIT = 100_000


class TestSizeLimit:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_upload_bytes": LIMIT})

    async def test_exactly_the_limit_is_accepted_and_one_byte_more_is_413(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, headers = await register(client)
        line = b"0123456789abcdef,x\n"
        at_limit = (line * (LIMIT // len(line) + 1))[:LIMIT]
        over = await upload(client, headers, "over.csv", at_limit + b"1")
        assert over.status_code == 413, over.text
        await assert_nothing_stored(client, headers, state)
        ok = await upload(client, headers, "at.csv", at_limit)
        assert ok.status_code == 201, ok.text
        assert ok.json()["size_bytes"] == LIMIT

    async def test_a_declared_oversize_body_is_refused_before_it_is_read(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, headers = await register(client)
        body = CountingBody("huge.csv", 50 * LIMIT)
        size = len(body.before) + body.size + len(body.after)
        kwargs = _with_auth(body.request_kwargs(), {**headers, "Content-Length": str(size)})
        response = await client.post("/files", **kwargs)
        assert response.status_code == 413
        assert body.sent == 0
        await assert_nothing_stored(client, headers, state)

    async def test_an_undeclared_oversize_stream_is_cut_off_at_the_limit(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        """Without Content-Length the server stops reading one chunk past the limit."""
        _, headers = await register(client)
        body = CountingBody("huge.csv", 50 * LIMIT, chunk_bytes=8 * 1024)
        response = await client.post("/files", **_with_auth(body.request_kwargs(), headers))
        assert response.status_code == 413, response.text
        assert LIMIT < body.sent <= LIMIT + 8 * 1024
        await assert_nothing_stored(client, headers, state)


class TestDeduplication:
    async def test_the_same_bytes_twice_return_the_first_file_and_keep_one_blob(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, headers = await register(client)
        first = await upload(client, headers, "cities.csv", CSV)
        again = await upload(client, headers, "renamed.csv", CSV)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json()
        assert len(storage_listing(state)) == 1
        assert (await client.get("/files", headers=headers)).json()["total"] == 1

    async def test_other_users_get_their_own_copy(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, alice = await register(client)
        _, bob = await register(client)
        a = await upload(client, alice, "cities.csv", CSV)
        b = await upload(client, bob, "cities.csv", CSV)
        assert (a.status_code, b.status_code) == (201, 201)
        assert a.json()["id"] != b.json()["id"]
        assert len(storage_listing(state)) == 2

    async def test_concurrent_duplicates_end_as_one_row_and_one_blob(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, headers = await register(client)
        responses = await asyncio.gather(
            *(upload(client, headers, f"copy-{i}.csv", CSV) for i in range(4))
        )
        assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
        assert len({r.json()["id"] for r in responses}) == 1
        assert len(storage_listing(state)) == 1


class TestReadAndList:
    async def test_owner_downloads_the_exact_bytes_with_type_and_disposition(
        self, client: httpx.AsyncClient
    ) -> None:
        _, headers = await register(client)
        file = (await upload(client, headers, "données 2024.csv", CSV)).json()
        response = await client.get(f"/files/{file['id']}/content", headers=headers)
        assert response.status_code == 200
        assert response.content == CSV
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-length"] == str(len(CSV))
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-disposition"] == (
            "attachment; filename=\"donn_es 2024.csv\"; filename*=UTF-8''donn%C3%A9es%202024.csv"
        )
        pdf = pdf_bytes()
        file = (await upload(client, headers, "r.pdf", pdf)).json()
        response = await client.get(f"/files/{file['id']}/content", headers=headers)
        assert response.content == pdf
        assert response.headers["content-type"] == "application/pdf"

    async def test_other_users_get_404_for_everything(self, client: httpx.AsyncClient) -> None:
        _, owner = await register(client)
        _, other = await register(client, role="agent")
        file = (await upload(client, owner, "cities.csv", CSV)).json()
        for method, path in [
            ("GET", f"/files/{file['id']}"),
            ("GET", f"/files/{file['id']}/content"),
            ("DELETE", f"/files/{file['id']}"),
        ]:
            response = await client.request(method, path, headers=other)
            assert response.status_code == 404, (method, path)
            assert response.json()["detail"] == f"file {file['id']} not found"
        missing = uuid.uuid4()
        response = await client.get(f"/files/{missing}", headers=other)
        assert response.json()["detail"] == f"file {missing} not found"
        assert (await client.get("/files", headers=other)).json()["total"] == 0
        assert (await client.get(f"/files/{file['id']}", headers=owner)).status_code == 200
        assert (await client.get("/files")).status_code == 401

    async def test_listing_is_paginated_newest_first(self, client: httpx.AsyncClient) -> None:
        _, headers = await register(client)
        ids = [
            (await upload(client, headers, f"f{i}.txt", f"file {i}".encode())).json()["id"]
            for i in range(3)
        ]
        page = (await client.get("/files?limit=2&offset=0", headers=headers)).json()
        assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
        rest = (await client.get("/files?limit=2&offset=2", headers=headers)).json()
        assert [f["id"] for f in page["items"] + rest["items"]] == ids[::-1]

    async def test_admins_list_read_and_delete_every_file(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, alice = await register(client)
        _, bob = await register(client)
        _, admin = await create_admin(state)
        a = (await upload(client, alice, "a.csv", CSV)).json()
        await upload(client, bob, "b.txt", b"bob's notes")
        listed = (await client.get("/files", headers=admin)).json()
        assert listed["total"] == 2
        assert (await client.get(f"/files/{a['id']}/content", headers=admin)).content == CSV
        assert (await client.delete(f"/files/{a['id']}", headers=admin)).status_code == 204
        assert (await client.get(f"/files/{a['id']}", headers=alice)).status_code == 404
        assert (await client.get("/files", headers=admin)).json()["total"] == 1


class TestDelete:
    async def test_owner_delete_removes_row_and_blob(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, headers = await register(client)
        file = (await upload(client, headers, "cities.csv", CSV)).json()
        [blob] = storage_listing(state)
        response = await client.delete(f"/files/{file['id']}", headers=headers)
        assert response.status_code == 204
        assert not path_of(state, blob).exists()
        await assert_nothing_stored(client, headers, state)
        assert (await client.get(f"/files/{file['id']}", headers=headers)).status_code == 404
        assert (await client.delete(f"/files/{file['id']}", headers=headers)).status_code == 404
        # The same bytes can be uploaded again afterwards.
        assert (await upload(client, headers, "cities.csv", CSV)).status_code == 201


class TestTaskAccess:
    async def test_the_assigned_agents_operator_reads_a_task_file_with_the_task_id(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        assigned_task: AssignedTask,
    ) -> None:
        task = assigned_task
        file = (await upload(client, task.buyer, "input.csv", CSV)).json()
        other = (await upload(client, task.buyer, "private.txt", b"not for the agent")).json()
        content = f"/files/{file['id']}/content"
        # Before the file is attached, the task id grants nothing.
        params = {"task_id": str(task.task_id)}
        assert (await client.get(content, headers=task.operator, params=params)).status_code == 404
        await attach(sessionmaker, task, file["id"])

        response = await client.get(content, headers=task.operator, params=params)
        assert response.status_code == 200
        assert response.content == CSV
        meta = await client.get(f"/files/{file['id']}", headers=task.operator, params=params)
        assert meta.status_code == 200
        # Without the task id, for a file the task does not list, or for another operator: 404.
        assert (await client.get(content, headers=task.operator)).status_code == 404
        other_content = f"/files/{other['id']}/content"
        response = await client.get(other_content, headers=task.operator, params=params)
        assert response.status_code == 404
        _, stranger = await register(client, role="agent")
        assert (await client.get(content, headers=stranger, params=params)).status_code == 404
        # The operator may read, not delete.
        response = await client.delete(f"/files/{file['id']}", headers=task.operator)
        assert response.status_code == 404

    async def test_a_file_cannot_be_deleted_while_its_task_is_unfinished(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        sessionmaker: async_sessionmaker[AsyncSession],
        assigned_task: AssignedTask,
    ) -> None:
        task = assigned_task
        file = (await upload(client, task.buyer, "input.csv", CSV)).json()
        await attach(sessionmaker, task, file["id"])
        response = await client.delete(f"/files/{file['id']}", headers=task.buyer)
        assert response.status_code == 409
        assert str(task.task_id) in response.json()["detail"]
        assert len(storage_listing(state)) == 1

        claim = await client.post("/runner/claim", headers=task.operator, json={})
        assert claim.status_code == 200, claim.text
        result = await client.post(
            f"/runner/tasks/{task.task_id}/result",
            headers=task.operator,
            json={
                "lease_token": claim.json()["lease_token"],
                "idempotency_key": "done-1",
                "text": "ok",
                "success": True,
            },
        )
        assert result.status_code == 201, result.text
        response = await client.delete(f"/files/{file['id']}", headers=task.buyer)
        assert response.status_code == 204
        assert storage_listing(state) == []


class TestMemory:
    async def test_a_16_mib_upload_never_holds_more_than_a_few_chunks(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        """Peak Python allocations during the upload stay under 2 MiB, an eighth of its size."""
        _, headers = await register(client)
        body = CountingBody("big.txt", 16 * 1024 * 1024)
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            response = await client.post("/files", **_with_auth(body.request_kwargs(), headers))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 201, response.text
        assert response.json()["size_bytes"] == body.size
        assert peak - baseline < 2 * 1024 * 1024, f"peak {peak - baseline:,} bytes"
