"""Pydantic base schema and pagination."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Schema(BaseModel):
    """Base of every API schema: reads ORM objects, rejects unknown fields on input."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a listing: ``items`` plus the ``total`` matching the filters."""

    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    """Limit/offset pagination parameters."""

    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0)
