"""Settings (DESIGN.md §1).

Every setting is read from the environment under its exact documented name. ``Settings()``
never raises for semantic problems; :meth:`Settings.problems` lists them one readable line
each and :func:`load_settings` turns a non-empty list into a :class:`~shoal.errors.ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shoal.errors import ConfigError

DEMO_MODEL = "shoal/demo"
_PROVIDER_KEYS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "OPENROUTER_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
)


def _env(name: str) -> AliasChoices:
    """The environment variable a setting is read from (its exact documented name)."""
    return AliasChoices(name)


class Settings(BaseSettings):
    """All of shoal's configuration. Field docs become `shoal serve --help`."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, frozen=True
    )

    # -- core ---------------------------------------------------------------------------------
    env: Literal["development", "production"] = Field(
        "development",
        description="development | production (strict checks)",
        validation_alias=_env("SHOAL_ENV"),
    )
    data_dir: Path = Field(
        Path(".shoal"),
        description="SQLite file, sandbox workspaces, generated keys",
        validation_alias=_env("SHOAL_DATA_DIR"),
    )
    database_url: str | None = Field(
        None,
        description="sqlite:///… (default: $SHOAL_DATA_DIR/shoal.db) or postgresql://…",
        validation_alias=_env("SHOAL_DATABASE_URL"),
    )
    broker_url: str | None = Field(
        None,
        description="amqp://… (unset: in-process queue)",
        validation_alias=_env("SHOAL_BROKER_URL"),
    )
    redis_url: str | None = Field(
        None,
        description="redis://… (unset: in-memory bus)",
        validation_alias=_env("SHOAL_REDIS_URL"),
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="the public origin",
        validation_alias=_env("SHOAL_PUBLIC_URL"),
    )
    preview_url: str | None = Field(
        None,
        description="a separate origin for the sandbox port relay (unset: the public origin)",
        validation_alias=_env("SHOAL_PREVIEW_URL"),
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated allowed browser origins",
        validation_alias=_env("SHOAL_CORS_ORIGINS"),
    )

    # -- sandbox ------------------------------------------------------------------------------
    sandbox_provider: Literal["local", "daytona", "unsafe-local"] = Field(
        "local",
        description="local | daytona | unsafe-local",
        validation_alias=_env("SHOAL_SANDBOX_PROVIDER"),
    )
    daytona_api_key: str | None = Field(None, validation_alias=_env("DAYTONA_API_KEY"))
    daytona_api_url: str | None = Field(None, validation_alias=_env("DAYTONA_API_URL"))
    daytona_target: str | None = Field(None, validation_alias=_env("DAYTONA_TARGET"))
    # -- sandbox: local provider limits (issue 6; owned by src/shoal/sandbox) -------------------
    sandbox_cpu_seconds: int = Field(
        600,
        ge=1,
        description="CPU time one command may use before it is killed (RLIMIT_CPU)",
        validation_alias=_env("SHOAL_SANDBOX_CPU_SECONDS"),
    )
    sandbox_cpus: float = Field(
        1.0,
        gt=0,
        le=256,
        description="CPU bandwidth of one sandbox, in cores (cgroup cpu.max)",
        validation_alias=_env("SHOAL_SANDBOX_CPUS"),
    )
    sandbox_memory_mb: int = Field(
        2048,
        ge=64,
        description="memory of one sandbox (cgroup memory.max)",
        validation_alias=_env("SHOAL_SANDBOX_MEMORY_MB"),
    )
    sandbox_address_space_mb: int = Field(
        8192,
        ge=4096,
        description="virtual address space per process (RLIMIT_AS; ≥ 4 GiB for Node/Go/JVM)",
        validation_alias=_env("SHOAL_SANDBOX_ADDRESS_SPACE_MB"),
    )
    sandbox_pids: int = Field(
        512,
        ge=16,
        description="processes and threads in one sandbox (cgroup pids.max, RLIMIT_NPROC)",
        validation_alias=_env("SHOAL_SANDBOX_PIDS"),
    )
    sandbox_workspace_mb: int = Field(
        2048,
        ge=16,
        description="size limit of one sandbox's /workspace",
        validation_alias=_env("SHOAL_SANDBOX_WORKSPACE_MB"),
    )
    sandbox_file_mb: int = Field(
        1024,
        ge=1,
        description="largest file a sandbox may write (RLIMIT_FSIZE)",
        validation_alias=_env("SHOAL_SANDBOX_FILE_MB"),
    )
    sandbox_uid_base: int = Field(
        200_000,
        ge=1000,
        description="first host uid given to sandboxes (one uid per sandbox when run as root)",
        validation_alias=_env("SHOAL_SANDBOX_UID_BASE"),
    )
    sandbox_uid_count: int = Field(
        10_000,
        ge=1,
        description="how many sandbox uids there are from SHOAL_SANDBOX_UID_BASE",
        validation_alias=_env("SHOAL_SANDBOX_UID_COUNT"),
    )
    # -- end of sandbox limits -------------------------------------------------------------------
    # -- sandbox: Daytona provider (issue 6; owned by src/shoal/sandbox/daytona.py) ------------
    daytona_snapshot: str | None = Field(
        None,
        description="Daytona snapshot new sandboxes boot (default: Daytona's default snapshot)",
        validation_alias=_env("SHOAL_DAYTONA_SNAPSHOT"),
    )
    sandbox_image: str | None = Field(
        None,
        description="container image new Daytona sandboxes are built from when no snapshot is set",
        validation_alias=_env("SHOAL_SANDBOX_IMAGE"),
    )
    sandbox_auto_stop_minutes: int = Field(
        15,
        ge=0,
        description="minutes of inactivity before Daytona stops a sandbox (0 = never)",
        validation_alias=_env("SHOAL_SANDBOX_AUTO_STOP_MINUTES"),
    )
    # -- end of sandbox: Daytona ----------------------------------------------------------------
    # -- project sandboxes (src/shoal/sandboxes: manager, files API, port relay) ----------------
    sandbox_idle_stop_seconds: float = Field(
        900.0,
        gt=0,
        description="stop a started sandbox after this long without tool calls, file or port "
        "traffic (never while its project has a running run)",
        validation_alias=_env("SHOAL_SANDBOX_IDLE_STOP_SECONDS"),
    )
    sandbox_idle_check_seconds: float = Field(
        60.0,
        gt=0,
        description="how often a process checks for idle sandboxes to stop",
        validation_alias=_env("SHOAL_SANDBOX_IDLE_CHECK_SECONDS"),
    )
    sandbox_upload_max_bytes: int = Field(
        100 * 2**20,
        ge=1,
        description="largest file accepted by the files API and by initiate uploads",
        validation_alias=_env("SHOAL_SANDBOX_UPLOAD_MAX_BYTES"),
    )
    sandbox_relay_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="how long the port relay waits for a sandbox server's response",
        validation_alias=_env("SHOAL_SANDBOX_RELAY_TIMEOUT_SECONDS"),
    )
    # -- end of project sandboxes ----------------------------------------------------------------

    # -- auth ---------------------------------------------------------------------------------
    auth_mode: Literal["builtin", "supabase"] = Field(
        "builtin", description="builtin | supabase", validation_alias=_env("SHOAL_AUTH_MODE")
    )
    auth_signing_key: str | None = Field(
        None,
        description="PEM or JWKS private key (unset: generated into the data dir)",
        validation_alias=_env("SHOAL_AUTH_SIGNING_KEY"),
    )
    supabase_url: str | None = Field(None, validation_alias=_env("SUPABASE_URL"))
    supabase_jwt_secret: str | None = Field(None, validation_alias=_env("SUPABASE_JWT_SECRET"))
    supabase_jwks_url: str | None = Field(None, validation_alias=_env("SUPABASE_JWKS_URL"))
    access_token_ttl_seconds: int = Field(
        3600, ge=60, le=86400, validation_alias=_env("SHOAL_ACCESS_TOKEN_TTL_SECONDS")
    )
    refresh_token_ttl_seconds: int = Field(
        30 * 86400, ge=3600, validation_alias=_env("SHOAL_REFRESH_TOKEN_TTL_SECONDS")
    )
    login_rate_limit: int = Field(
        10,
        ge=1,
        description="password sign-in attempts per email and per client per window",
        validation_alias=_env("SHOAL_LOGIN_RATE_LIMIT"),
    )
    login_rate_window_seconds: int = Field(
        60, ge=1, validation_alias=_env("SHOAL_LOGIN_RATE_WINDOW_SECONDS")
    )

    # -- billing ------------------------------------------------------------------------------
    billing_enabled: bool = Field(False, validation_alias=_env("SHOAL_BILLING_ENABLED"))
    stripe_secret_key: str | None = Field(None, validation_alias=_env("STRIPE_SECRET_KEY"))
    stripe_webhook_secret: str | None = Field(None, validation_alias=_env("STRIPE_WEBHOOK_SECRET"))
    stripe_api_base: str | None = Field(None, validation_alias=_env("STRIPE_API_BASE"))
    # -- billing (issue 7) ----------------------------------------------------------------------
    plans_file: Path | None = Field(
        None,
        description="TOML file of billing plans (unset: the packaged free/pro plans)",
        validation_alias=_env("SHOAL_PLANS_FILE"),
    )
    sandbox_usd_per_second: float = Field(
        0.0,
        ge=0,
        description="price of one second of sandbox exec, recorded in the usage ledger",
        validation_alias=_env("SHOAL_SANDBOX_USD_PER_SECOND"),
    )
    billing_allowed_redirect_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated extra origins allowed for checkout/portal return URLs "
        "(SHOAL_PUBLIC_URL and SHOAL_CORS_ORIGINS always are)",
        validation_alias=_env("SHOAL_BILLING_ALLOWED_REDIRECT_ORIGINS"),
    )
    stripe_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=120,
        description="bound on every Stripe API call (past it: 503 dependency_unavailable)",
        validation_alias=_env("SHOAL_STRIPE_TIMEOUT_SECONDS"),
    )

    @field_validator("billing_allowed_redirect_origins", mode="before")
    @classmethod
    def _split_billing_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().rstrip("/") for item in value.split(",") if item.strip()]
        return value

    @field_validator("plans_file")
    @classmethod
    def _plans_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    # -- end of billing (issue 7) block -----------------------------------------------------------

    # -- tracing ------------------------------------------------------------------------------
    langfuse_public_key: str | None = Field(None, validation_alias=_env("LANGFUSE_PUBLIC_KEY"))
    langfuse_secret_key: str | None = Field(None, validation_alias=_env("LANGFUSE_SECRET_KEY"))
    langfuse_host: str | None = Field(None, validation_alias=_env("LANGFUSE_HOST"))
    # -- observability (issue 8: tracing export, metrics) -----------------------------------------
    tracing_flush_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=120,
        description="bound on flushing pending traces to Langfuse at shutdown",
        validation_alias=_env("SHOAL_TRACING_FLUSH_TIMEOUT_SECONDS"),
    )
    metrics_token: str | None = Field(
        None,
        description="bearer token required by GET /metrics (unset: open)",
        validation_alias=_env("SHOAL_METRICS_TOKEN"),
    )
    worker_metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="serve GET /metrics from `shoal worker` on this port (unset: not served)",
        validation_alias=_env("SHOAL_WORKER_METRICS_PORT"),
    )
    worker_metrics_host: str = Field(
        "127.0.0.1",
        description="address the worker's metrics endpoint listens on",
        validation_alias=_env("SHOAL_WORKER_METRICS_HOST"),
    )

    # -- models and tools ---------------------------------------------------------------------
    default_model: str | None = Field(
        None,
        description="any LiteLLM model (unset: shoal/demo when no provider key is set)",
        validation_alias=_env("SHOAL_DEFAULT_MODEL"),
    )
    tavily_api_key: str | None = Field(None, validation_alias=_env("TAVILY_API_KEY"))

    # -- engine, llm and tools (issue 4; owned by src/shoal/{llm,tools,engine}) ---------------
    llm_model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description='JSON map of model aliases, e.g. {"fast": "openai/gpt-4o-mini"}',
        validation_alias=_env("SHOAL_LLM_MODEL_ALIASES"),
    )
    llm_max_retries: int = Field(
        3,
        ge=0,
        le=20,
        description="retries on 429/5xx/connection errors",
        validation_alias=_env("SHOAL_LLM_MAX_RETRIES"),
    )
    llm_retry_base_delay_seconds: float = Field(
        1.0,
        ge=0,
        description="first backoff delay (doubles each retry)",
        validation_alias=_env("SHOAL_LLM_RETRY_BASE_DELAY_SECONDS"),
    )
    llm_retry_max_delay_seconds: float = Field(
        30.0, ge=0, validation_alias=_env("SHOAL_LLM_RETRY_MAX_DELAY_SECONDS")
    )
    llm_timeout_seconds: float = Field(
        600.0, gt=0, validation_alias=_env("SHOAL_LLM_TIMEOUT_SECONDS")
    )
    llm_default_context_window: int = Field(
        128_000,
        ge=1024,
        description="context window assumed for models LiteLLM does not know",
        validation_alias=_env("SHOAL_LLM_DEFAULT_CONTEXT_WINDOW"),
    )
    engine_max_iterations: int = Field(
        100,
        ge=1,
        le=1000,
        description="default agent loop bound per run",
        validation_alias=_env("SHOAL_MAX_ITERATIONS"),
    )
    engine_max_auto_continues: int = Field(
        3,
        ge=0,
        description="continuations after finish_reason=length",
        validation_alias=_env("SHOAL_MAX_AUTO_CONTINUES"),
    )
    context_summarize_threshold: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="share of the model's window that triggers summarisation",
        validation_alias=_env("SHOAL_CONTEXT_SUMMARIZE_THRESHOLD"),
    )
    prompt_tool_output_max_chars: int = Field(
        20_000,
        ge=200,
        description="tool output longer than this is clipped in the prompt",
        validation_alias=_env("SHOAL_PROMPT_TOOL_OUTPUT_MAX_CHARS"),
    )
    tool_output_max_chars: int = Field(
        200_000,
        ge=1000,
        description="tool output longer than this is clipped when stored",
        validation_alias=_env("SHOAL_TOOL_OUTPUT_MAX_CHARS"),
    )
    scrape_max_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, validation_alias=_env("SHOAL_SCRAPE_MAX_BYTES")
    )
    scrape_timeout_seconds: float = Field(
        20.0, gt=0, validation_alias=_env("SHOAL_SCRAPE_TIMEOUT_SECONDS")
    )
    scrape_max_redirects: int = Field(
        5, ge=0, le=20, validation_alias=_env("SHOAL_SCRAPE_MAX_REDIRECTS")
    )
    # -- end of issue 4 block -------------------------------------------------------------------

    # -- sandbox tools (issue 6 item 6; owned by src/shoal/tools/builtin/{shell,files,image}) --
    command_timeout_seconds: int = Field(
        60,
        ge=1,
        description="execute_command: default timeout of a blocking command",
        validation_alias=_env("SHOAL_COMMAND_TIMEOUT_SECONDS"),
    )
    command_max_timeout_seconds: int = Field(
        1800,
        ge=1,
        description="execute_command: largest timeout a model may ask for",
        validation_alias=_env("SHOAL_COMMAND_MAX_TIMEOUT_SECONDS"),
    )
    command_output_max_chars: int = Field(
        20_000,
        ge=500,
        description="command output kept for the model (the newest part)",
        validation_alias=_env("SHOAL_COMMAND_OUTPUT_MAX_CHARS"),
    )
    command_live_output_max_chars: int = Field(
        1_000_000,
        ge=0,
        description="command output streamed live as tool_output_delta events, per call",
        validation_alias=_env("SHOAL_COMMAND_LIVE_OUTPUT_MAX_CHARS"),
    )
    command_session_wait_seconds: float = Field(
        1.0,
        ge=0,
        le=30,
        description="execute_command: how long a background session's first output is awaited",
        validation_alias=_env("SHOAL_COMMAND_SESSION_WAIT_SECONDS"),
    )
    read_file_max_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="read_file / str_replace: largest file they load",
        validation_alias=_env("SHOAL_READ_FILE_MAX_BYTES"),
    )
    see_image_max_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        description="see_image: largest image shown to the model",
        validation_alias=_env("SHOAL_SEE_IMAGE_MAX_BYTES"),
    )
    # -- end of sandbox tools block ---------------------------------------------------------------

    # -- runs: intervals and caps ---------------------------------------------------------------
    run_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="a worker's claim on a run lapses this long after its last heartbeat",
        validation_alias=_env("SHOAL_RUN_LEASE_SECONDS"),
    )
    run_heartbeat_seconds: float = Field(
        5.0,
        gt=0,
        description="lease renewal and stop-flag check interval",
        validation_alias=_env("SHOAL_RUN_HEARTBEAT_SECONDS"),
    )
    sweeper_interval_seconds: float = Field(
        10.0, gt=0, validation_alias=_env("SHOAL_SWEEPER_INTERVAL_SECONDS")
    )
    requeue_seconds: float = Field(
        30.0,
        gt=0,
        description="re-wake a queued run whose last wake-up is older than this",
        validation_alias=_env("SHOAL_REQUEUE_SECONDS"),
    )
    queue_timeout_seconds: float = Field(
        900.0,
        gt=0,
        description="fail a run still queued after this long",
        validation_alias=_env("SHOAL_QUEUE_TIMEOUT_SECONDS"),
    )
    drain_timeout_seconds: float = Field(
        30.0,
        ge=0,
        description="on SIGTERM, wait this long for runs before stopping them",
        validation_alias=_env("SHOAL_DRAIN_TIMEOUT_SECONDS"),
    )
    sse_ping_seconds: float = Field(
        15.0, gt=0, le=15.0, validation_alias=_env("SHOAL_SSE_PING_SECONDS")
    )
    event_flush_ms: int = Field(250, ge=1, le=250, validation_alias=_env("SHOAL_EVENT_FLUSH_MS"))
    event_retention_days: float = Field(
        30.0, gt=0, validation_alias=_env("SHOAL_EVENT_RETENTION_DAYS")
    )
    worker_max_runs: int = Field(
        500,
        ge=1,
        description="concurrent runs per worker process",
        validation_alias=_env("SHOAL_WORKER_MAX_RUNS"),
    )
    max_active_runs_per_account: int = Field(
        20,
        ge=1,
        description="queued + running runs per account (a plan may set its own)",
        validation_alias=_env("SHOAL_MAX_ACTIVE_RUNS_PER_ACCOUNT"),
    )
    concurrency_overflow: Literal["reject", "queue"] = Field(
        "reject",
        description="over the account cap: 429 (reject) or stay queued (queue)",
        validation_alias=_env("SHOAL_CONCURRENCY_OVERFLOW"),
    )
    # -- database pools (issue 5: run-path performance; owned by src/shoal/db/engine.py) -------
    db_pool_size: int = Field(
        10,
        ge=1,
        description="Postgres connections kept open per process (SQLite: read connections)",
        validation_alias=_env("SHOAL_DB_POOL_SIZE"),
    )
    db_max_overflow: int = Field(
        20,
        ge=0,
        description="extra connections opened under load, closed when idle",
        validation_alias=_env("SHOAL_DB_MAX_OVERFLOW"),
    )
    db_pool_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="wait for a free connection; past it a request answers 503 with Retry-After",
        validation_alias=_env("SHOAL_DB_POOL_TIMEOUT_SECONDS"),
    )
    # -- end of database pools -------------------------------------------------------------------
    # -- limits -------------------------------------------------------------------------------
    max_request_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, validation_alias=_env("SHOAL_MAX_REQUEST_BYTES")
    )
    max_message_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="largest message content",
        validation_alias=_env("SHOAL_MAX_MESSAGE_BYTES"),
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().rstrip("/") for item in value.split(",") if item.strip()]
        return value

    # -- derived ------------------------------------------------------------------------------
    @property
    def relay_url(self) -> str:
        """The origin of sandbox port URLs: the preview origin when one is set."""
        return (self.preview_url or self.public_url).rstrip("/")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'shoal.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_default_model(self) -> str:
        import os

        if self.default_model:
            return self.default_model
        if any(os.environ.get(name) for name in _PROVIDER_KEYS):
            return "gpt-4o-mini" if os.environ.get("OPENAI_API_KEY") else DEMO_MODEL
        return DEMO_MODEL

    @property
    def supabase_effective_jwks_url(self) -> str | None:
        if self.supabase_jwks_url:
            return self.supabase_jwks_url
        if self.supabase_url:
            return f"{self.supabase_url.rstrip('/')}/auth/v1/.well-known/jwks.json"
        return None

    def problems(self) -> list[str]:
        """Semantic problems, one readable line each (empty when the settings are usable)."""
        return [*self._url_problems(), *self._combination_problems(), *self._production_problems()]

    def _url_problems(self) -> list[str]:
        out: list[str] = []
        url = self.effective_database_url
        scheme = urlsplit(url).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            out.append(
                f"SHOAL_DATABASE_URL: unsupported scheme {scheme!r}; "
                "use sqlite:///path or postgresql://…"
            )
        elif scheme != "sqlite" and not urlsplit(url).hostname:
            out.append("SHOAL_DATABASE_URL: a postgresql:// URL needs a host")
        for name, value, schemes in (
            ("SHOAL_BROKER_URL", self.broker_url, ("amqp", "amqps")),
            ("SHOAL_REDIS_URL", self.redis_url, ("redis", "rediss")),
            ("SHOAL_PUBLIC_URL", self.public_url, ("http", "https")),
            ("SHOAL_PREVIEW_URL", self.preview_url, ("http", "https")),
            ("SUPABASE_URL", self.supabase_url, ("http", "https")),
            ("SUPABASE_JWKS_URL", self.supabase_jwks_url, ("http", "https")),
            ("LANGFUSE_HOST", self.langfuse_host, ("http", "https")),
            ("STRIPE_API_BASE", self.stripe_api_base, ("http", "https")),
            ("DAYTONA_API_URL", self.daytona_api_url, ("http", "https")),
        ):
            parts = urlsplit(value or "")
            if value is not None and (parts.scheme not in schemes or not parts.netloc):
                out.append(f"{name}: {value!r} is not a valid {'/'.join(schemes)} URL")
        for origin in self.cors_origins:
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc):
                out.append(
                    f"SHOAL_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com"
                )
        return out

    def _combination_problems(self) -> list[str]:
        preview, public = urlsplit(self.preview_url or ""), urlsplit(self.public_url)
        checks = (
            (
                bool(self.preview_url) and preview.hostname == public.hostname,
                "SHOAL_PREVIEW_URL must be on another host than SHOAL_PUBLIC_URL (cookies do not "
                "tell ports apart): sandbox pages served there must not reach the API's origin",
            ),
            (
                bool(self.broker_url) and not self.redis_url,
                "SHOAL_BROKER_URL needs SHOAL_REDIS_URL: a separate worker could neither receive "
                "stop nor reach live subscribers without it",
            ),
            (
                self.auth_mode == "supabase"
                and not (self.supabase_jwt_secret or self.supabase_effective_jwks_url),
                "SHOAL_AUTH_MODE=supabase needs SUPABASE_JWT_SECRET or SUPABASE_URL/"
                "SUPABASE_JWKS_URL",
            ),
            (
                self.sandbox_provider == "daytona" and not self.daytona_api_key,
                "SHOAL_SANDBOX_PROVIDER=daytona needs DAYTONA_API_KEY",
            ),
            (
                self.billing_enabled
                and not (self.stripe_secret_key and self.stripe_webhook_secret),
                "SHOAL_BILLING_ENABLED=true needs STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET",
            ),
            (
                bool(self.langfuse_public_key) != bool(self.langfuse_secret_key),
                "LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY must be set together",
            ),
            (
                self.run_heartbeat_seconds >= self.run_lease_seconds,
                "SHOAL_RUN_HEARTBEAT_SECONDS must be shorter than SHOAL_RUN_LEASE_SECONDS "
                "(a healthy run would lose its lease between heartbeats)",
            ),
        )
        return [message for failed, message in checks if failed]

    def _production_problems(self) -> list[str]:
        if self.env != "production":
            return []
        checks = (
            (
                self.is_sqlite,
                "SHOAL_ENV=production refuses SQLite: set SHOAL_DATABASE_URL=postgresql://…",
            ),
            (
                self.sandbox_provider == "unsafe-local",
                "SHOAL_ENV=production refuses SHOAL_SANDBOX_PROVIDER=unsafe-local",
            ),
            (
                self.auth_mode == "builtin" and not self.auth_signing_key,
                "SHOAL_ENV=production refuses a generated signing key: set "
                "SHOAL_AUTH_SIGNING_KEY (PEM or JWKS) shared by all replicas",
            ),
            (
                self.effective_default_model == DEMO_MODEL,
                "SHOAL_ENV=production refuses the demo model as default: set "
                "SHOAL_DEFAULT_MODEL and the provider's API key",
            ),
        )
        return [message for failed, message in checks if failed]


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (plus ``overrides``); raise ConfigError on problems."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError([_describe(err) for err in exc.errors()]) from None
    problems = settings.problems()
    if problems:
        raise ConfigError(problems)
    return settings


def _describe(err: object) -> str:
    data = err if isinstance(err, dict) else {}
    loc = data.get("loc", ())
    name = str(loc[0]) if loc else "setting"
    field = Settings.model_fields.get(name)
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        name = str(field.validation_alias.choices[0])
    return f"{name}: {data.get('msg', 'invalid value')} (got {data.get('input')!r})"
