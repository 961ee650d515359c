"""Billing plans from a TOML file (``SHOAL_PLANS_FILE``, default: the packaged ``plans.toml``).

With billing off there is one plan, :data:`UNLIMITED`: every model, no spend limit, the
setting's concurrency cap. Usage is still recorded and shown.
"""

from __future__ import annotations

import functools
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from shoal.config import DEMO_MODEL, Settings
from shoal.errors import ConfigError

MICRO = 1_000_000
PACKAGED_PLANS = Path(__file__).with_name("plans.toml")
PlanName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class Plan(BaseModel):
    """One plan: what an account on it may spend, run and how many runs at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: PlanName
    display_name: str = ""
    stripe_price_id: str | None = None
    monthly_limit_usd: float | None = Field(None, ge=0)
    models: tuple[str, ...] = ("*",)
    max_concurrent_runs: int | None = Field(None, ge=1)

    @property
    def limit_micro_usd(self) -> int | None:
        return None if self.monthly_limit_usd is None else round(self.monthly_limit_usd * MICRO)

    def allows(self, model: str) -> bool:
        """Whether ``model`` matches one of the plan's names or glob patterns."""
        name = model.strip().lower()
        bare = name.rsplit("/", 1)[-1]
        for pattern in (p.strip().lower() for p in self.models):
            if fnmatchcase(name, pattern) or ("/" not in pattern and fnmatchcase(bare, pattern)):
                return True
        return False


UNLIMITED = Plan(name="unlimited", display_name="Unlimited (billing off)")


class _PlanEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str = ""
    stripe_price_id: str | None = None
    monthly_limit_usd: float | None = Field(None, ge=0)
    models: list[str] = Field(default_factory=lambda: ["*"])
    max_concurrent_runs: int | None = Field(None, ge=1)


class _PlansFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_plan: PlanName
    catalogue: list[str] = Field(default_factory=lambda: [DEMO_MODEL])
    plans: dict[PlanName, _PlanEntry] = Field(min_length=1)


class PlanBook(BaseModel):
    """Every plan by name, the default one, and the model catalogue."""

    model_config = ConfigDict(frozen=True)

    plans: dict[str, Plan]
    default: str
    catalogue: tuple[str, ...]
    enabled: bool

    @property
    def default_plan(self) -> Plan:
        return self.plans[self.default]

    def get(self, name: str | None) -> Plan | None:
        return self.plans.get(name) if name else None

    def by_price(self, price_id: str | None) -> Plan | None:
        if not price_id:
            return None
        return next((p for p in self.plans.values() if p.stripe_price_id == price_id), None)


def plan_book(settings: Settings) -> PlanBook:
    """The plans in force for ``settings`` (billing off: only :data:`UNLIMITED`)."""
    if not settings.billing_enabled:
        return PlanBook(
            plans={UNLIMITED.name: UNLIMITED},
            default=UNLIMITED.name,
            catalogue=(DEMO_MODEL,),
            enabled=False,
        )
    path = settings.plans_file or PACKAGED_PLANS
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError([f"SHOAL_PLANS_FILE: cannot read {path}: {exc.strerror}"]) from None
    return _load(str(path), (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _load(path: str, _stamp: tuple[int, int]) -> PlanBook:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        parsed = _PlansFile.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"SHOAL_PLANS_FILE: {path}: {exc}"]) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError([f"SHOAL_PLANS_FILE: {path}: {where}: {first['msg']}"]) from None
    if parsed.default_plan not in parsed.plans:
        raise ConfigError(
            [f"SHOAL_PLANS_FILE: {path}: default_plan {parsed.default_plan!r} is not a plan"]
        )
    plans = {
        name: Plan(name=name, **entry.model_dump(exclude={"models"}), models=tuple(entry.models))
        for name, entry in parsed.plans.items()
    }
    return PlanBook(
        plans=plans, default=parsed.default_plan, catalogue=tuple(parsed.catalogue), enabled=True
    )


def resolve_model(settings: Settings, model: str) -> str:
    """The model name a run will actually call (``SHOAL_LLM_MODEL_ALIASES`` applied)."""
    return settings.llm_model_aliases.get(model, model)
