"""Fixtures of the payments tests: the payment provider the app is configured with, and the
loopback Lightning wallet double it talks to when that is ``lightning``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from dukenet.config import Settings
from tests.lightning_double import API_KEY, LightningDouble


@pytest.fixture
def provider_name() -> str:
    """The app's ``DUKENET_PAYMENT_PROVIDER`` (a module overrides it for ``lightning``)."""
    return "ledger"


@pytest.fixture
def lightning() -> Iterator[LightningDouble]:
    """A fresh LNbits-style wallet on 127.0.0.1 (see ``tests.lightning_double``)."""
    with LightningDouble() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, provider_name: str, request: pytest.FixtureRequest) -> Settings:
    """The default test settings, with the Lightning provider on the double if asked."""
    if provider_name != "lightning":
        return settings
    double: LightningDouble = request.getfixturevalue("lightning")
    return settings.model_copy(
        update={
            "payment_provider": "lightning",
            "lightning_url": double.url,
            "lightning_api_key": SecretStr(API_KEY),
            "lightning_timeout_s": 5.0,
        }
    )
