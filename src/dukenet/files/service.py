"""Uploading, reading, deleting files, and attaching them to tasks."""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence

import anyio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dukenet.accounts.models import User, UserRole
from dukenet.errors import BadRequest, Conflict, NotFound
from dukenet.files import detect, extract, repository
from dukenet.files.errors import PayloadTooLarge
from dukenet.files.models import File, TaskFile
from dukenet.files.storage import Storage

MAX_NAME_CHARS = 255
# Bidirectional overrides let "report\u202Egnp.exe" display as "reportexe.png".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
EXCERPT_SEPARATOR = "\n\n"


def sanitize_name(name: str) -> str:
    """Return the client's file name fit to keep as metadata (NFC, trimmed).

    Raises:
        BadRequest: the name is empty, longer than 255 characters, looks like a path
            (``/``, ``\\``, ``.``, ``..``) or holds NUL or other control characters.
    """
    normalized = unicodedata.normalize("NFC", name)
    if any(unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS for c in normalized):
        raise BadRequest("the file name must not contain NUL or other control characters")
    if "/" in normalized or "\\" in normalized:
        raise BadRequest("the file name must be a plain name, not a path")
    stripped = normalized.strip()
    if stripped in ("", ".", ".."):
        raise BadRequest("the file name is missing or is a path")
    if len(stripped) > MAX_NAME_CHARS:
        raise BadRequest(f"the file name is longer than {MAX_NAME_CHARS} characters")
    return stripped


async def _read_head(
    chunks: AsyncIterator[bytes], *, head_bytes: int, max_bytes: int
) -> tuple[bytes, bool]:
    """Read at least ``head_bytes`` (or everything); return (head, whether it is everything)."""
    parts: list[bytes] = []
    size = 0
    while size < head_bytes:
        chunk = await anext(chunks, None)
        if chunk is None:
            return b"".join(parts), True
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the file exceeds the upload limit of {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts), False


async def _discard(storage: Storage, name: str) -> None:
    with anyio.CancelScope(shield=True):
        await storage.delete(name)


async def upload(
    session: AsyncSession,
    storage: Storage,
    *,
    owner: User,
    filename: str,
    chunks: AsyncIterable[bytes],
    max_bytes: int,
) -> tuple[File, bool]:
    """Store an upload streamed as ``chunks`` and return (file, created).

    The name is checked before any byte is read; the type is decided from the first
    ``HEAD_BYTES`` before anything is stored; the SHA-256 is computed and the ``max_bytes``
    limit (bytes) enforced while the rest streams to storage under a generated name. When the
    owner already has a file with the same SHA-256 the new blob is deleted and that file is
    returned with ``created`` False. No database transaction is open while bytes stream. On
    any error nothing is left in storage; once this returns the caller commits, and must call
    ``discard_blob`` if that fails for a created file.

    Raises:
        BadRequest: bad name or empty file. PayloadTooLarge: over ``max_bytes``.
        UnsupportedFileType: not an allowed type.
    """
    name = sanitize_name(filename)
    stream = aiter(chunks)
    head, complete = await _read_head(stream, head_bytes=detect.HEAD_BYTES, max_bytes=max_bytes)
    if not head:
        raise BadRequest("the file is empty")
    file_type = detect.detect(head, complete=complete)
    text_check = detect.TextCheck() if file_type.is_text else None
    hasher = hashlib.sha256()

    async def checked() -> AsyncIterator[bytes]:
        size = len(head)
        hasher.update(head)
        if text_check is not None:
            text_check.feed(head)
        yield head
        async for chunk in stream:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"the file exceeds the upload limit of {max_bytes} bytes")
            hasher.update(chunk)
            if text_check is not None:
                text_check.feed(chunk)
            yield chunk
        if text_check is not None:
            text_check.finish()

    storage_name = uuid.uuid4().hex
    size = await storage.put_stream(storage_name, checked())
    try:
        digest = hasher.hexdigest()
        existing = await repository.get_by_sha256(session, owner.id, digest)
        if existing is not None:
            await _discard(storage, storage_name)
            return existing, False
        file = File(
            owner_id=owner.id,
            name=name,
            content_type=file_type,
            size_bytes=size,
            sha256=digest,
            storage_name=storage_name,
        )
        try:
            async with session.begin_nested():
                session.add(file)
        except IntegrityError:
            # The same bytes, uploaded concurrently by the same owner, committed first.
            existing = await repository.get_by_sha256(session, owner.id, digest)
            if existing is None:
                raise
            await _discard(storage, storage_name)
            return existing, False
    except BaseException:
        await _discard(storage, storage_name)
        raise
    return file, True


async def discard_blob(storage: Storage, file: File) -> None:
    """Delete a file's bytes (after its row was deleted, or its creation rolled back)."""
    await _discard(storage, file.storage_name)


async def can_read(
    session: AsyncSession, *, user: User, file: File, task_id: uuid.UUID | None = None
) -> bool:
    """Return True when ``user`` may read ``file``: its owner, an admin, or, given ``task_id``,
    the operator of the agent assigned to that task when the task lists the file."""
    if user.role is UserRole.ADMIN or file.owner_id == user.id:
        return True
    if task_id is None:
        return False
    return await repository.is_attached_for_operator(
        session, file_id=file.id, task_id=task_id, operator_id=user.id
    )


async def get_readable(
    session: AsyncSession, *, user: User, file_id: uuid.UUID, task_id: uuid.UUID | None = None
) -> File:
    """Return a file ``user`` may read (see ``can_read``).

    Raises:
        NotFound: no such file, or the user may not read it (existence is not revealed).
    """
    file = await repository.get(session, file_id)
    if file is None or not await can_read(session, user=user, file=file, task_id=task_id):
        raise NotFound(f"file {file_id} not found")
    return file


async def list_visible(
    session: AsyncSession, *, user: User, limit: int, offset: int
) -> tuple[Sequence[File], int]:
    """Return a page of the user's files, newest first (admins: every file), and the total."""
    owner_id = None if user.role is UserRole.ADMIN else user.id
    return await repository.list_page(session, owner_id, limit=limit, offset=offset)


async def open_content(storage: Storage, file: File) -> AsyncIterator[bytes]:
    """Open a file's bytes for streaming (``FileNotFoundError`` if the blob is missing)."""
    return await storage.open_stream(file.storage_name)


async def delete(session: AsyncSession, *, user: User, file_id: uuid.UUID) -> File:
    """Delete a file's row and task attachments (its owner or an admin); flushes.

    The caller commits, then calls ``discard_blob``: the bytes go only once the row is gone.

    Raises:
        NotFound: no such file or not the caller's. Conflict: an unfinished task uses it.
    """
    file = await repository.get(session, file_id)
    if file is None or (user.role is not UserRole.ADMIN and file.owner_id != user.id):
        raise NotFound(f"file {file_id} not found")
    active = await repository.active_task_ids(session, file.id)
    if active:
        raise Conflict(f"file {file_id} is an input of unfinished task {active[0]}")
    await repository.delete_file(session, file)
    return file


async def attach_to_task(
    session: AsyncSession, *, task_id: uuid.UUID, file_ids: Sequence[uuid.UUID], owner: User
) -> Sequence[File]:
    """Attach ``owner``'s files to ``owner``'s task (already flushed); return them in order.

    Attaching a file twice is a no-op. Flushes.

    Raises:
        NotFound: the task is not the owner's, or a file does not exist or is not the owner's.
    """
    task = await repository.get_task(session, task_id)
    if task is None or task.buyer_id != owner.id:
        raise NotFound(f"task {task_id} not found")
    wanted = list(dict.fromkeys(file_ids))
    found = {f.id: f for f in await repository.get_many(session, wanted)}
    for file_id in wanted:
        file = found.get(file_id)
        if file is None or file.owner_id != owner.id:
            raise NotFound(f"file {file_id} not found")
    attached = await repository.attached_file_ids(session, task_id)
    session.add_all(TaskFile(task_id=task_id, file_id=f) for f in wanted if f not in attached)
    await session.flush()
    return [found[f] for f in wanted]


async def list_for_task(session: AsyncSession, task_id: uuid.UUID) -> Sequence[File]:
    """Return the files attached to a task, in attachment order."""
    return await repository.list_for_task(session, task_id)


async def task_context(
    session: AsyncSession, storage: Storage, *, task_id: uuid.UUID, budget_chars: int
) -> str:
    """Return excerpts of a task's files for an LLM prompt, at most ``budget_chars`` characters
    in all (shared evenly between the files; ``""`` when it has none)."""
    files = await repository.list_for_task(session, task_id)
    if not files:
        return ""
    share = (budget_chars - len(EXCERPT_SEPARATOR) * (len(files) - 1)) // len(files)
    if share <= 0:
        return ""
    parts = [await extract.excerpt(f, storage, share) for f in files]
    return EXCERPT_SEPARATOR.join(p for p in parts if p)
