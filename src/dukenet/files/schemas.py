"""API schemas of the files domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from dukenet.files.models import FileType
from dukenet.kit.schema import Schema


class FileRead(Schema):
    """An uploaded file's metadata; ``size_bytes`` in bytes, ``sha256`` in lowercase hex."""

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    content_type: FileType
    size_bytes: int
    sha256: str
    created_at: datetime
