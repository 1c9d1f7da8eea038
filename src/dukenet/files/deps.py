"""FastAPI dependencies of the files domain."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from dukenet.deps import State
from dukenet.files.storage import Storage


def get_storage(state: State) -> Storage:
    """Return the process's file storage (built in the app's lifespan)."""
    return state.storage


FileStorage = Annotated[Storage, Depends(get_storage)]
