"""Webhooks: registration under the egress policy, the outbox written with the task's state
change, signed deliveries retried across a restart, visible attempts."""

from __future__ import annotations

import json
import time

import httpx

from dukenet.config import Settings
from dukenet.db import create_engine, create_sessionmaker
from dukenet.gateway.webhooks import SIGNATURE_HEADER, Dispatcher, verify_signature
from dukenet.kit import netguard
from dukenet.kit.state import AppState
from tests.factories import create_admin, credit, register, replay_agent
from tests.gateway.receiver import Receiver


async def _dispatch_once(settings: Settings) -> int:
    """One dispatcher pass in a fresh engine, as a newly started process would run it."""
    engine = create_engine(settings.resolved_database_url)
    policy = netguard.EgressPolicy.from_settings(settings)
    try:
        async with netguard.guarded_client(policy) as client:
            return await Dispatcher(create_sessionmaker(engine), settings, client).run_once()
    finally:
        await engine.dispose()


class TestRegistration:
    async def test_targets_are_checked_like_agent_urls(self, client: httpx.AsyncClient) -> None:
        _, buyer = await register(client)
        for url in (
            "http://example.com/hook",  # plain http to the internet
            "https://169.254.169.254/latest",  # link-local metadata
            "https://10.0.0.7/hook",  # private
            "ftp://example.com/hook",
        ):
            refused = await client.post("/webhooks", headers=buyer, json={"url": url})
            assert refused.status_code == 422, (url, refused.text)
            assert refused.json()["detail"].startswith("url: ")
        bad_event = await client.post(
            "/webhooks", headers=buyer, json={"url": "https://example.com/h", "events": ["x"]}
        )
        assert bad_event.status_code == 422


class TestDelivery:
    async def test_signed_delivery_survives_a_restart_mid_retry(
        self, client: httpx.AsyncClient, state: AppState, settings: Settings
    ) -> None:
        settings = settings.model_copy(update={"webhook_backoff_s": 0.0})
        _, admin = await create_admin(state)
        buyer_json, buyer = await register(client)
        await credit(client, admin, buyer_json["id"], 1_000_000)
        agent = await replay_agent(client, admin)
        with Receiver(500) as receiver:
            created = await client.post(
                "/webhooks",
                headers=buyer,
                json={"url": receiver.url, "events": ["task.assigned", "task.completed"]},
            )
            assert created.status_code == 201, created.text
            hook = created.json()
            assert hook["secret"].startswith("whsec_")
            task = await client.post(
                "/tasks",
                headers=buyer,
                json={"description": "What is 2 + 2?", "complexity": 1, "agent_id": agent["id"]},
            )
            assert task.status_code == 201

            assert await _dispatch_once(settings) == 1  # answered 500: retried later
            assert await _dispatch_once(settings) == 1  # a new process picks it up: 200
            assert await _dispatch_once(settings) == 0

            deliveries = (
                await client.get(f"/webhooks/{hook['id']}/deliveries", headers=buyer)
            ).json()
            assert deliveries["total"] == 1
            delivery = deliveries["items"][0]
            assert delivery["event"] == "task.assigned"
            assert delivery["status"] == "delivered"
            assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 200]
            assert delivery["attempt_log"][0]["error"].startswith("answered 500")

            sent = receiver.received
            assert len(sent) == 2
            body, header = sent[-1].body, sent[-1].headers[SIGNATURE_HEADER.lower()]
            assert verify_signature(hook["secret"], body, header)
            assert json.loads(body)["data"]["task"]["id"] == task.json()["id"]
            tampered = body.replace(b"task.assigned", b"task.completed")
            assert not verify_signature(hook["secret"], tampered, header)
            assert not verify_signature("whsec_other", body, header)
            assert not verify_signature(hook["secret"], body, header, now=time.time() + 3600)

    async def test_the_runner_protocol_emits_delivery_and_completion_events(
        self, client: httpx.AsyncClient, state: AppState
    ) -> None:
        _, admin = await create_admin(state)
        buyer_json, buyer = await register(client)
        await credit(client, admin, buyer_json["id"], 1_000_000)
        agent = await replay_agent(client, admin)
        hook = (
            await client.post("/webhooks", headers=buyer, json={"url": "https://example.com/h"})
        ).json()
        other = (
            await client.post("/webhooks", headers=admin, json={"url": "https://example.org/op"})
        ).json()
        task = await client.post(
            "/tasks",
            headers=buyer,
            json={"description": "What is 3 + 3?", "complexity": 1, "agent_id": agent["id"]},
        )
        claim = (await client.post("/runner/claim", headers=admin, json={})).json()
        result = await client.post(
            f"/runner/tasks/{claim['task_id']}/result",
            headers=admin,
            json={
                "lease_token": claim["lease_token"],
                "idempotency_key": "k1",
                "text": "6",
                "success": True,
            },
        )
        assert result.status_code == 201, result.text
        cancelled = await client.post(
            "/tasks",
            headers=buyer,
            json={"description": "Never mind", "complexity": 1, "agent_id": agent["id"]},
        )
        await client.post(f"/tasks/{cancelled.json()['id']}/cancel", headers=buyer)

        buyer_events = (
            await client.get(f"/webhooks/{hook['id']}/deliveries?limit=50", headers=buyer)
        ).json()["items"]
        seen = sorted((d["task_id"] == task.json()["id"], d["event"]) for d in buyer_events)
        assert seen == [
            (False, "task.assigned"),
            (False, "task.refunded"),
            (True, "task.assigned"),
            (True, "task.completed"),
            (True, "task.delivered"),
        ]
        operator_events = (
            await client.get(f"/webhooks/{other['id']}/deliveries", headers=admin)
        ).json()
        assert operator_events["total"] == 5  # the admin operates the replay agent
        assert all(d["status"] == "pending" for d in buyer_events)
