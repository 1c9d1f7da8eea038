"""The ``replay`` agent: answers with a model's recorded response and recorded judgement."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from dukenet.agents.models import Agent
from dukenet.agents.schemas import ReplayAgentConfig
from dukenet.learning.routerbench import FullInfoTable, load_routerbench
from dukenet.runners.base import Execution, ExecutionError, WorkItem


@dataclass(frozen=True)
class _Index:
    tables: tuple[FullInfoTable, ...]
    by_prompt: dict[str, tuple[int, int]]  # prompt text -> (table number, row)


class ReplayExecutor:
    """Looks the task's description up among RouterBench's recorded prompts (train and test) and
    returns the agent's model's recorded answer; an unknown prompt is a failed task.

    The tables are loaded on first use, in a worker thread.
    """

    def __init__(self) -> None:
        self._index: _Index | None = None
        self._lock = asyncio.Lock()

    async def _load(self) -> _Index:
        async with self._lock:
            if self._index is None:
                tables = await asyncio.to_thread(
                    lambda: (load_routerbench("train"), load_routerbench("test"))
                )
                by_prompt: dict[str, tuple[int, int]] = {}
                for t, table in enumerate(tables):
                    for row, prompt in enumerate(table.prompts):
                        by_prompt.setdefault(prompt, (t, row))
                self._index = _Index(tables=tables, by_prompt=by_prompt)
            return self._index

    async def execute(self, agent: Agent, item: WorkItem) -> Execution:
        """Return the recorded response, success and USD cost of the agent's model.

        Raises:
            ExecutionError: the agent's model is not in the dataset.
        """
        config = ReplayAgentConfig.model_validate(agent.config)
        index = await self._load()
        found = index.by_prompt.get(item.description)
        if found is None:
            return Execution(
                text="no recorded answer for this prompt",
                success=False,
                metadata={"replay": "miss", "model": config.model},
            )
        table = index.tables[found[0]]
        if config.model not in table.agents:
            raise ExecutionError(f"model {config.model!r} is not in the {config.dataset} dataset")
        row, col = found[1], table.agents.index(config.model)
        return Execution(
            text=str(table.responses[row, col]),
            success=bool(table.success[row, col]),
            confidence=None,
            cost_usd=float(table.cost_usd[row, col]),
            metadata={"replay": "hit", "model": config.model, "sample_id": table.task_ids[row]},
        )
