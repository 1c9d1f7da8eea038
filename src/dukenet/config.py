"""Settings, read from the environment with the ``DUKENET_`` prefix (pydantic-settings)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# What stands between the processes and PostgreSQL: nothing, or PgBouncer in transaction mode
# (db.create_engine). Here, not in db.py: the CLI's help reads the settings without SQLAlchemy.
Pooler = Literal["none", "pgbouncer"]


class Settings(BaseSettings):
    """Every knob of a DukeNET process; the defaults are the embedded single-machine setup.

    ``database_url`` empty means SQLite (WAL) at ``<var_dir>/dukenet.db``. Money settings are in
    satoshis; durations in seconds.
    """

    model_config = SettingsConfigDict(env_prefix="DUKENET_", env_file=".env", extra="ignore")

    var_dir: Path = Path("var")
    database_url: str = ""
    # what stands between this process and PostgreSQL: "pgbouncer" (transaction pooling mode)
    # turns asyncpg's and SQLAlchemy's prepared-statement caches off and names every prepared
    # statement uniquely (db.pgbouncer_connect_args); "none": a direct connection
    database_pooler: Pooler = "none"
    host: str = "127.0.0.1"
    port: int = 8000
    auto_migrate: bool = True
    # logs (structlog, one line an event): the least level shown; one line a request with
    # access_log (off by default: it is the busiest log of all)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    access_log: bool = False

    # accounts
    jwt_secret: str = ""
    jwt_algorithm: str = "HS256"
    # Fernet key(s) for secrets at rest, comma-separated, newest first (kit/secrets.py);
    # empty: one generated under var_dir
    secret_key: str = ""
    access_token_ttl_s: int = Field(default=3600, gt=0)

    # market (DESIGN.md "Formulas")
    default_base_price_sat: int = Field(default=100_000, gt=0)
    reference_price_sat: int = Field(default=100_000, gt=0)
    default_cost_weight: float = Field(default=0.1, ge=0.0)
    platform_fee_bps: int = Field(default=0, ge=0, le=10_000)
    replay_usd_to_sat: float = Field(default=1e7, gt=0)
    reputation_window: int = Field(default=100, gt=0)
    reputation_prior_successes: float = Field(default=2.0, ge=0.0)
    reputation_prior_failures: float = Field(default=2.0, ge=0.0)
    # against wash trading (market.reputation.weighted_counts): one buyer's outcomes count as at
    # most this many tasks; a pinned task weighs this much; the operator's own purchases nothing
    reputation_per_buyer_cap: float = Field(default=5.0, gt=0)
    reputation_pinned_weight: float = Field(default=0.5, ge=0.0, le=1.0)

    # runners
    embedded_runners: int = Field(default=2, ge=0)
    # the embedded runners on a thread and event loop of their own (runners/background.py);
    # false: on the API's loop, where request handlers starve them under load
    embedded_runners_thread: bool = True
    lease_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    # a released or expired task waits retry_backoff_s x 2^(attempts - 1) s (capped) before
    # its next claim
    retry_backoff_s: float = Field(default=2.0, ge=0.0)
    retry_backoff_max_s: float = Field(default=300.0, ge=0.0)
    # a task nobody claims for this long (an offline runner, an absent human) is offered to the
    # best other agent within budget; 0 waits forever
    claim_timeout_s: float = Field(default=3_600.0, ge=0.0)
    # a task still unclaimed this long after it became claimable (created, or back from its
    # last attempt) fails with a full refund and no outcome; 0 waits forever
    claim_deadline_s: float = Field(default=604_800.0, ge=0.0)
    runner_poll_s: float = Field(default=0.2, gt=0)
    llm_timeout_s: float = Field(default=60.0, gt=0)
    file_context_chars: int = Field(default=8_000, ge=0)
    # escrow: a delivered result waits this long for the buyer to accept or reject it; 0 settles
    # at once. The sweeper (embedded server and every database runner) settles due tasks.
    dispute_window_s: float = Field(default=86_400.0, ge=0.0)
    sweep_interval_s: float = Field(default=5.0, gt=0)
    embedded_sweeper: bool = True
    # LLM judges (feedback.judge): the server grades delivered answers of tasks that asked for
    # a judge every judge_poll_s seconds; a judge call taking longer than judge_timeout_s fails
    embedded_judge: bool = True
    judge_poll_s: float = Field(default=2.0, gt=0)
    judge_timeout_s: float = Field(default=60.0, gt=0)

    # learning
    embedded_trainer: bool = True
    retrain_every_n: int = Field(default=100, ge=1)
    retrain_schedule_s: float = Field(default=86_400.0, gt=0)
    success_drop_threshold: float = Field(default=0.85, ge=0.0, le=1.0)
    success_drop_window: int = Field(default=100, ge=1)
    drift_p_value: float = Field(default=0.01, gt=0.0, lt=1.0)
    trigger_min_new_outcomes: int = Field(default=20, ge=1)
    drift_window: int = Field(default=1_000, ge=10)
    retrain_triggers: frozenset[str] = frozenset({"outcomes", "schedule", "success-drop", "drift"})
    training_timeout_s: float = Field(default=3_600.0, gt=0)
    trainer_poll_s: float = Field(default=1.0, gt=0)
    exploration_epsilon: float = Field(default=0.1, ge=0.0, le=1.0)
    exploration_top_k: int | None = Field(default=None, ge=1)
    exploration_floor: float = Field(default=0.0, ge=0.0, le=1.0)
    # Thompson sampling (learning/policy.py): "epsilon" keeps the exploration_epsilon family above
    exploration: Literal["thompson", "epsilon"] = "thompson"
    thompson_floor: float = Field(default=0.05, ge=0.0, le=1.0)
    thompson_scale: float = Field(default=1.0, ge=0.0)
    thompson_draws: int = Field(default=256, ge=1, le=10_000)
    # explored agent's price <= (1 + cap) x the greedy agent's; unset (None) for no cap
    exploration_cost_cap: float | None = Field(default=1.0, ge=0.0)
    # "price": the cap bounds every explored agent's price; "expected": the decision's mean price
    exploration_cost_cap_kind: Literal["price", "expected"] = "expected"
    # most probability a Thompson decision puts on non-greedy agents (share of explored tasks,
    # whatever the number of agents); unset (None): unbounded. 0.1 from benchmarks/router_quality.py
    # on RouterBench and MMLU-Pro (10 seeds each): online success +0.026 / +0.044 beyond noise,
    # the served champion's AIQ within noise (-0.008 +- 0.011 / +0.008 +- 0.032)
    exploration_budget: float | None = Field(default=0.1, ge=0.0, le=1.0)
    # only the k agents with the best posterior-mean utility take part in the Thompson draws
    thompson_top_k: int | None = Field(default=None, ge=1)
    shadow_mode: bool = True
    # share of tasks the challenger alias routes (canary / A-B split; Thompson only); 0: shadow only
    canary_share: float = Field(default=0.0, ge=0.0, le=0.5)
    split_seed: int = 0
    # an outcome counts as a success for learning iff its quality (in [0, 1]) is at least this
    success_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    # promotion gate: paired bootstrap of the held-out doubly robust policy value difference
    promotion_bootstrap: int = Field(default=1_000, ge=100)
    # cap on the gate's doubly robust importance weights (clipped DR); unset (None): uncapped
    promotion_weight_clip: float | None = Field(default=5.0, ge=1.0)
    # "guardrail": promote unless worse than the champion beyond noise or by more than the
    # margin; "non-inferiority": only when not worse beyond the margin even at the interval's
    # lower end; "superiority": only when better beyond noise (learning/evaluation.py PromotionGate)
    promotion_rule: Literal["guardrail", "non-inferiority", "superiority"] = "guardrail"
    # the gate's margin in normalised utility (success - price / V) units
    promotion_margin: float = Field(default=0.02, ge=0.0, lt=1.0)
    routing_seed: int | None = None
    # pairwise comparisons (comparisons/): this share of new tasks also goes to a second agent
    # (drawn at random, the probability recorded in the task's receipt); "winner" pays only the
    # agent the buyer picks (the other's escrow is refunded), "both" pays both agents
    comparison_share: float = Field(default=0.0, ge=0.0, le=1.0)
    comparison_payment: Literal["both", "winner"] = "winner"

    # gateway (/v1): a call waits this long for its task, then answers 504 with the task id;
    # the bell wakes it when its task is delivered (in any process through the bell's fan-out:
    # Redis, else PostgreSQL LISTEN/NOTIFY, events/bell.py), else it re-reads every gateway_poll_s
    gateway_timeout_s: float = Field(default=300.0, gt=0)
    gateway_poll_s: float = Field(default=0.5, gt=0)
    # the gateway accepts a delivered result for the buyer (false: the dispute window applies)
    gateway_auto_accept: bool = True
    # complexity of a chat request that names none; unset: derived from the last user message
    gateway_complexity: int | None = Field(default=None, ge=1, le=10)
    # webhooks: attempts per delivery, backoff webhook_backoff_s x 2^(attempt - 1) s (capped),
    # per-request timeout; the embedded dispatcher sends from the outbox every webhook_poll_s
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_s: float = Field(default=5.0, ge=0.0)
    webhook_backoff_max_s: float = Field(default=3_600.0, ge=0.0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_poll_s: float = Field(default=1.0, gt=0)
    embedded_webhooks: bool = True

    # files
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    storage_url: str = ""

    # web UI: the built app (web/dist of the checkout when unset) served at / with an SPA fallback
    web_ui: bool = True
    web_dist_dir: Path | None = None
    # live task events (events/hub.py): database poll interval; Redis fan-out with redis_url
    events_poll_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _exploration_adds_up(self) -> Settings:
        if self.exploration_epsilon + self.exploration_floor > 1.0:
            raise ValueError("DUKENET_EXPLORATION_EPSILON + DUKENET_EXPLORATION_FLOOR must be <= 1")
        return self

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "DUKENET_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return value

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to the embedded SQLite file under ``var_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'dukenet.db').resolve()}"

    @property
    def models_dir(self) -> Path:
        """Directory holding model artifacts (one skops file per version)."""
        return self.var_dir / "models"

    def resolved_jwt_secret(self) -> str:
        """Return the JWT signing secret, creating and persisting one under ``var_dir`` if unset.

        A persisted secret keeps tokens valid across restarts of the embedded server; set
        ``DUKENET_JWT_SECRET`` explicitly when several API processes must share it.
        """
        if self.jwt_secret:
            return self.jwt_secret
        path = self.var_dir / "jwt_secret"
        if path.exists():
            return path.read_text().strip()
        self.var_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = secrets.token_urlsafe(48)
        path.write_text(secret)
        path.chmod(0o600)
        return secret

    # accounts: sessions, API keys and login rate limits (limits strings: "10/minute")
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, gt=0)
    api_key_touch_interval_s: float = Field(default=60.0, ge=0.0)
    redis_url: str = ""
    rate_limit_key_prefix: str = "dukenet"
    login_rate_limit_per_email: str = "10/minute"
    login_rate_limit_per_ip: str = "30/minute"
    register_rate_limit_per_ip: str = "10/hour"
    # proxies whose X-Forwarded-For / -Proto are believed (IPs or CIDRs, comma-separated, for
    # uvicorn's forwarded_allow_ips); empty: none, the peer address is the client
    trusted_proxies: str = ""

    # security (kit/netguard.py): CIDRs that agents' base_url may reach although they are not
    # public (loopback, private, link-local), comma-separated, e.g. "127.0.0.0/8,::1/128"
    allowed_agent_networks: str = ""
    # kit/hardening.py: largest non-multipart request body (bytes; 413 above); browser origins
    # allowed by CORS, comma-separated (empty: CORS off)
    max_json_body_bytes: int = Field(default=1024 * 1024, gt=0)
    cors_origins: str = ""
    # /metrics answers only "Authorization: Bearer <metrics_token>" when set
    metrics_token: str = ""
    # a quote (POST /tasks/quote) binds agent and price for this long (seconds)
    quote_ttl_s: float = Field(default=600.0, gt=0)

    @field_validator("allowed_agent_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        from dukenet.kit.netguard import parse_networks

        parse_networks(value)
        return value

    # payments (payments/providers.py): "ledger" books deposits (admin credits) and payouts in
    # the ledger only; "lightning" speaks an LNbits-style REST API at lightning_url (invoices for
    # deposits, pay-invoice for payouts) with the wallet's admin key lightning_api_key
    payment_provider: Literal["ledger", "lightning"] = "ledger"
    lightning_url: str = ""
    lightning_api_key: SecretStr = SecretStr("")
    lightning_timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _lightning_configured(self) -> Settings:
        if self.payment_provider == "lightning" and not (
            self.lightning_url.startswith(("http://", "https://"))
            and self.lightning_api_key.get_secret_value()
        ):
            raise ValueError(
                "DUKENET_PAYMENT_PROVIDER=lightning needs DUKENET_LIGHTNING_URL (http:// or "
                "https://) and DUKENET_LIGHTNING_API_KEY"
            )
        return self
