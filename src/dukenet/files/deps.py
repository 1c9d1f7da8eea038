"""FastAPI dependencies of the files domain."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dukenet.deps import State
from dukenet.files.storage import Storage, storage_from_settings

_APP_STATE_KEY = "dukenet_files_storage"


def get_storage(request: Request, state: State) -> Storage:
    """Return the app's file storage, built from the settings on first use and kept on the app."""
    storage: Storage | None = getattr(request.app.state, _APP_STATE_KEY, None)
    if storage is None:
        storage = storage_from_settings(state.settings)
        setattr(request.app.state, _APP_STATE_KEY, storage)
    return storage


FileStorage = Annotated[Storage, Depends(get_storage)]
