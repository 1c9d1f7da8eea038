"""FastAPI dependencies of the agents domain."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from dukenet.deps import State
from dukenet.kit.secrets import SecretBox


def get_secret_box(state: State) -> SecretBox:
    """Return the box that encrypts agents' API keys (``DUKENET_SECRET_KEY``)."""
    return SecretBox.from_settings(state.settings)


Secrets = Annotated[SecretBox, Depends(get_secret_box)]
