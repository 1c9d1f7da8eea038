"""ORM model of an agent."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dukenet.kit.orm import Base, IdMixin, TimestampMixin, str_enum


class AgentKind(StrEnum):
    """How an agent produces results.

    ``llm``: an OpenAI-compatible chat-completions endpoint; ``replay``: answers from a
    recorded-outcomes dataset; ``builtin``: local code; ``human``: an operator answers;
    ``local``: a model DukeNET fine-tuned itself (``dukenet finetune``), run in-process by
    ``runners.local``.
    """

    LLM = "llm"
    REPLAY = "replay"
    BUILTIN = "builtin"
    HUMAN = "human"
    LOCAL = "local"


class Agent(IdMixin, TimestampMixin, Base):
    """An agent offering work on the market, with its asking base price and reputation.

    ``success_rate`` is the smoothed success rate over the last ``reputation_window`` finished
    tasks and ``reputation_multiplier`` the price tier it earns (``market.reputation``).
    """

    __tablename__ = "agent"

    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[AgentKind] = mapped_column(str_enum(AgentKind, "agent_kind"))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    base_price_sat: Mapped[int] = mapped_column(BigInteger)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_enabled: Mapped[bool] = mapped_column(default=True)
    finished_tasks: Mapped[int] = mapped_column(Integer, default=0)
    success_rate: Mapped[float] = mapped_column(Float, default=0.5)
    reputation_multiplier: Mapped[float] = mapped_column(Float, default=1.2)
