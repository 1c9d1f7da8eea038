"""Evaluators a buyer attaches to a task: deterministic checks against a reference answer, or
an LLM judge (``feedback.judge``). Each turns a result's text into a ``Verdict``.

Specs (``TaskCreate.evaluator``), by ``kind``:

- ``exact_match``: ``reference`` text; the answer matches after trimming, collapsing whitespace
  and (unless ``case_sensitive``) lower-casing.
- ``choice``: ``reference`` letter A-Z; the answer's chosen letter is taken from "the answer is
  (X)", "Answer: X", or a final standalone letter (MMLU-Pro's chain-of-thought style).
- ``number``: ``reference`` number and ``tolerance`` (absolute, or relative to the reference
  when ``relative``); the answer's last number is compared.
- ``json_schema``: ``json_schema`` (Draft 2020-12, checked when the task is created); the answer,
  parsed as JSON (a Markdown code fence is allowed), must validate.
- ``judge``: ``agent_id`` of an enabled ``llm`` agent, a ``rubric`` and a ``scale``
  (``pass_fail`` or ``1-10``), optionally a ``reference`` shown to the judge.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import Field, TypeAdapter, field_validator

from dukenet.kit.schema import Schema


class ExactMatchSpec(Schema):
    """The answer must equal ``reference`` (whitespace-normalised, case-insensitive by default)."""

    kind: Literal["exact_match"]
    reference: str = Field(min_length=1, max_length=100_000)
    case_sensitive: bool = False


class ChoiceSpec(Schema):
    """The answer must choose the letter ``reference`` (A-Z)."""

    kind: Literal["choice"]
    reference: str = Field(pattern=r"^[A-Za-z]$")


class NumberSpec(Schema):
    """The answer's last number must be within ``tolerance`` of ``reference``."""

    kind: Literal["number"]
    reference: float
    tolerance: float = Field(default=1e-6, ge=0.0)
    relative: bool = False

    @field_validator("reference", "tolerance")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class JsonSchemaSpec(Schema):
    """The answer must be JSON valid against ``json_schema`` (Draft 2020-12)."""

    kind: Literal["json_schema"]
    json_schema: dict[str, Any]

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON schema: {exc.message}") from exc
        return value


class JudgeSpec(Schema):
    """An LLM judge (a registered ``llm`` agent) grades the answer by ``rubric`` on ``scale``."""

    kind: Literal["judge"]
    agent_id: uuid.UUID
    rubric: str = Field(min_length=1, max_length=20_000)
    scale: Literal["pass_fail", "1-10"] = "pass_fail"
    reference: str | None = Field(default=None, max_length=100_000)


EvaluatorSpec = Annotated[
    ExactMatchSpec | ChoiceSpec | NumberSpec | JsonSchemaSpec | JudgeSpec,
    Field(discriminator="kind"),
]
SPEC_ADAPTER: TypeAdapter[EvaluatorSpec] = TypeAdapter(EvaluatorSpec)
REFERENCE_KINDS = frozenset({"exact_match", "choice", "number", "json_schema"})


@dataclass(frozen=True)
class Verdict:
    """An evaluator's verdict: its ``kind`` (the spec's), ``quality`` in [0, 1] and its
    evidence (``detail``)."""

    kind: str
    quality: float
    detail: dict[str, Any] = field(default_factory=dict)


def _normalise(text: str, case_sensitive: bool) -> str:
    text = " ".join(text.split())
    return text if case_sensitive else text.casefold()


_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*\(?([A-Za-z])\)?(?![A-Za-z])", re.IGNORECASE)
_ANSWER_COLON = re.compile(r"answer\s*:\s*\(?([A-Za-z])\)?(?![A-Za-z])", re.IGNORECASE)
_FINAL_LETTER = re.compile(r"(?<![A-Za-z])\(?([A-Z])\)?[.\s]*$")
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def chosen_letter(text: str) -> str | None:
    """Return the option letter an answer chose (upper case), or None if it names none: the
    last "the answer is (X)", else the last "Answer: X", else a lone capital letter ending the
    text."""
    for pattern in (_ANSWER_IS, _ANSWER_COLON):
        matches = pattern.findall(text)
        if matches:
            return str(matches[-1]).upper()
    final = _FINAL_LETTER.search(text.strip())
    return final.group(1) if final else None


def last_number(text: str) -> float | None:
    """Return the last number written in ``text`` (thousands commas allowed), or None."""
    for token in reversed(_NUMBER.findall(text)):
        try:
            return float(token.replace(",", ""))
        except ValueError:
            continue
    return None


def _json_answer(text: str) -> Any:
    stripped = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.DOTALL)
    return json.loads(fence.group(1) if fence else stripped)


def check(spec: ExactMatchSpec | ChoiceSpec | NumberSpec | JsonSchemaSpec, text: str) -> Verdict:
    """Check an answer against the buyer's reference; quality is 1.0 (pass) or 0.0 (fail), and
    ``detail`` records what was extracted from the answer and why it failed."""
    if isinstance(spec, ExactMatchSpec):
        got = _normalise(text, spec.case_sensitive)
        passed = got == _normalise(spec.reference, spec.case_sensitive)
        return Verdict(spec.kind, float(passed), {"passed": passed, "answer": got[:500]})
    if isinstance(spec, ChoiceSpec):
        letter = chosen_letter(text)
        passed = letter == spec.reference.upper()
        return Verdict(spec.kind, float(passed), {"passed": passed, "answer": letter})
    if isinstance(spec, NumberSpec):
        number = last_number(text)
        if number is None:
            return Verdict(
                spec.kind, 0.0, {"passed": False, "answer": None, "reason": "no number found"}
            )
        allowed = spec.tolerance * (abs(spec.reference) if spec.relative else 1.0)
        passed = abs(number - spec.reference) <= allowed
        return Verdict(
            spec.kind, float(passed), {"passed": passed, "answer": number, "allowed": allowed}
        )
    try:
        document = _json_answer(text)
    except ValueError as exc:
        return Verdict(spec.kind, 0.0, {"passed": False, "reason": f"not JSON: {exc}"})
    errors = sorted(
        jsonschema.Draft202012Validator(spec.json_schema).iter_errors(document),
        key=lambda e: list(e.path),
    )
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        return Verdict(
            spec.kind,
            0.0,
            {"passed": False, "reason": f"{where}: {first.message}", "errors": len(errors)},
        )
    return Verdict(spec.kind, 1.0, {"passed": True})
