"""Mounts every domain router under ``/api/v2``."""

from __future__ import annotations

from fastapi import APIRouter

from dukenet.accounts.api import router as accounts_router
from dukenet.agents.api import router as agents_router
from dukenet.comparisons.api import router as comparisons_router
from dukenet.curation.api import router as curation_router
from dukenet.datasets.api import router as datasets_router
from dukenet.events.api import router as events_router
from dukenet.feedback.api import router as feedback_router
from dukenet.files.api import router as files_router
from dukenet.gateway.api import router as gateway_router
from dukenet.learning.api import router as learning_router
from dukenet.ledger.api import router as ledger_router
from dukenet.monitoring.api import router as monitoring_router
from dukenet.operator.api import router as operator_router
from dukenet.payments.api import router as payments_router
from dukenet.tasks.api import router as tasks_router
from dukenet.tasks.api import runner_router


def api_router() -> APIRouter:
    """Return the ``/api/v2`` router with every domain mounted."""
    router = APIRouter(prefix="/api/v2")
    for domain in (
        accounts_router,
        agents_router,
        files_router,
        tasks_router,
        gateway_router,
        feedback_router,
        curation_router,
        comparisons_router,
        datasets_router,
        runner_router,
        ledger_router,
        payments_router,
        learning_router,
        monitoring_router,
        operator_router,
        events_router,
    ):
        router.include_router(domain)
    return router
