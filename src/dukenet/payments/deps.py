"""FastAPI dependencies of the payments domain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends

from dukenet.accounts.models import User, UserRole
from dukenet.deps import State, require_role
from dukenet.payments.providers import PaymentProvider, open_provider


async def get_provider(state: State) -> AsyncIterator[PaymentProvider]:
    """Yield the configured payment provider for one request (``DUKENET_PAYMENT_PROVIDER``)."""
    async with open_provider(state.settings) as provider:
        yield provider


Provider = Annotated[PaymentProvider, Depends(get_provider)]
# Money leaves only on a person's access token: a runner's API key cannot request payouts.
PayoutUser = Annotated[User, require_role(UserRole.AGENT, UserRole.ADMIN, allow_api_key=False)]
