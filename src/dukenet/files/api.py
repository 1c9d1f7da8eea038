"""Files endpoints: upload (streamed), list, show, download (streamed), delete."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from dukenet.deps import CurrentUser, Session, State
from dukenet.files import service
from dukenet.files.deps import FileStorage
from dukenet.files.errors import PayloadTooLarge
from dukenet.files.models import FileType
from dukenet.files.multipart import MultipartFilePart
from dukenet.files.schemas import FileRead
from dukenet.kit.schema import Page

router = APIRouter(tags=["files"])

UPLOAD_FIELD = "file"
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for the multipart envelope (boundaries, part headers) beyond the file (bytes)."""

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [UPLOAD_FIELD],
                    "properties": {
                        UPLOAD_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV, JSON, PDF, PNG, JPEG or UTF-8 text",
                        }
                    },
                }
            }
        },
    }
}

TaskIdQuery = Query(
    default=None,
    description="A task that lists the file and is assigned to one of the caller's agents",
)


def content_disposition(name: str) -> str:
    """Return an ``attachment`` disposition with an ASCII fallback and the UTF-8 name (RFC 6266)."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)
    return f"attachment; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.post(
    "/files",
    status_code=status.HTTP_201_CREATED,
    response_model=FileRead,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": FileRead, "description": "Already uploaded: the caller's existing file"},
        400: {"description": "Empty file, or a file name that is a path or has control chars"},
        413: {"description": "Larger than max_upload_bytes (50 MiB by default)"},
        415: {"description": "Not CSV, JSON, PDF, PNG, JPEG or UTF-8 text"},
        422: {"description": "Not multipart/form-data with one part named 'file'"},
    },
)
async def upload_file(
    request: Request,
    response: Response,
    user: CurrentUser,
    session: Session,
    state: State,
    storage: FileStorage,
) -> FileRead:
    """Upload one file (multipart field ``file``; at most ``max_upload_bytes`` bytes).

    The type comes from the content, never the name; the bytes stream to storage as they
    arrive. Uploading bytes the caller already has returns that file (200, no second copy).
    """
    limit = state.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD_BYTES:
        raise PayloadTooLarge(f"the file exceeds the upload limit of {limit} bytes")
    part = await MultipartFilePart.open(
        request.stream(),
        request.headers.get("content-type", ""),
        field=UPLOAD_FIELD,
        max_body_bytes=limit + MULTIPART_OVERHEAD_BYTES,
    )
    file, created = await service.upload(
        session, storage, owner=user, filename=part.filename, chunks=part.chunks(), max_bytes=limit
    )
    try:
        await session.commit()
    except BaseException:
        if created:
            await service.discard_blob(storage, file)
        raise
    if not created:
        response.status_code = status.HTTP_200_OK
    return FileRead.model_validate(file)


@router.get("/files", response_model=Page[FileRead])
async def list_files(
    user: CurrentUser,
    session: Session,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> Page[FileRead]:
    """List the caller's files, newest first (admins: every file)."""
    items, total = await service.list_visible(session, user=user, limit=limit, offset=offset)
    return Page[FileRead](
        items=[FileRead.model_validate(f) for f in items], total=total, limit=limit, offset=offset
    )


@router.get("/files/{file_id}", response_model=FileRead)
async def get_file(
    file_id: uuid.UUID,
    user: CurrentUser,
    session: Session,
    task_id: uuid.UUID | None = TaskIdQuery,
) -> FileRead:
    """Show a file's metadata (its owner, admins, or its task's agent operator with ``task_id``)."""
    file = await service.get_readable(session, user=user, file_id=file_id, task_id=task_id)
    return FileRead.model_validate(file)


@router.get(
    "/files/{file_id}/content",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file's bytes, as an attachment",
            "content": {
                t.value: {"schema": {"type": "string", "format": "binary"}} for t in FileType
            },
        }
    },
)
async def download_file(
    file_id: uuid.UUID,
    user: CurrentUser,
    session: Session,
    storage: FileStorage,
    task_id: uuid.UUID | None = TaskIdQuery,
) -> StreamingResponse:
    """Download a file's bytes, streamed (who may: as for ``GET /files/{file_id}``)."""
    file = await service.get_readable(session, user=user, file_id=file_id, task_id=task_id)
    # End the read transaction: on SQLite it holds the write lock, and a download can be slow.
    await session.commit()
    chunks = await service.open_content(storage, file)
    return StreamingResponse(
        chunks,
        media_type=file.content_type.media_type,
        headers={
            "Content-Disposition": content_disposition(file.name),
            "Content-Length": str(file.size_bytes),
            "ETag": f'"{file.sha256}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-cache",
        },
    )


@router.delete("/files/{file_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_file(
    file_id: uuid.UUID, user: CurrentUser, session: Session, storage: FileStorage
) -> None:
    """Delete a file and its bytes (its owner or an admin; 409 while an unfinished task uses it)."""
    file = await service.delete(session, user=user, file_id=file_id)
    await session.commit()
    await service.discard_blob(storage, file)
