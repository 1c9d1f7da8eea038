"""The ``replay`` agent: answers with its model's recorded response, judgement and cost.

A replay agent's configuration names a dataset and a model (``ReplayAgentConfig``). The executor
holds recorded-outcomes datasets in the long format (``dukenet.replay.dataset``) by name, finds the
recorded task by the dataset task id the market task carries (``external_id``; by its prompt text
only when it carries none and the prompt is unique), and returns that model's recorded outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping

from dukenet.agents.models import Agent
from dukenet.agents.schemas import ReplayAgentConfig
from dukenet.replay.dataset import Lookup, RecordedOutcomes
from dukenet.runners.base import Execution, ExecutionError, WorkItem

NO_RECORD = "no recorded answer for this prompt"
NO_ANSWERS: dict[str, str] = {
    Lookup.MISSING: NO_RECORD,
    Lookup.AMBIGUOUS: (
        "no recorded answer chosen: several recorded tasks share this prompt and the task "
        "carries no dataset task id (external_id)"
    ),
    Lookup.MISMATCH: "no recorded answer: the dataset task named by external_id has another prompt",
    "unrecorded": "no recorded answer of this model for this task",
}
"""The text of an unsuccessful replay answer, by ``metadata["lookup"]``."""


def _builtin_datasets() -> dict[str, RecordedOutcomes]:
    from dukenet.learning.routerbench import routerbench_outcomes

    return {"routerbench": routerbench_outcomes("all")}


class ReplayExecutor:
    """Answers replay agents from recorded-outcomes datasets held by name.

    ``ReplayExecutor()`` holds the built-in RouterBench (train and test) as ``routerbench``;
    ``ReplayExecutor({"name": dataset, ...})`` holds the given datasets instead. A ``load``
    callable is run once, on first use, in a worker thread (datasets can take seconds to read);
    ``names`` says which datasets it returns. A runner only claims tasks of replay agents whose
    dataset this executor holds (``handles``).

    Behaviour, for an agent replaying ``model`` of ``dataset``:
    - the recorded task is the one whose id the work item carries (``external_id``), provided its
      prompt is the item's description; an item without an id is matched by its prompt, and only
      when exactly one recorded task has that prompt (``RecordedOutcomes.find``);
    - the task is found and the model's outcome on it is recorded: the recorded response, the
      verdict (``success``) and the cost in USD; ``metadata`` carries the dataset, model, task id
      and the recorded quality in [0, 1];
    - otherwise an unsuccessful answer (no cost; ``NO_ANSWERS`` has its text), so the task fails
      with a refund — a replay cannot invent an answer. ``metadata["replay"]`` is ``"miss"`` and
      ``metadata["lookup"]`` says why: ``missing`` (no such task id, or no task with the prompt),
      ``ambiguous`` (no id, several tasks share the prompt; ``candidates`` lists their ids),
      ``mismatch`` (the id's task has another prompt) or ``unrecorded`` (the model never
      answered that task);
    - this executor does not hold the dataset, or the model is not in it: ``ExecutionError`` (the
      agent is misconfigured for this runner; the task is released and retried or refunded).
    """

    def __init__(
        self,
        datasets: Mapping[str, RecordedOutcomes] | None = None,
        *,
        load: Callable[[], Mapping[str, RecordedOutcomes]] | None = None,
        names: Collection[str] | None = None,
    ) -> None:
        if datasets is not None and load is not None:
            raise ValueError("give datasets or load, not both")
        if names is not None:
            self._names = frozenset(names)
        elif datasets is not None:
            self._names = frozenset(datasets)
        else:
            self._names = frozenset({"routerbench"} if load is None else ())
        self._datasets: dict[str, RecordedOutcomes] | None = (
            dict(datasets) if datasets is not None else None
        )
        self._load_datasets = load or _builtin_datasets
        self._lock = asyncio.Lock()

    async def _held(self) -> dict[str, RecordedOutcomes]:
        async with self._lock:
            if self._datasets is None:
                self._datasets = dict(await asyncio.to_thread(self._load_datasets))
            return self._datasets

    def handles(self, agent: Agent) -> bool:
        """Whether this executor holds the dataset the replay agent names (``names``: the
        given datasets' names, ``routerbench`` for the built-in one, or what ``load`` returns)."""
        return str(agent.config.get("dataset", "routerbench")) in self._names

    async def execute(self, agent: Agent, item: WorkItem) -> Execution:
        """Return the recorded response, success and USD cost of the agent's model on the prompt.

        Raises:
            ExecutionError: the dataset is not held by this executor or the model is not in it.
        """
        config = ReplayAgentConfig.model_validate(agent.config)
        dataset = (await self._held()).get(config.dataset)
        if dataset is None:
            raise ExecutionError(f"dataset {config.dataset!r} is not loaded in this runner")
        if config.model not in dataset.agents:
            raise ExecutionError(f"model {config.model!r} is not in the {config.dataset} dataset")
        found = dataset.find(item.description, item.external_id)
        task = found.task
        outcome = None if task is None else dataset.outcome(task.task_id, config.model)
        if task is None or outcome is None:
            why = found.lookup.value if task is None else "unrecorded"
            metadata: dict[str, object] = {
                "replay": "miss",
                "lookup": why,
                "dataset": config.dataset,
                "model": config.model,
            }
            if item.external_id is not None:
                metadata["task_id"] = item.external_id
            if found.lookup is Lookup.AMBIGUOUS:
                metadata["candidates"] = list(found.candidates)
            return Execution(text=NO_ANSWERS[why], success=False, metadata=metadata)
        return Execution(
            text=outcome.response or "",
            success=outcome.success,
            confidence=None,
            cost_usd=outcome.cost_usd,
            metadata={
                "replay": "hit",
                "dataset": config.dataset,
                "model": config.model,
                "task_id": task.task_id,
                "quality": outcome.quality,
            },
        )
