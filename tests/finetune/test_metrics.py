"""Flywheel metrics on a tiny random Llama (CPU): a model trained towards the chosen answers
ranks held-out pairs right by DPO's implicit reward and by likelihood, its held-out loss falls;
a model that always says "A" shows zero letter entropy and scores only the share of A answers;
intervals are the textbook ones; MMLU-Pro prompts parse into their options."""

from __future__ import annotations

import csv
import gzip
import math
from importlib import resources
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from dukenet.finetune import metrics as m
from dukenet.finetune.base_model import load_base

pytestmark = pytest.mark.slow

CHOSEN = "The answer is (B) because the options say so."
REJECTED = "No idea at all, sorry, pick whatever you like."
TOPICS = ["rivers", "stars", "trees", "coins", "boats", "clocks", "bridges", "lamps"]


def pairs(topics: list[str]) -> list[m.PreferencePair]:
    return [
        m.PreferencePair(f"Question about {t}: which option?", CHOSEN, REJECTED) for t in topics
    ]


@pytest.fixture(scope="module")
def base() -> tuple[Any, Any]:
    return load_base("tiny-random", device="cpu", seed=0)


@pytest.fixture(scope="module")
def trained(base: tuple[Any, Any]) -> Any:
    """A copy of the base trained (plain AdamW, 40 steps) on the chosen answers of the first
    five topics only."""
    _, tokenizer = base
    policy = load_base("tiny-random", device="cpu", seed=0)[0]
    policy.train()
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    train = pairs(TOPICS[:5])
    for step in range(40):
        p = train[step % len(train)]
        ids = m.prompt_ids(tokenizer, p.prompt) + m.completion_ids(tokenizer, p.chosen)
        n_prompt = len(m.prompt_ids(tokenizer, p.prompt))
        x = torch.tensor([ids])
        labels = x.clone()
        labels[0, :n_prompt] = -100
        loss = policy(input_ids=x, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    return policy


class TestPreferenceAccuracy:
    def test_a_model_trained_towards_chosen_ranks_held_out_pairs_right(
        self, base: tuple[Any, Any], trained: Any
    ) -> None:
        model, tokenizer = base
        held_out = pairs(TOPICS[5:])  # prompts never trained on
        reference = m.score_pairs(model, tokenizer, held_out)
        policy = m.score_pairs(trained, tokenizer, held_out)
        report = m.implicit_reward_accuracy(policy, reference, beta=0.1)
        assert report.accuracy.estimate == 1.0 and report.mean_margin > 0
        assert report.accuracy.n == 3 and report.accuracy.low < 1.0  # 3 pairs: a wide interval
        assert m.likelihood_accuracy(policy).accuracy.estimate == 1.0
        assert m.likelihood_accuracy(policy, per_token=True).accuracy.estimate == 1.0

    def test_the_policy_equal_to_its_reference_ties_on_every_pair(
        self, base: tuple[Any, Any]
    ) -> None:
        model, tokenizer = base
        scores = m.score_pairs(model, tokenizer, pairs(TOPICS))
        report = m.implicit_reward_accuracy(scores, scores)
        assert report.ties == len(TOPICS) and report.accuracy.estimate == 0.5

    def test_swapping_chosen_and_rejected_flips_the_accuracy(
        self, base: tuple[Any, Any], trained: Any
    ) -> None:
        model, tokenizer = base
        swapped = [m.PreferencePair(p.prompt, p.rejected, p.chosen) for p in pairs(TOPICS[5:])]
        report = m.implicit_reward_accuracy(
            m.score_pairs(trained, tokenizer, swapped), m.score_pairs(model, tokenizer, swapped)
        )
        assert report.accuracy.estimate == 0.0 and report.mean_margin < 0

    def test_a_trl_row_is_read_and_a_broken_one_named(self) -> None:
        row = {
            "prompt": [{"role": "user", "content": "Q?"}],
            "chosen": [{"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "assistant", "content": "no"}],
        }
        pair = m.PreferencePair.from_row(row)
        assert (pair.chosen, pair.rejected) == ("yes", "no")
        with pytest.raises(m.MetricsError, match="not a preference row"):
            m.PreferencePair.from_row({"prompt": "Q?"})
        with pytest.raises(m.MetricsError, match="different pairs"):
            m.implicit_reward_accuracy(zeros(1), zeros(2))


def zeros(n: int) -> m.PairScores:
    scores = m.TokenScores(np.zeros(n), np.ones(n, dtype=np.int64))
    return m.PairScores(scores, scores)


class TestHeldOutLoss:
    def test_training_lowers_the_loss_on_held_out_answers(
        self, base: tuple[Any, Any], trained: Any
    ) -> None:
        model, tokenizer = base
        examples = [(p.prompt, p.chosen) for p in pairs(TOPICS[5:])]
        before = m.heldout_loss(model, tokenizer, examples)
        after = m.heldout_loss(trained, tokenizer, examples)
        assert before.nll.estimate > math.log(1000)  # random weights: near log(vocabulary)
        assert after.nll.estimate < before.nll.estimate / 2
        assert after.perplexity == pytest.approx(math.exp(after.nll.estimate))
        change = m.loss_change(before, after)
        assert change.high < 0 and change.estimate == pytest.approx(
            after.nll.estimate - before.nll.estimate
        )

    def test_an_sft_row_splits_into_prompt_and_answer(self) -> None:
        row = {
            "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
        }
        assert m.sft_example(row) == ([{"role": "user", "content": "Q"}], "A")
        with pytest.raises(m.MetricsError, match="assistant"):
            m.sft_example({"messages": [{"role": "user", "content": "Q"}]})


class ConstantLetter(torch.nn.Module):
    """A model double whose next token is always ``token`` (it knows nothing else)."""

    def __init__(self, vocab: int, token: int) -> None:
        super().__init__()
        self.vocab, self.token = vocab, token
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        logits = torch.zeros((*input_ids.shape, self.vocab))
        logits[..., self.token] = 10.0
        return SimpleNamespace(logits=logits)


def mmlu_questions(n: int) -> list[m.MultipleChoiceQuestion]:
    raw = resources.files("dukenet").joinpath("data", "mmlu_pro", "flywheel.csv.gz").read_bytes()
    rows = list(csv.DictReader(gzip.decompress(raw).decode().splitlines(keepends=True)))
    firsts = {r["task_id"]: r for r in rows}
    return [m.parse_mmlu_pro(r["prompt"], r["gold"]) for r in list(firsts.values())[:n]]


class TestMultipleChoice:
    def test_a_model_that_always_says_a_has_zero_letter_entropy(
        self, base: tuple[Any, Any]
    ) -> None:
        _, tokenizer = base
        questions = mmlu_questions(20)
        a = tokenizer("A", add_special_tokens=False)["input_ids"][0]
        report = m.multiple_choice(ConstantLetter(len(tokenizer), a), tokenizer, questions)
        assert set(report.predictions) == {"A"}
        assert report.chosen.entropy_bits == 0.0 and report.chosen.top_share == 1.0
        share_a = sum(q.answer == 0 for q in questions) / len(questions)
        assert report.accuracy.estimate == pytest.approx(share_a)
        assert report.best_constant_letter >= share_a
        assert report.gold.entropy_bits > 1.0  # the gold letters do spread
        assert report.chance == pytest.approx(np.mean([1 / len(q.options) for q in questions]))

    def test_text_mode_picks_the_option_the_model_finds_likeliest(
        self, base: tuple[Any, Any]
    ) -> None:
        _, tokenizer = base
        paris = tokenizer("Paris", add_special_tokens=False)["input_ids"]
        assert len(paris) == 1
        options = ("London", "Paris", "Rome")
        prompt = "Question: capital of France?\nOptions:\nA. London\nB. Paris\nC. Rome"
        q = m.MultipleChoiceQuestion(prompt, options, 1)
        report = m.multiple_choice(
            ConstantLetter(len(tokenizer), paris[0]), tokenizer, [q], mode="text"
        )
        assert report.predictions == ("B",) and report.accuracy.estimate == 1.0

    def test_a_random_model_answers_every_question_within_its_options(
        self, base: tuple[Any, Any]
    ) -> None:
        model, tokenizer = base
        questions = mmlu_questions(12)
        report = m.multiple_choice(model, tokenizer, questions)
        assert len(report.predictions) == 12
        assert all(
            m.LETTERS.index(p) < len(q.options)
            for p, q in zip(report.predictions, questions, strict=True)
        )

    def test_mmlu_pro_prompts_parse_into_their_options(self) -> None:
        q = mmlu_questions(1)[0]
        assert 2 <= len(q.options) <= 10
        assert all(f"\n{m.LETTERS[i]}. {o}" in q.prompt for i, o in enumerate(q.options))
        with pytest.raises(m.MetricsError, match="not an option"):
            m.parse_mmlu_pro("Question: x\nOptions:\nA. 1\nB. 2", "D")
        with pytest.raises(m.MetricsError, match="Options"):
            m.parse_mmlu_pro("Question: x", "A")


class TestIntervals:
    def test_wilson_matches_the_textbook_values(self) -> None:
        interval = m.wilson_interval(8, 10)
        assert (round(interval.low, 3), round(interval.high, 3)) == (0.490, 0.943)
        assert m.wilson_interval(0, 5).low == 0.0 and m.wilson_interval(5, 5).high == 1.0
        with pytest.raises(m.MetricsError):
            m.wilson_interval(1, 0)

    def test_bootstrap_ratio_is_the_pooled_ratio_and_covers_it(self) -> None:
        interval = m.bootstrap_ratio([1.0, 2.0, 3.0, 6.0], [1, 1, 1, 2])
        assert interval.estimate == pytest.approx(12 / 5)
        assert interval.low <= interval.estimate <= interval.high

    def test_uniform_letters_have_the_maximal_entropy(self) -> None:
        spread = m.letter_spread(list("ABCD") * 5, offered=4)
        assert spread.entropy_bits == pytest.approx(2.0) == spread.max_entropy_bits
        assert spread.top_share == 0.25
