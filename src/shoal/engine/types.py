"""What a run is given (agent config, options) and what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from shoal.llm.types import ReasoningEffort, Usage

if TYPE_CHECKING:
    from shoal.config import Settings

FinishReason: TypeAlias = Literal["stop", "complete", "ask", "max_iterations"]
DEFAULT_SYSTEM_PROMPT = (
    "You are a capable autonomous assistant. Work step by step, use the tools you are given "
    "when they help, and say plainly when something cannot be done."
)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The parts of an agent config the engine uses. ``tools=None`` offers every tool."""

    model: str
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    tools: Sequence[str] | None = None
    name: str = "shoal"


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Per-run engine options (the start request's options plus settings)."""

    max_iterations: int = 100
    enable_thinking: bool = False
    reasoning_effort: ReasoningEffort | None = None
    enable_context_manager: bool = True
    execute_on_stream: bool = True
    parallel_tools: bool = False
    native_tool_calling: bool = True
    xml_tool_calling: bool = False
    max_auto_continues: int = 3
    max_tokens: int | None = None
    context_threshold: float = 0.8
    context_window: int | None = None
    prompt_tool_output_max_chars: int = 20_000

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RunOptions:
        base = cls(
            max_iterations=settings.engine_max_iterations,
            max_auto_continues=settings.engine_max_auto_continues,
            context_threshold=settings.context_summarize_threshold,
            prompt_tool_output_max_chars=settings.prompt_tool_output_max_chars,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(slots=True)
class UsageTotals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    estimated: bool = False
    calls: int = 0

    def add(self, usage: Usage) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.cost_usd += usage.cost_usd
        self.estimated = self.estimated or usage.estimated
        self.calls += 1

    def as_dict(self) -> dict[str, Any]:
        """The run's ``usage`` shape (DESIGN §4)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 10),
        }


@dataclass(slots=True)
class RunResult:
    finish_reason: FinishReason
    usage: UsageTotals = field(default_factory=UsageTotals)
    iterations: int = 0
    last_message_id: str | None = None
