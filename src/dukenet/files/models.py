"""ORM models of uploaded files and their attachment to tasks."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin, str_enum, utcnow


class FileType(StrEnum):
    """The allowed content types, detected from the bytes (never from the client's name)."""

    CSV = "text/csv"
    JSON = "application/json"
    TEXT = "text/plain"
    PDF = "application/pdf"
    PNG = "image/png"
    JPEG = "image/jpeg"

    @property
    def is_text(self) -> bool:
        """True for the UTF-8 text types (CSV, JSON, plain text)."""
        return self in (FileType.CSV, FileType.JSON, FileType.TEXT)

    @property
    def media_type(self) -> str:
        """The HTTP ``Content-Type`` to serve it with (text types declare UTF-8)."""
        return f"{self.value}; charset=utf-8" if self.is_text else self.value


class File(IdMixin, TimestampMixin, Base):
    """An uploaded file: metadata here, bytes in storage under the generated ``storage_name``.

    ``name`` is the client's file name, sanitized, kept only for display and downloads. One user
    holds at most one file per SHA-256 (a repeated upload returns the first).
    """

    __tablename__ = "file"
    __table_args__ = (
        UniqueConstraint("owner_id", "sha256", name="uq_file_owner_sha256"),
        Index("ix_file_owner_created", "owner_id", "created_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[FileType] = mapped_column(str_enum(FileType, "file_type", length=32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_name: Mapped[str] = mapped_column(String(64), unique=True)


class TaskFile(Base):
    """A file given to a task as input; the task's agent's operator may read it."""

    __tablename__ = "task_file"

    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("task.id", ondelete="CASCADE"), primary_key=True
    )
    file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("file.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
