"""The LLM judge: a registered ``llm`` agent grades a delivered answer by the buyer's rubric.

``Judge.run_once`` takes pending judge evaluations whose task delivered an answer, asks the
judge agent (through the same ``Executor`` the runners use) for a JSON verdict, and labels the
outcome as an ``evaluator``. The judge's fee, held from the buyer at task creation, is paid to
the judge agent for a verdict and refunded otherwise. A judge that fails, times out or answers
outside its rubric leaves the outcome's label as it was: the evaluation is ``failed`` with the
reason (and the raw answer) recorded, never a guessed verdict.

The judge is called outside any database transaction; its verdict is written in a second one
that re-reads the evaluation, so a verdict is applied and a fee settled at most once even when
several judges race (each may call the judge agent; only one verdict counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dukenet.agents import repository as agents_repository
from dukenet.config import Settings
from dukenet.feedback import evaluation as evaluation_service
from dukenet.feedback import labels
from dukenet.feedback.evaluators import JudgeSpec
from dukenet.feedback.models import Evaluation, EvaluationStatus
from dukenet.learning.models import LabelSource
from dukenet.runners.base import ExecutionError, Executor, WorkItem
from dukenet.tasks import repository as tasks_repository
from dukenet.tasks import service as tasks_service
from dukenet.tasks.models import FINAL_STATUSES, Task, TaskStatus

log = structlog.get_logger(__name__)

PROMPT = """You are grading an answer to a task. Follow the rubric exactly.

Rubric:
{rubric}

Task:
{task}
{reference}
Answer to grade:
{answer}

Reply with one JSON object and nothing else: {shape}"""
SHAPES = {
    "pass_fail": '{"verdict": "pass" or "fail", "reasoning": "<one or two sentences>"}',
    "1-10": '{"score": <integer from 1 to 10>, "reasoning": "<one or two sentences>"}',
}
JUDGEABLE = frozenset({TaskStatus.DELIVERED, TaskStatus.COMPLETED, TaskStatus.REJECTED})
"""Statuses of a task whose answer a judge grades (a rejected answer is graded too: the
buyer's label wins, and the pair measures the judge's agreement)."""
ANSWER_CHARS = 20_000  # the answer shown to the judge is cut to this many characters


class OffRubric(ValueError):
    """The judge answered, but not with a verdict its rubric allows."""


def judge_prompt(spec: JudgeSpec, task: str, answer: str) -> str:
    """Return the prompt that asks the judge for a verdict on ``answer`` by ``spec.rubric``."""
    reference = f"\nReference answer:\n{spec.reference}\n" if spec.reference else ""
    return PROMPT.format(
        rubric=spec.rubric,
        task=task,
        reference=reference,
        answer=answer[:ANSWER_CHARS],
        shape=SHAPES[spec.scale],
    )


def parse_verdict(scale: str, text: str) -> tuple[float, dict[str, Any]]:
    """Parse a judge's reply into (quality in [0, 1], detail): ``pass`` 1.0 / ``fail`` 0.0, or
    a score s of 1-10 as (s - 1) / 9. The JSON object may sit in a code fence or in prose.

    Raises:
        OffRubric: no JSON object, or a verdict or score the scale does not allow.
    """
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match is None:
        raise OffRubric("the judge's reply holds no JSON object")
    try:
        body = json.loads(match.group(0))
    except ValueError as exc:
        raise OffRubric(f"the judge's reply is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise OffRubric("the judge's reply is not a JSON object")
    reasoning = body.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, str) else ""
    if scale == "pass_fail":
        verdict = body.get("verdict")
        if not isinstance(verdict, str) or verdict.strip().lower() not in ("pass", "fail"):
            raise OffRubric(f"verdict {verdict!r} is neither 'pass' nor 'fail'")
        passed = verdict.strip().lower() == "pass"
        return (1.0 if passed else 0.0), {
            "verdict": "pass" if passed else "fail",
            "reasoning": reasoning,
        }
    score = body.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or score != int(score):
        raise OffRubric(f"score {score!r} is not an integer")
    if not 1 <= int(score) <= 10:
        raise OffRubric(f"score {int(score)} is outside 1-10")
    return (int(score) - 1) / 9, {"score": int(score), "reasoning": reasoning}


@dataclass(frozen=True)
class JudgeReport:
    """What one pass did: verdicts applied, judgements that failed (with a refund), and
    evaluations dropped because their task never delivered an answer (refunded)."""

    judged: int = 0
    failed: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class _Job:
    evaluation_id: uuid.UUID
    task_id: uuid.UUID
    buyer_id: uuid.UUID
    prompt: str
    complexity: int
    scale: str


class Judge:
    """Runs pending judge evaluations with ``executor`` (an ``LLMExecutor``) under a timeout of
    ``settings.judge_timeout_s`` seconds per call."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        executor: Executor,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._executor = executor

    async def run_once(self, *, limit: int = 20) -> JudgeReport:
        """Judge up to ``limit`` pending evaluations whose task delivered an answer."""
        jobs, dropped = await self._collect(limit)
        judged = failed = 0
        for job in jobs:
            if await self._judge(job):
                judged += 1
            else:
                failed += 1
        report = JudgeReport(judged, failed, dropped)
        if jobs or dropped:
            log.info("judged", judged=judged, failed=failed, dropped=dropped)
        return report

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Judge every ``judge_poll_s`` seconds until ``stop`` is set; errors are logged."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("judge pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.judge_poll_s)

    async def _collect(self, limit: int) -> tuple[list[_Job], int]:
        """Return the jobs ready to judge; refund and drop those whose task ended without an
        answer (failed or cancelled)."""
        jobs: list[_Job] = []
        dropped = 0
        async with self._sessionmaker() as session:
            stmt = (
                select(Evaluation)
                .join(Task, Task.id == Evaluation.task_id)
                .where(
                    Evaluation.kind == "judge",
                    Evaluation.status == EvaluationStatus.PENDING,
                    Task.status.in_(JUDGEABLE | FINAL_STATUSES),
                )
                .order_by(Evaluation.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=Evaluation)
            )
            for evaluation in (await session.execute(stmt)).scalars().all():
                task = await tasks_repository.get(session, evaluation.task_id)
                assert task is not None
                result = await tasks_repository.get_result(session, task.id)
                if result is None or not result.success:
                    if task.status in FINAL_STATUSES:
                        await evaluation_service.settle_judge_fee(
                            session, evaluation, buyer_id=task.buyer_id, paid=False
                        )
                        evaluation_service.fail(evaluation, "the task delivered no answer")
                        dropped += 1
                    continue
                spec = JudgeSpec.model_validate(evaluation.spec)
                evaluation.attempts += 1
                jobs.append(
                    _Job(
                        evaluation.id,
                        task.id,
                        task.buyer_id,
                        judge_prompt(spec, task.description, result.text),
                        task.complexity,
                        spec.scale,
                    )
                )
            await session.commit()
        return jobs, dropped

    async def _judge(self, job: _Job) -> bool:
        """Call the judge for one job and record the verdict or why there is none; return
        whether a verdict was applied."""
        async with self._sessionmaker() as session:
            evaluation = await session.get(Evaluation, job.evaluation_id)
            assert evaluation is not None and evaluation.judge_agent_id is not None
            judge = await agents_repository.get(session, evaluation.judge_agent_id)
            # closing (no commit, no rollback) leaves the agent loaded and detached
        reply: str | None = None
        error: str | None = None
        quality = 0.0
        detail: dict[str, Any] = {}
        if judge is None or not judge.is_enabled:
            error = "the judge agent is gone or disabled"
        else:
            try:
                execution = await asyncio.wait_for(
                    self._executor.execute(judge, WorkItem(job.prompt, job.complexity)),
                    timeout=self._settings.judge_timeout_s,
                )
                reply = execution.text
                quality, detail = parse_verdict(job.scale, reply)
            except TimeoutError:
                error = f"the judge timed out after {self._settings.judge_timeout_s:g} s"
            except ExecutionError as exc:
                error = f"the judge failed: {exc}"
            except OffRubric as exc:
                error = f"the judge answered off-rubric: {exc}"
        async with self._sessionmaker() as session:
            evaluation = (
                await session.execute(
                    select(Evaluation).where(Evaluation.id == job.evaluation_id).with_for_update()
                )
            ).scalar_one()
            if evaluation.status is not EvaluationStatus.PENDING:
                await session.rollback()
                return False  # another judge recorded this evaluation meanwhile
            if error is not None:
                evaluation_service.fail(
                    evaluation, error, {"reply": reply[:2_000]} if reply is not None else None
                )
                await evaluation_service.settle_judge_fee(
                    session, evaluation, buyer_id=job.buyer_id, paid=False
                )
                await session.commit()
                return False
            detail["judge_agent_id"] = str(evaluation.judge_agent_id)
            evaluation.status = EvaluationStatus.DONE
            evaluation.quality = quality
            evaluation.detail = detail
            evaluation.error = None
            await evaluation_service.settle_judge_fee(
                session, evaluation, buyer_id=job.buyer_id, paid=True
            )
            change = await labels.apply(
                session,
                task_id=job.task_id,
                source=LabelSource.EVALUATOR,
                kind="judge",
                quality=quality,
                confidence=labels.JUDGE_CONFIDENCE,
                success_threshold=self._settings.success_threshold,
                detail=detail,
            )
            if change.quality_changed:
                task = await tasks_repository.get(session, job.task_id)
                assert task is not None and task.agent_id is not None
                await tasks_service.update_agent_reputation(
                    session, self._settings, task.agent_id, count_finished=False
                )
            await session.commit()
        return True
