"""The files service as other domains use it: attaching files to tasks, excerpts for a task's
LLM prompt, concurrent duplicate uploads, and the migration matching the models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.accounts.models import User
from dukenet.db import create_engine
from dukenet.errors import NotFound
from dukenet.files import service
from dukenet.files.storage import storage_from_settings
from dukenet.kit.state import AppState
from dukenet.models import metadata
from tests.factories import register
from tests.files.conftest import AssignedTask, attach, storage_listing, upload

CSV = b"product,qty\napples,3\npears,5\n"


async def _user(sessionmaker: async_sessionmaker[AsyncSession], user_id: str) -> User:
    async with sessionmaker() as session:
        user = await session.get(User, uuid.UUID(user_id))
    assert user is not None
    return user


class TestAttachToTask:
    async def test_attaches_the_owners_files_once_in_order(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        assigned_task: AssignedTask,
    ) -> None:
        task = assigned_task
        a = (await upload(client, task.buyer, "a.csv", CSV)).json()
        b = (await upload(client, task.buyer, "b.txt", b"notes")).json()
        await attach(sessionmaker, task, b["id"], a["id"], b["id"])
        await attach(sessionmaker, task, a["id"])  # again: no-op
        async with sessionmaker() as session:
            files = await service.list_for_task(session, task.task_id)
        assert [str(f.id) for f in files] == [b["id"], a["id"]]

    async def test_files_or_tasks_of_someone_else_are_not_found_and_nothing_is_attached(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        assigned_task: AssignedTask,
    ) -> None:
        task = assigned_task
        mine = (await upload(client, task.buyer, "a.csv", CSV)).json()
        stranger, stranger_headers = await register(client)
        theirs = (await upload(client, stranger_headers, "b.csv", CSV)).json()
        cases = [
            (task.buyer_user, task.task_id, [mine["id"], theirs["id"]], f"file {theirs['id']}"),
            (task.buyer_user, task.task_id, [str(uuid.uuid4())], "file "),
            (await _user(sessionmaker, stranger["id"]), task.task_id, [theirs["id"]], "task "),
            (task.buyer_user, uuid.uuid4(), [mine["id"]], "task "),
        ]
        for owner, task_id, file_ids, message in cases:
            async with sessionmaker() as session:
                with pytest.raises(NotFound, match=message) as raised:
                    await service.attach_to_task(
                        session,
                        task_id=task_id,
                        file_ids=[uuid.UUID(f) for f in file_ids],
                        owner=owner,
                    )
                assert raised.value.status_code == 404
        async with sessionmaker() as session:
            assert await service.list_for_task(session, task.task_id) == []


class TestTaskContext:
    async def test_excerpts_of_every_attached_file_within_one_budget(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        sessionmaker: async_sessionmaker[AsyncSession],
        assigned_task: AssignedTask,
    ) -> None:
        task = assigned_task
        storage = storage_from_settings(state.settings)
        async with sessionmaker() as session:
            assert (
                await service.task_context(
                    session, storage, task_id=task.task_id, budget_chars=1_000
                )
                == ""
            )
        a = (await upload(client, task.buyer, "stock.csv", CSV)).json()
        b = (await upload(client, task.buyer, "long.txt", b"lorem ipsum " * 1_000)).json()
        await attach(sessionmaker, task, a["id"], b["id"])
        async with sessionmaker() as session:
            context = await service.task_context(
                session, storage, task_id=task.task_id, budget_chars=400
            )
        assert len(context) <= 400
        first, second = context.split("\n\n")
        assert first.startswith('File "stock.csv" (CSV, 29 bytes), header and first rows:')
        assert "apples,3" in first
        assert second.startswith('File "long.txt" (text, 12,000 bytes):\nlorem ipsum')


class TestConcurrentDuplicates:
    async def test_a_duplicate_racing_an_uncommitted_upload_returns_the_winner(
        self,
        client: httpx.AsyncClient,
        state: AppState,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """PostgreSQL: the second insert waits on the unique index, fails, and falls back to
        the committed row; SQLite: the second transaction waits for the first. Either way one
        row and one blob."""
        user_json, _ = await register(client)
        owner = await _user(sessionmaker, user_json["id"])
        storage = storage_from_settings(state.settings)

        async def chunks() -> AsyncIterator[bytes]:
            yield CSV

        async with sessionmaker() as first, sessionmaker() as second:
            winner, created = await service.upload(
                first, storage, owner=owner, filename="a.csv", chunks=chunks(), max_bytes=10**6
            )
            assert created
            racing = asyncio.create_task(
                service.upload(
                    second, storage, owner=owner, filename="b.csv", chunks=chunks(), max_bytes=10**6
                )
            )
            await asyncio.sleep(0.3)
            assert not racing.done()  # blocked behind the uncommitted first upload
            await first.commit()
            loser, created = await racing
            await second.commit()
        assert not created
        assert loser.id == winner.id
        assert storage_listing(state) == [winner.storage_name]


class TestMigration:
    async def test_the_migrated_schema_matches_the_files_models(self, database_url: str) -> None:
        engine = create_engine(database_url)

        def diff(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))

        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
        await engine.dispose()
        assert [d for d in differences if _tables(d) & {"file", "task_file"}] == []


def _tables(difference: object) -> set[str]:
    """The tables an Alembic autogenerate difference touches."""
    if isinstance(difference, list):
        return set().union(*(_tables(d) for d in difference))
    names: set[str] = set()
    for item in difference if isinstance(difference, tuple) else ():
        if isinstance(item, Table):
            names.add(item.name)
        elif isinstance(getattr(item, "table", None), Table):
            names.add(item.table.name)
        elif isinstance(getattr(item, "parent", None), Table):
            names.add(item.parent.name)
        elif isinstance(item, str):
            names.add(item)
    return names
