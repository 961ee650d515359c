"""Settings (DESIGN.md §1).

Every setting is read from the environment under its exact documented name. ``Settings()``
never raises for semantic problems; :meth:`Settings.problems` lists them one readable line
each and :func:`load_settings` turns a non-empty list into a :class:`~shoal.errors.ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

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


def _env(name: str) -> dict[str, AliasChoices]:
    return {"validation_alias": AliasChoices(name)}


class Settings(BaseSettings):
    """All of shoal's configuration. Field docs become `shoal serve --help`."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, frozen=True
    )

    # -- core ---------------------------------------------------------------------------------
    env: Literal["development", "production"] = Field(
        "development", description="development | production (strict checks)", **_env("SHOAL_ENV")
    )
    data_dir: Path = Field(
        Path(".shoal"),
        description="SQLite file, sandbox workspaces, generated keys",
        **_env("SHOAL_DATA_DIR"),
    )
    database_url: str | None = Field(
        None,
        description="sqlite:///… (default: $SHOAL_DATA_DIR/shoal.db) or postgresql://…",
        **_env("SHOAL_DATABASE_URL"),
    )
    broker_url: str | None = Field(
        None, description="amqp://… (unset: in-process queue)", **_env("SHOAL_BROKER_URL")
    )
    redis_url: str | None = Field(
        None, description="redis://… (unset: in-memory bus)", **_env("SHOAL_REDIS_URL")
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="the public origin", **_env("SHOAL_PUBLIC_URL")
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated allowed browser origins",
        **_env("SHOAL_CORS_ORIGINS"),
    )

    # -- sandbox ------------------------------------------------------------------------------
    sandbox_provider: Literal["local", "daytona", "unsafe-local"] = Field(
        "local", description="local | daytona | unsafe-local", **_env("SHOAL_SANDBOX_PROVIDER")
    )
    daytona_api_key: str | None = Field(None, **_env("DAYTONA_API_KEY"))
    daytona_api_url: str | None = Field(None, **_env("DAYTONA_API_URL"))
    daytona_target: str | None = Field(None, **_env("DAYTONA_TARGET"))

    # -- auth ---------------------------------------------------------------------------------
    auth_mode: Literal["builtin", "supabase"] = Field(
        "builtin", description="builtin | supabase", **_env("SHOAL_AUTH_MODE")
    )
    auth_signing_key: str | None = Field(
        None,
        description="PEM or JWKS private key (unset: generated into the data dir)",
        **_env("SHOAL_AUTH_SIGNING_KEY"),
    )
    supabase_url: str | None = Field(None, **_env("SUPABASE_URL"))
    supabase_jwt_secret: str | None = Field(None, **_env("SUPABASE_JWT_SECRET"))
    supabase_jwks_url: str | None = Field(None, **_env("SUPABASE_JWKS_URL"))
    access_token_ttl_seconds: int = Field(
        3600, ge=60, le=86400, **_env("SHOAL_ACCESS_TOKEN_TTL_SECONDS")
    )
    refresh_token_ttl_seconds: int = Field(
        30 * 86400, ge=3600, **_env("SHOAL_REFRESH_TOKEN_TTL_SECONDS")
    )
    login_rate_limit: int = Field(
        10,
        ge=1,
        description="password sign-in attempts per email and per client per window",
        **_env("SHOAL_LOGIN_RATE_LIMIT"),
    )
    login_rate_window_seconds: int = Field(
        60, ge=1, **_env("SHOAL_LOGIN_RATE_WINDOW_SECONDS")
    )

    # -- billing ------------------------------------------------------------------------------
    billing_enabled: bool = Field(False, **_env("SHOAL_BILLING_ENABLED"))
    stripe_secret_key: str | None = Field(None, **_env("STRIPE_SECRET_KEY"))
    stripe_webhook_secret: str | None = Field(None, **_env("STRIPE_WEBHOOK_SECRET"))
    stripe_api_base: str | None = Field(None, **_env("STRIPE_API_BASE"))

    # -- tracing ------------------------------------------------------------------------------
    langfuse_public_key: str | None = Field(None, **_env("LANGFUSE_PUBLIC_KEY"))
    langfuse_secret_key: str | None = Field(None, **_env("LANGFUSE_SECRET_KEY"))
    langfuse_host: str | None = Field(None, **_env("LANGFUSE_HOST"))

    # -- models and tools ---------------------------------------------------------------------
    default_model: str | None = Field(
        None,
        description="any LiteLLM model (unset: shoal/demo when no provider key is set)",
        **_env("SHOAL_DEFAULT_MODEL"),
    )
    tavily_api_key: str | None = Field(None, **_env("TAVILY_API_KEY"))

    # -- engine, llm and tools (issue 4; owned by src/shoal/{llm,tools,engine}) ---------------
    llm_model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description='JSON map of model aliases, e.g. {"fast": "openai/gpt-4o-mini"}',
        **_env("SHOAL_LLM_MODEL_ALIASES"),
    )
    llm_max_retries: int = Field(
        3, ge=0, le=20, description="retries on 429/5xx/connection errors",
        **_env("SHOAL_LLM_MAX_RETRIES"),
    )
    llm_retry_base_delay_seconds: float = Field(
        1.0, ge=0, description="first backoff delay (doubles each retry)",
        **_env("SHOAL_LLM_RETRY_BASE_DELAY_SECONDS"),
    )
    llm_retry_max_delay_seconds: float = Field(
        30.0, ge=0, **_env("SHOAL_LLM_RETRY_MAX_DELAY_SECONDS")
    )
    llm_timeout_seconds: float = Field(600.0, gt=0, **_env("SHOAL_LLM_TIMEOUT_SECONDS"))
    llm_default_context_window: int = Field(
        128_000, ge=1024, description="context window assumed for models LiteLLM does not know",
        **_env("SHOAL_LLM_DEFAULT_CONTEXT_WINDOW"),
    )
    engine_max_iterations: int = Field(100, ge=1, **_env("SHOAL_MAX_ITERATIONS"))
    engine_max_auto_continues: int = Field(
        3, ge=0, description="continuations after finish_reason=length",
        **_env("SHOAL_MAX_AUTO_CONTINUES"),
    )
    context_summarize_threshold: float = Field(
        0.8, gt=0, lt=1, description="share of the model's window that triggers summarisation",
        **_env("SHOAL_CONTEXT_SUMMARIZE_THRESHOLD"),
    )
    prompt_tool_output_max_chars: int = Field(
        20_000, ge=200, description="tool output longer than this is clipped in the prompt",
        **_env("SHOAL_PROMPT_TOOL_OUTPUT_MAX_CHARS"),
    )
    tool_output_max_chars: int = Field(
        200_000, ge=1000, description="tool output longer than this is clipped when stored",
        **_env("SHOAL_TOOL_OUTPUT_MAX_CHARS"),
    )
    scrape_max_bytes: int = Field(5 * 1024 * 1024, ge=1024, **_env("SHOAL_SCRAPE_MAX_BYTES"))
    scrape_timeout_seconds: float = Field(20.0, gt=0, **_env("SHOAL_SCRAPE_TIMEOUT_SECONDS"))
    scrape_max_redirects: int = Field(5, ge=0, le=20, **_env("SHOAL_SCRAPE_MAX_REDIRECTS"))
    # -- end of issue 4 block -------------------------------------------------------------------

    # -- limits -------------------------------------------------------------------------------
    max_request_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, **_env("SHOAL_MAX_REQUEST_BYTES")
    )
    max_message_bytes: int = Field(
        256 * 1024, ge=1024, description="largest message content", **_env("SHOAL_MAX_MESSAGE_BYTES")
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().rstrip("/") for item in value.split(",") if item.strip()]
        return value

    # -- derived ------------------------------------------------------------------------------
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
        out: list[str] = []
        url = self.effective_database_url
        scheme = urlsplit(url).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            out.append(
                f"SHOAL_DATABASE_URL: unsupported scheme {scheme!r}; use sqlite:///path or postgresql://…"
            )
        elif scheme != "sqlite" and not urlsplit(url).hostname:
            out.append("SHOAL_DATABASE_URL: a postgresql:// URL needs a host")
        for name, value, schemes in (
            ("SHOAL_BROKER_URL", self.broker_url, ("amqp", "amqps")),
            ("SHOAL_REDIS_URL", self.redis_url, ("redis", "rediss")),
            ("SHOAL_PUBLIC_URL", self.public_url, ("http", "https")),
            ("SUPABASE_URL", self.supabase_url, ("http", "https")),
            ("SUPABASE_JWKS_URL", self.supabase_jwks_url, ("http", "https")),
            ("LANGFUSE_HOST", self.langfuse_host, ("http", "https")),
            ("STRIPE_API_BASE", self.stripe_api_base, ("http", "https")),
            ("DAYTONA_API_URL", self.daytona_api_url, ("http", "https")),
        ):
            if value is None:
                continue
            parts = urlsplit(value)
            if parts.scheme not in schemes or not parts.netloc:
                out.append(f"{name}: {value!r} is not a valid {'/'.join(schemes)} URL")
        for origin in self.cors_origins:
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc):
                out.append(f"SHOAL_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com")
        if self.broker_url and not self.redis_url:
            out.append(
                "SHOAL_BROKER_URL needs SHOAL_REDIS_URL: a separate worker could neither receive "
                "stop nor reach live subscribers without it"
            )
        if self.auth_mode == "supabase" and not (
            self.supabase_jwt_secret or self.supabase_effective_jwks_url
        ):
            out.append(
                "SHOAL_AUTH_MODE=supabase needs SUPABASE_JWT_SECRET or SUPABASE_URL/SUPABASE_JWKS_URL"
            )
        if self.sandbox_provider == "daytona" and not self.daytona_api_key:
            out.append("SHOAL_SANDBOX_PROVIDER=daytona needs DAYTONA_API_KEY")
        if self.billing_enabled and not (self.stripe_secret_key and self.stripe_webhook_secret):
            out.append("SHOAL_BILLING_ENABLED=true needs STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET")
        if bool(self.langfuse_public_key) != bool(self.langfuse_secret_key):
            out.append("LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY must be set together")
        if self.env == "production":
            if self.is_sqlite:
                out.append("SHOAL_ENV=production refuses SQLite: set SHOAL_DATABASE_URL=postgresql://…")
            if self.sandbox_provider == "unsafe-local":
                out.append("SHOAL_ENV=production refuses SHOAL_SANDBOX_PROVIDER=unsafe-local")
            if self.auth_mode == "builtin" and not self.auth_signing_key:
                out.append(
                    "SHOAL_ENV=production refuses a generated signing key: set SHOAL_AUTH_SIGNING_KEY "
                    "(PEM or JWKS) shared by all replicas"
                )
            if self.effective_default_model == DEMO_MODEL:
                out.append(
                    "SHOAL_ENV=production refuses the demo model as default: set SHOAL_DEFAULT_MODEL "
                    "and the provider's API key"
                )
        return out


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
