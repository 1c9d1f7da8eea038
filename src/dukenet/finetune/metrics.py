"""Metrics a 135M model can move and a favourite answer cannot game (issue #14, section 4).

Every figure is computed on held-out rows (rows the model never trained on) by log-likelihood:
nothing is generated, so no answer-extraction heuristic stands between the model and the score.

Notation: ``x`` a prompt (rendered with the tokenizer's chat template and its generation prompt),
``y`` a completion of ``T`` tokens, ``log π(y | x) = Σ_t log π(y_t | x, y_<t)`` in nats.

- **Preference accuracy** (``implicit_reward_accuracy``). DPO's implicit reward (Rafailov et al.
  2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model", arXiv
  2305.18290, section 5) is ``r(x, y) = β · (log π_θ(y | x) − log π_ref(y | x))``; a pair
  (``y_w`` chosen, ``y_l`` rejected) is ranked right when ``r(x, y_w) > r(x, y_l)``, a tie counts
  one half. The policy equal to its reference ties on every pair (0.5), so for a base model the
  figure to read is the plain **log-likelihood margin** (``likelihood_accuracy``):
  ``log π(y_w | x) > log π(y_l | x)``, summed or per token. A model that always prefers one kind
  of answer (say, short ones) is no better than 0.5 on pairs whose lengths vary both ways.
- **Held-out loss** (``heldout_loss``): mean token negative log-likelihood of the successful
  answers ``NLL = −Σ_i log π(y_i | x_i) / Σ_i T_i`` (nats/token) and its perplexity
  ``exp(NLL)``; ``loss_change`` gives the paired difference after − before.
- **Multiple-choice accuracy by log-likelihood** (``multiple_choice``), MMLU-Pro style (up to 10
  options A-J): the model's answer is the option whose letter (``mode="letter"``: the next token
  after ``The answer is (``) or whose text (``mode="text"``: mean log-likelihood per token) is
  most likely. Beside the accuracy: the chance rate ``mean_i 1 / k_i``, the best a constant letter
  scores on these questions, and the spread of chosen letters (``letter_spread``: histogram,
  entropy ``H = −Σ_l p_l log2 p_l`` bits, share of the commonest letter), so a model that always
  says "A" is visible (entropy 0, top share 1).

Intervals: proportions get the Wilson score interval (Wilson 1927, "Probable inference, the law of
succession, and statistical inference", JASA 22:209); ratios and differences a percentile
bootstrap over rows (Efron & Tibshirani 1993) with a fixed seed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

Messages = Sequence[Mapping[str, str]]
"""A conversation in TRL's conversational format: ``[{"role": ..., "content": ...}, ...]``."""
LETTERS = "ABCDEFGHIJ"
"""Option letters, MMLU-Pro style (at most 10 options)."""
LETTER_PREFIX = "The answer is ("
"""What the assistant's turn starts with before the option letter is scored."""
TEXT_PREFIX = "The answer is: "
"""What the assistant's turn starts with before an option's text is scored."""
MC_INSTRUCTION = "Answer with the letter of the correct option."
"""Appended to each multiple-choice question (a new line before it)."""
DEFAULT_BETA = 0.1
"""DPO's β (TRL's default): it scales the implicit reward, not the ranking."""
_OPTION = re.compile(r"^([A-J])\. ?(.*)$")


class MetricsError(ValueError):
    """The rows cannot be scored (empty, malformed, or more options than letters)."""


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided ``level`` interval [``low``, ``high``] over ``n`` rows."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def as_json(self) -> dict[str, float | int]:
        """Return the interval rounded to 4 decimals."""
        return {
            "estimate": round(self.estimate, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
            "n": self.n,
        }


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def wilson_interval(successes: float, n: int, *, level: float = 0.95) -> Interval:
    """Return the Wilson score interval of the proportion ``successes / n``.

    ``center = (p + z²/2n) / (1 + z²/n)``, ``half = z / (1 + z²/n) · sqrt(p(1−p)/n + z²/4n²)``
    with ``p = successes / n`` and ``z`` the normal quantile of ``level`` (Wilson 1927); half
    successes (ties) are allowed.

    Raises:
        MetricsError: ``n`` below 1 or ``successes`` outside [0, n].
    """
    if n < 1:
        raise MetricsError("no rows to score")
    if not 0 <= successes <= n:
        raise MetricsError(f"successes {successes} outside [0, {n}]")
    z = _z(level)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(p, max(0.0, center - half), min(1.0, center + half), n, level)


def bootstrap_ratio(
    numerators: Sequence[float] | np.ndarray,
    denominators: Sequence[float] | np.ndarray | None = None,
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Return ``Σ numerators / Σ denominators`` (a mean without denominators) with a percentile
    bootstrap interval, resampling rows with replacement (``numpy.random.default_rng(seed)``).

    Raises:
        MetricsError: no rows, or the lengths differ.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, np.float64)
    if num.size == 0:
        raise MetricsError("no rows to score")
    if num.shape != den.shape:
        raise MetricsError("numerators and denominators differ in length")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.size, size=(resamples, num.size))
    stats = num[idx].sum(axis=1) / np.maximum(den[idx].sum(axis=1), 1e-12)
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return Interval(float(num.sum() / den.sum()), float(low), float(high), int(num.size), level)


# -- scoring sequences ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenScores:
    """Per row: the summed log-likelihood of its completion (nats) and its token count."""

    logprob: np.ndarray
    tokens: np.ndarray

    @property
    def per_token(self) -> np.ndarray:
        """Mean log-likelihood per completion token (nats/token)."""
        return np.asarray(self.logprob / np.maximum(self.tokens, 1), dtype=np.float64)


def _as_messages(prompt: str | Messages) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def prompt_ids(tokenizer: Any, prompt: str | Messages, *, prefix: str = "") -> list[int]:
    """Return the token ids of ``prompt`` as the model sees it before answering: the chat
    template with its generation prompt (plain ``content`` lines without a template), then
    ``prefix``, the start of the assistant's turn."""
    messages = _as_messages(prompt)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"{m['content']}\n" for m in messages)
    ids: list[int] = tokenizer(str(text) + prefix, add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and not getattr(tokenizer, "chat_template", None) and ids[:1] != [bos]:
        ids = [bos, *ids]
    return ids


def completion_ids(tokenizer: Any, completion: str, *, eos: bool = True) -> list[int]:
    """Return the token ids of ``completion``, ending with the end-of-sequence token when ``eos``
    (an answer that stops there is scored for stopping)."""
    ids: list[int] = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos_id = getattr(tokenizer, "eos_token_id", None)
    if eos and eos_id is not None:
        ids = [*ids, int(eos_id)]
    return ids


def _truncate(prompt: list[int], completion: list[int], max_length: int) -> tuple[list[int], ...]:
    """Keep at most ``max_length`` tokens: the prompt's last ``max_length // 2`` (when longer),
    then the completion's first tokens that fit."""
    if len(prompt) + len(completion) <= max_length:
        return prompt, completion
    prompt = prompt[-max(1, min(len(prompt), max_length // 2, max_length - 1)) :]
    return prompt, completion[: max(1, max_length - len(prompt))]


def _device(model: Any) -> torch.device:
    device: torch.device = next(model.parameters()).device
    return device


@torch.inference_mode()
def score_completions(
    model: Any,
    items: Sequence[tuple[list[int], list[int]]],
    *,
    max_length: int = 1024,
    batch_size: int = 4,
    pad_id: int = 0,
) -> TokenScores:
    """Return ``log π(y | x)`` and ``T`` of each (prompt ids, completion ids) pair.

    Rows are truncated (``_truncate``), grouped by length into batches of ``batch_size`` padded
    on the right (padding masked), and scored in eval mode without gradients on the model's
    device; log-softmax is taken in float32 over the completion positions only.

    Raises:
        MetricsError: a row with an empty completion.
    """
    if any(not c for _, c in items):
        raise MetricsError("a completion has no tokens")
    was_training = bool(getattr(model, "training", False))
    model.eval()
    rows = [_truncate(list(p), list(c), max_length) for p, c in items]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
    logprob = np.zeros(len(rows))
    tokens = np.zeros(len(rows), dtype=np.int64)
    device = _device(model)
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            seqs = [rows[i][0] + rows[i][1] for i in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, s in enumerate(seqs):
                ids[j, : len(s)] = torch.tensor(s, dtype=torch.long)
                mask[j, : len(s)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for j, i in enumerate(batch):
                p, c = rows[i]
                start_pos = len(p) - 1
                step = logits[j, start_pos : start_pos + len(c)].float().log_softmax(-1)
                target = torch.tensor(c, dtype=torch.long, device=step.device)
                logprob[i] = float(step.gather(-1, target[:, None]).sum())
                tokens[i] = len(c)
    finally:
        if was_training:
            model.train()
    return TokenScores(logprob, tokens)


# -- (a) preference accuracy --------------------------------------------------------------------


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a chosen and a rejected answer (TRL's ``prompt``/``chosen``/``rejected``)."""

    prompt: str | Messages
    chosen: str
    rejected: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PreferencePair:
        """Read a DPO row, conversational (the last message's content) or plain text.

        Raises:
            MetricsError: a column is missing or empty.
        """
        try:
            chosen, rejected = _last_content(row["chosen"]), _last_content(row["rejected"])
            prompt = row["prompt"]
        except (KeyError, TypeError, IndexError) as exc:
            raise MetricsError(f"not a preference row ({exc!r})") from exc
        if not chosen or not rejected:
            raise MetricsError("a preference row has an empty answer")
        return cls(prompt if isinstance(prompt, str) else _as_messages(prompt), chosen, rejected)


def _last_content(value: Any) -> str:
    return value if isinstance(value, str) else str(value[-1]["content"])


@dataclass(frozen=True)
class PairScores:
    """Log-likelihoods of the chosen and the rejected answer of each pair under one model."""

    chosen: TokenScores
    rejected: TokenScores

    def __len__(self) -> int:
        return int(self.chosen.logprob.size)


def score_pairs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    *,
    max_length: int = 1024,
    batch_size: int = 4,
) -> PairScores:
    """Return ``log π(y_w | x)`` and ``log π(y_l | x)`` of every pair under ``model``."""
    items = [(prompt_ids(tokenizer, p.prompt), completion_ids(tokenizer, p.chosen)) for p in pairs]
    items += [
        (prompt_ids(tokenizer, p.prompt), completion_ids(tokenizer, p.rejected)) for p in pairs
    ]
    scores = score_completions(
        model, items, max_length=max_length, batch_size=batch_size, pad_id=_pad_id(tokenizer)
    )
    n = len(pairs)
    return PairScores(
        TokenScores(scores.logprob[:n], scores.tokens[:n]),
        TokenScores(scores.logprob[n:], scores.tokens[n:]),
    )


def _pad_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


@dataclass(frozen=True)
class PreferenceReport:
    """How often chosen outranks rejected: accuracy (ties half) with its Wilson interval, the
    mean margin (chosen − rejected, in the metric's unit) and the number of ties."""

    accuracy: Interval
    mean_margin: float
    ties: int

    def as_json(self) -> dict[str, Any]:
        """Return the report for ``--json``."""
        return {
            "accuracy": self.accuracy.as_json(),
            "mean_margin": round(self.mean_margin, 4),
            "ties": self.ties,
        }


def _ranking(margins: np.ndarray, *, level: float) -> PreferenceReport:
    if margins.size == 0:
        raise MetricsError("no preference pairs to score")
    wins = int((margins > 0).sum())
    ties = int((margins == 0).sum())
    interval = wilson_interval(wins + 0.5 * ties, int(margins.size), level=level)
    return PreferenceReport(interval, float(margins.mean()), ties)


def implicit_reward_accuracy(
    policy: PairScores,
    reference: PairScores,
    *,
    beta: float = DEFAULT_BETA,
    level: float = 0.95,
) -> PreferenceReport:
    """Return how often DPO's implicit reward ranks chosen above rejected.

    ``r(x, y) = β (log π_θ(y|x) − log π_ref(y|x))`` (Rafailov et al. 2023); the margin is
    ``r(x, y_w) − r(x, y_l)``. ``policy`` and ``reference`` score the same pairs.

    Raises:
        MetricsError: no pairs, the two score different numbers of pairs, or ``beta <= 0``.
    """
    if len(policy) != len(reference):
        raise MetricsError("policy and reference scored different pairs")
    if beta <= 0:
        raise MetricsError("beta must be positive")
    chosen = beta * (policy.chosen.logprob - reference.chosen.logprob)
    rejected = beta * (policy.rejected.logprob - reference.rejected.logprob)
    return _ranking(chosen - rejected, level=level)


def likelihood_accuracy(
    scores: PairScores, *, per_token: bool = False, level: float = 0.95
) -> PreferenceReport:
    """Return how often the model alone finds chosen more likely than rejected: by
    ``log π(y|x)`` (nats), or with ``per_token`` by its mean per token (nats/token), which does
    not favour the shorter answer.

    Raises:
        MetricsError: no pairs.
    """
    if per_token:
        margins = scores.chosen.per_token - scores.rejected.per_token
    else:
        margins = scores.chosen.logprob - scores.rejected.logprob
    return _ranking(margins, level=level)


# -- (b) held-out loss --------------------------------------------------------------------------


@dataclass(frozen=True)
class LossReport:
    """Mean token NLL (nats/token) of held-out answers with its bootstrap interval, the
    perplexity ``exp(NLL)``, and the per-row sums and token counts (for ``loss_change``)."""

    nll: Interval
    perplexity: float
    tokens: int
    row_nll: np.ndarray = field(repr=False)
    row_tokens: np.ndarray = field(repr=False)

    def as_json(self) -> dict[str, Any]:
        """Return the report for ``--json``."""
        return {
            "nll": self.nll.as_json(),
            "perplexity": round(self.perplexity, 3),
            "tokens": self.tokens,
        }


def sft_example(row: Mapping[str, Any]) -> tuple[list[dict[str, str]], str]:
    """Split an SFT row (``messages``, the last one the assistant's answer) into (prompt
    messages, answer).

    Raises:
        MetricsError: no ``messages``, or the last is not a non-empty assistant turn.
    """
    messages = row.get("messages")
    if not messages or messages[-1].get("role") != "assistant" or not messages[-1]["content"]:
        raise MetricsError("an SFT row must end with a non-empty assistant message")
    return _as_messages(messages[:-1]), str(messages[-1]["content"])


def heldout_loss(
    model: Any,
    tokenizer: Any,
    examples: Sequence[tuple[str | Messages, str]],
    *,
    max_length: int = 1024,
    batch_size: int = 4,
    level: float = 0.95,
    seed: int = 0,
) -> LossReport:
    """Return the mean token NLL of each (prompt, answer) pair's answer under ``model``:
    ``−Σ log π(y_i|x_i) / Σ T_i``, interval by bootstrap over rows.

    Raises:
        MetricsError: no examples.
    """
    if not examples:
        raise MetricsError("no held-out answers to score")
    items = [(prompt_ids(tokenizer, p), completion_ids(tokenizer, y)) for p, y in examples]
    scores = score_completions(
        model, items, max_length=max_length, batch_size=batch_size, pad_id=_pad_id(tokenizer)
    )
    nll = -scores.logprob
    interval = bootstrap_ratio(nll, scores.tokens, level=level, seed=seed)
    return LossReport(
        interval, math.exp(interval.estimate), int(scores.tokens.sum()), nll, scores.tokens
    )


def loss_change(
    before: LossReport, after: LossReport, *, level: float = 0.95, seed: int = 0
) -> Interval:
    """Return ``NLL_after − NLL_before`` (nats/token; negative: the model got better) with a
    paired bootstrap interval (the same rows resampled for both).

    Raises:
        MetricsError: the reports scored different rows.
    """
    if before.row_nll.shape != after.row_nll.shape or not np.array_equal(
        before.row_tokens, after.row_tokens
    ):
        raise MetricsError("the two loss reports scored different rows")
    rng = np.random.default_rng(seed)
    n = before.row_nll.size
    idx = rng.integers(0, n, size=(2000, n))
    tokens = before.row_tokens[idx].sum(axis=1)
    diffs = (after.row_nll[idx].sum(axis=1) - before.row_nll[idx].sum(axis=1)) / tokens
    alpha = (1 - level) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return Interval(after.nll.estimate - before.nll.estimate, float(low), float(high), n, level)


# -- (c) multiple choice ------------------------------------------------------------------------


@dataclass(frozen=True)
class MultipleChoiceQuestion:
    """A question whose ``prompt`` lists its ``options`` (lettered A, B, ...) and the index of
    the right one."""

    prompt: str
    options: tuple[str, ...]
    answer: int

    def __post_init__(self) -> None:
        if not 2 <= len(self.options) <= len(LETTERS):
            raise MetricsError(f"a question needs 2 to {len(LETTERS)} options")
        if not 0 <= self.answer < len(self.options):
            raise MetricsError("the answer is not one of the options")


def parse_mmlu_pro(prompt: str, gold: str) -> MultipleChoiceQuestion:
    """Read an MMLU-Pro prompt (``Question: ...`` then ``Options:`` and one ``X. text`` line per
    option) with its gold letter.

    Raises:
        MetricsError: no options, letters out of order, or ``gold`` not among them.
    """
    _, sep, tail = prompt.partition("\nOptions:\n")
    if not sep:
        raise MetricsError("the prompt has no 'Options:' section")
    options: list[str] = []
    for line in tail.splitlines():
        match = _OPTION.match(line)
        if match is None:
            if options:  # a continuation line of the previous option
                options[-1] += "\n" + line
            continue
        if match.group(1) != LETTERS[len(options)]:
            raise MetricsError(f"option {match.group(1)} out of order")
        options.append(match.group(2))
    gold = gold.strip().upper()
    if gold not in LETTERS[: len(options)]:
        raise MetricsError(f"gold letter {gold!r} is not an option")
    return MultipleChoiceQuestion(prompt, tuple(options), LETTERS.index(gold))


@dataclass(frozen=True)
class LetterSpread:
    """How the chosen letters spread: counts per letter, entropy (bits), the entropy of a
    uniform choice among the letters offered, and the commonest letter's share."""

    counts: dict[str, int]
    entropy_bits: float
    max_entropy_bits: float
    top_letter: str
    top_share: float

    def as_json(self) -> dict[str, Any]:
        """Return the spread for ``--json``."""
        return {
            "counts": self.counts,
            "entropy_bits": round(self.entropy_bits, 4),
            "max_entropy_bits": round(self.max_entropy_bits, 4),
            "top_letter": self.top_letter,
            "top_share": round(self.top_share, 4),
        }


def letter_spread(letters: Sequence[str], *, offered: int = len(LETTERS)) -> LetterSpread:
    """Return the histogram and entropy ``H = −Σ p_l log2 p_l`` of ``letters``; a constant
    letter has H = 0 and top share 1, a uniform choice among ``offered`` letters log2(offered).

    Raises:
        MetricsError: no letters.
    """
    if not letters:
        raise MetricsError("no letters")
    counts = Counter(letters)
    n = len(letters)
    probs = np.array([c / n for c in counts.values()])
    entropy = float(-(probs * np.log2(probs)).sum()) + 0.0  # + 0.0: no -0.0
    top, top_count = max(sorted(counts.items()), key=lambda kv: kv[1])
    return LetterSpread(
        dict(sorted(counts.items())), entropy, math.log2(offered), top, top_count / n
    )


@dataclass(frozen=True)
class MultipleChoiceReport:
    """Accuracy (Wilson interval), the chance rate ``mean 1/k``, the best constant letter's
    accuracy on the same questions, the spread of the chosen and of the gold letters, and each
    question's chosen letter."""

    mode: str
    accuracy: Interval
    chance: float
    best_constant_letter: float
    chosen: LetterSpread
    gold: LetterSpread
    predictions: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """Return the report for ``--json`` (without the per-question letters)."""
        return {
            "mode": self.mode,
            "accuracy": self.accuracy.as_json(),
            "chance": round(self.chance, 4),
            "best_constant_letter": round(self.best_constant_letter, 4),
            "chosen_letters": self.chosen.as_json(),
            "gold_letters": self.gold.as_json(),
        }


def mc_report(
    questions: Sequence[MultipleChoiceQuestion],
    predictions: Sequence[int],
    *,
    mode: str = "letter",
    level: float = 0.95,
) -> MultipleChoiceReport:
    """Return the figures of ``predictions`` (option indices) on ``questions``.

    Raises:
        MetricsError: no questions, or as many predictions as questions not given.
    """
    if not questions or len(questions) != len(predictions):
        raise MetricsError("one prediction per question is needed")
    right = sum(int(p == q.answer) for q, p in zip(questions, predictions, strict=True))
    chosen = [LETTERS[p] for p in predictions]
    gold = [LETTERS[q.answer] for q in questions]
    widest = max(len(q.options) for q in questions)
    constant = max(sum(int(q.answer == i) for q in questions) for i in range(widest)) / len(
        questions
    )
    return MultipleChoiceReport(
        mode=mode,
        accuracy=wilson_interval(right, len(questions), level=level),
        chance=float(np.mean([1 / len(q.options) for q in questions])),
        best_constant_letter=constant,
        chosen=letter_spread(chosen, offered=widest),
        gold=letter_spread(gold, offered=widest),
        predictions=tuple(chosen),
    )


def _letter_question(question: MultipleChoiceQuestion) -> str:
    return f"{question.prompt}\n{MC_INSTRUCTION}"


def _single_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int] | None:
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return [i[0] for i in ids] if all(len(i) == 1 for i in ids) else None


@torch.inference_mode()
def multiple_choice(
    model: Any,
    tokenizer: Any,
    questions: Sequence[MultipleChoiceQuestion],
    *,
    mode: Literal["letter", "text"] = "letter",
    max_length: int = 1024,
    batch_size: int = 4,
    level: float = 0.95,
) -> MultipleChoiceReport:
    """Answer each question by log-likelihood and return ``mc_report``'s figures.

    ``letter``: the prompt (question, options, ``MC_INSTRUCTION``) then ``LETTER_PREFIX``; the
    answer is the option letter with the highest log-likelihood as the next token(s).
    ``text``: after ``TEXT_PREFIX``, the option whose text has the highest mean log-likelihood
    per token (``k`` completions scored per question).

    Raises:
        MetricsError: no questions.
    """
    if not questions:
        raise MetricsError("no questions")
    pad = _pad_id(tokenizer)
    predictions: list[int] = []
    if mode == "letter":
        letter_ids = _single_tokens(tokenizer, list(LETTERS))
        prompts = [
            prompt_ids(tokenizer, _letter_question(q), prefix=LETTER_PREFIX) for q in questions
        ]
        if letter_ids is not None:
            predictions = _next_token_choice(
                model, prompts, [letter_ids[: len(q.options)] for q in questions],
                max_length=max_length, batch_size=batch_size, pad_id=pad,
            )  # fmt: skip
        else:
            items: list[tuple[list[int], list[int]]] = []
            for q, p in zip(questions, prompts, strict=True):
                items += [(p, completion_ids(tokenizer, LETTERS[i], eos=False))
                          for i in range(len(q.options))]  # fmt: skip
            predictions = _argmax_groups(
                score_completions(model, items, max_length=max_length, batch_size=batch_size,
                                  pad_id=pad).logprob,
                [len(q.options) for q in questions],
            )  # fmt: skip
    else:
        items = []
        for q in questions:
            p = prompt_ids(tokenizer, q.prompt, prefix=TEXT_PREFIX)
            items += [(p, completion_ids(tokenizer, o or " ", eos=False)) for o in q.options]
        scores = score_completions(
            model, items, max_length=max_length, batch_size=batch_size, pad_id=pad
        )
        predictions = _argmax_groups(scores.per_token, [len(q.options) for q in questions])
    return mc_report(questions, predictions, mode=mode, level=level)


def _argmax_groups(values: np.ndarray, sizes: Sequence[int]) -> list[int]:
    out, start = [], 0
    for k in sizes:
        out.append(int(np.argmax(values[start : start + k])))
        start += k
    return out


def _next_token_choice(
    model: Any,
    prompts: Sequence[list[int]],
    candidates: Sequence[list[int]],
    *,
    max_length: int,
    batch_size: int,
    pad_id: int,
) -> list[int]:
    """Return, per prompt, the index of the candidate token with the highest next-token logit
    (left-truncated to ``max_length`` tokens; right padding, the last real position read)."""
    was_training = bool(getattr(model, "training", False))
    model.eval()
    device = _device(model)
    rows = [list(p[-max_length:]) for p in prompts]
    picks = [0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(rows[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, i in enumerate(batch):
                ids[j, : len(rows[i])] = torch.tensor(rows[i], dtype=torch.long)
                mask[j, : len(rows[i])] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for j, i in enumerate(batch):
                last = logits[j, len(rows[i]) - 1].float()
                cand = torch.tensor(candidates[i], dtype=torch.long, device=last.device)
                picks[i] = int(torch.argmax(last[cand]))
    finally:
        if was_training:
            model.train()
    return picks
