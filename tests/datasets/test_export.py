"""Dataset exports in TRL formats from labelled outcomes: real MMLU-Pro answers checked by the
choice evaluator become preference pairs; manifests count, hash and name their sources;
private and discarded tasks never leave; an export matching nothing is an empty dataset that
says so; the CLI writes the same files."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dukenet.cli import app as cli_app
from dukenet.config import Settings
from dukenet.feedback.evaluators import chosen_letter
from tests.factories import llm_agent
from tests.feedback.test_labels import UNUSED_ENDPOINT, Market, deliver, shown

DATA = Path(__file__).parents[1] / "data" / "mmlu_pro_pairs.csv.gz"
KINDS = ("sft", "dpo", "kto", "router")


def mmlu_rows() -> list[dict[str, str]]:
    with gzip.open(DATA, "rt", newline="") as f:
        return list(csv.DictReader(f))


async def export(
    client: httpx.AsyncClient, market: Market, kind: str, **params: Any
) -> httpx.Response:
    response = await client.get(f"/admin/datasets/{kind}", headers=market.admin, params=params)
    assert response.status_code == 200, response.text
    return response


def jsonl(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines()]


@pytest.fixture
async def mmlu_market(client: httpx.AsyncClient, market: Market) -> dict[str, Any]:
    """Replay the sample through the market: one llm agent per model, one task per (question,
    model) with a choice evaluator on the gold letter, the model's recorded answer delivered.
    Returns per-row evaluator verdicts."""
    rows = mmlu_rows()
    agents: dict[str, Market] = {}
    for model in sorted({r["agent"] for r in rows}):
        agent = await llm_agent(client, market.operator, base_url=UNUSED_ENDPOINT, model=model)
        agents[model] = Market(market.admin, market.buyer, market.operator, agent)
    gold = {r["task_id"]: chosen_letter(r["response"]) for r in rows if float(r["quality"]) == 1.0}
    verdicts = []
    for r in rows:
        task_id = await deliver(
            client,
            agents[r["agent"]],
            text=r["response"],
            description=r["prompt"],
            evaluator={"kind": "choice", "reference": gold[r["task_id"]]},
        )
        label = await shown(client, market.buyer, task_id)
        verdicts.append({**r, "task": task_id, "label": label["quality"]})
    return {"rows": verdicts}


class TestRealPreferencePairs:
    async def test_correct_and_incorrect_answers_to_one_question_make_dpo_pairs(
        self, client: httpx.AsyncClient, market: Market, mmlu_market: dict[str, Any]
    ) -> None:
        rows = mmlu_market["rows"]
        agree = sum(r["label"] == float(r["quality"]) for r in rows)
        assert agree >= 0.9 * len(rows)  # the choice evaluator mostly agrees with MMLU-Pro
        by_prompt: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_prompt.setdefault(r["prompt"], []).append(r)
        expected = sum(
            sum(x["label"] == 0.0 for x in group)
            for group in by_prompt.values()
            if any(x["label"] == 1.0 for x in group)
        )
        response = await export(client, market, "dpo")
        pairs = jsonl(response)
        assert len(pairs) == expected > 0
        first = pairs[0]
        assert set(first) == {"prompt", "chosen", "rejected"}
        assert first["prompt"][0]["role"] == "user" and first["chosen"][0]["role"] == "assistant"
        prompt = first["prompt"][0]["content"]
        good = {r["response"] for r in by_prompt[prompt] if r["label"] == 1.0}
        bad = {r["response"] for r in by_prompt[prompt] if r["label"] == 0.0}
        assert first["chosen"][0]["content"] in good and first["rejected"][0]["content"] in bad

        manifest = (await export(client, market, "dpo", format="manifest")).json()
        assert manifest["rows"] == expected and manifest["empty"] is False
        assert manifest["sha256"] == hashlib.sha256(response.content).hexdigest()
        assert manifest["label_sources"] == {"evaluator": expected}
        rejected_tasks = {r["task"] for r in rows if r["label"] == 0.0}
        assert set(manifest["source_task_ids"]) <= rejected_tasks

        kto = jsonl(await export(client, market, "kto"))
        assert len(kto) == len(rows)
        assert sum(r["label"] for r in kto) == sum(r["label"] == 1.0 for r in rows)
        sft = jsonl(await export(client, market, "sft"))
        assert len(sft) == sum(r["label"] == 1.0 for r in rows)
        assert [m["role"] for m in sft[0]["messages"]] == ["user", "assistant"]
        router = jsonl(await export(client, market, "router"))
        assert len(router) == len(rows)
        assert sum(r["label"] for r in router) == sum(r["label"] == 1.0 for r in rows)
        assert all(r["label_source"] == "evaluator" for r in router)

    async def test_parquet_holds_the_same_rows(
        self, client: httpx.AsyncClient, market: Market, mmlu_market: dict[str, Any]
    ) -> None:
        for kind in KINDS:
            rows = jsonl(await export(client, market, kind))
            table = pq.read_table(
                io.BytesIO((await export(client, market, kind, format="parquet")).content)
            )
            assert table.to_pylist() == rows


class TestWhatNeverLeaves:
    async def test_private_and_discarded_tasks_are_never_exported(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        secret = await deliver(client, market, text="the secret answer", private=True)
        task = (await client.get(f"/tasks/{secret}", headers=market.buyer)).json()
        assert task["private"] is True
        discarded = await deliver(client, market, text="a discarded answer")
        reject = await client.post(
            f"/tasks/{discarded}/reject", headers=market.buyer, json={"reason": "spam"}
        )
        assert reject.status_code == 200
        queue = await client.get("/admin/curation/queue", headers=market.admin)
        version = queue.json()["items"][0]["version"]
        decided = await client.post(
            f"/admin/curation/tasks/{discarded}/decisions",
            headers=market.admin,
            json={"action": "discard", "version": version},
        )
        assert decided.status_code == 201, decided.text
        kept = await deliver(client, market, text="a public answer")
        for kind in KINDS:
            body = (await export(client, market, kind)).text
            assert "secret" not in body and "discarded" not in body
        router = jsonl(await export(client, market, "router"))
        assert [r["task_id"] for r in router] == [kept]
        for kind in ("tasks", "results", "outcomes"):
            response = await client.get(
                f"/admin/export/{kind}", headers=market.admin, params={"format": "jsonl"}
            )
            assert response.status_code == 200
            assert secret not in response.text and "the secret answer" not in response.text

    async def test_ideal_responses_and_corrections_become_training_targets(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        task_id = await deliver(client, market, text="5", description="What is 2 + 2?")
        await client.post(f"/tasks/{task_id}/reject", headers=market.buyer, json={"reason": "no"})
        version = (await client.get("/admin/curation/queue", headers=market.admin)).json()["items"][
            0
        ]["version"]
        decided = await client.post(
            f"/admin/curation/tasks/{task_id}/decisions",
            headers=market.admin,
            json={"action": "ideal_response", "version": version, "ideal_response": "4"},
        )
        assert decided.status_code == 201
        (pair,) = jsonl(await export(client, market, "dpo"))
        assert pair["chosen"][0]["content"] == "4" and pair["rejected"][0]["content"] == "5"
        (sft,) = jsonl(await export(client, market, "sft"))
        assert sft["messages"][1]["content"] == "4"
        corrected = await deliver(client, market, text="Lyon", description="Capital of France?")
        await client.put(
            f"/tasks/{corrected}/feedback",
            headers=market.buyer,
            json={"thumbs_up": False, "correction": "Paris"},
        )
        chosen = {p["chosen"][0]["content"] for p in jsonl(await export(client, market, "dpo"))}
        assert chosen == {"4", "Paris"}


class TestEmptyAndBadExports:
    async def test_nothing_matching_is_an_empty_dataset_that_says_so(
        self, client: httpx.AsyncClient, market: Market
    ) -> None:
        await deliver(client, market)
        response = await export(client, market, "sft", source="curator")
        assert response.content == b""
        manifest = (await export(client, market, "sft", source="curator", format="manifest")).json()
        assert manifest["empty"] is True and manifest["rows"] == 0
        assert manifest["note"] == "no outcome matched the filters"
        assert manifest["filters"]["sources"] == ["curator"]
        table = pq.read_table(
            io.BytesIO((await export(client, market, "dpo", format="parquet")).content)
        )
        assert table.num_rows == 0 and table.column_names == ["prompt", "chosen", "rejected"]

    @pytest.mark.parametrize(
        "params",
        [
            {"source": "oracle"},
            {"min_confidence": "1.5"},
            {"format": "csv"},
            {"created_from": "2026-12-01T00:00:00"},
        ],
    )
    async def test_bad_filters_are_refused(
        self, client: httpx.AsyncClient, market: Market, params: dict[str, str]
    ) -> None:
        response = await client.get("/admin/datasets/sft", headers=market.admin, params=params)
        assert response.status_code in (400, 422), response.text
        unknown = await client.get("/admin/datasets/ppo", headers=market.admin)
        assert unknown.status_code == 422


class TestCli:
    async def test_export_writes_files_and_manifest(
        self,
        client: httpx.AsyncClient,
        market: Market,
        settings: Settings,
        database_url: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        await deliver(client, market, text="an answer")
        monkeypatch.setenv("DUKENET_VAR_DIR", str(settings.var_dir))
        monkeypatch.setenv("DUKENET_DATABASE_URL", database_url)
        runner = CliRunner()
        out = tmp_path / "kto"
        result = await asyncio.to_thread(
            runner.invoke, cli_app, ["datasets", "export", "kto", "--output", str(out)]
        )
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "manifest.json").read_text())
        data = (out / "kto.jsonl").read_bytes()
        assert manifest["rows"] == 1 and manifest["sha256"] == hashlib.sha256(data).hexdigest()
        assert pq.read_table(out / "kto.parquet").to_pylist() == [json.loads(data)]
        empty = tmp_path / "empty"
        result = await asyncio.to_thread(
            runner.invoke,
            cli_app,
            ["datasets", "export", "dpo", "--output", str(empty), "--source", "curator"],
        )
        assert result.exit_code == 0 and json.loads(result.output)["empty"] is True
        assert (empty / "dpo.jsonl").read_bytes() == b""
        for bad in (["ppo"], ["sft", "--source", "oracle"], ["sft", "--min-confidence", "2"]):
            result = await asyncio.to_thread(
                runner.invoke, cli_app, ["datasets", "export", *bad, "--output", str(out)]
            )
            assert result.exit_code != 0


class TestHuggingFaceDatasets:
    async def test_every_export_loads_with_datasets(
        self,
        client: httpx.AsyncClient,
        market: Market,
        mmlu_market: dict[str, Any],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        import datasets  # the dev extra; imported here so collection stays fast

        columns = {
            "sft": ["messages"],
            "dpo": ["prompt", "chosen", "rejected"],
            "kto": ["prompt", "completion", "label"],
        }
        for kind in KINDS:
            for fmt, loader in (("jsonl", "json"), ("parquet", "parquet")):
                path = tmp_path / f"{kind}.{fmt}"
                path.write_bytes((await export(client, market, kind, format=fmt)).content)
                loaded = datasets.load_dataset(
                    loader, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf")
                )
                rows = jsonl(await export(client, market, kind))
                assert loaded.num_rows == len(rows) > 0
                assert sorted(loaded.column_names) == sorted(columns.get(kind, rows[0].keys()))
                if kind != "router":
                    first = loaded[0]
                    turns = first["messages"] if kind == "sft" else first["prompt"]
                    assert turns[0] == {
                        "role": "user",
                        "content": rows[0]["messages" if kind == "sft" else "prompt"][0]["content"],
                    }
