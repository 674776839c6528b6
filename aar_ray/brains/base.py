"""The contract between a lab agent and whatever decides its next action.

A brain sees tool schemas and tool results, nothing else: it cannot reach the scorer, the
forum or the trial queue except through the `Toolbox` it is handed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

# The token counts a brain's `usage` dict keeps (the Messages API's names), in the order of a
# `ClaudeConfig.prices` row; the usage dict also holds "dollars" and "calls".
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens",
              "cache_creation_input_tokens")


def total_tokens(usage: dict[str, Any]) -> int:
    """Every token a brain's `usage` counts: input, output, cache reads and cache writes."""
    return sum(int(usage.get(k) or 0) for k in USAGE_KEYS)


@dataclass(frozen=True)
class ToolResult:
    """What a tool call returns to a brain: JSON-able text, flagged when the call was bad."""

    content: str
    is_error: bool = False
    # why it failed, for the lab and its tests (brains see only content and is_error):
    # "refusal" (bad input or a rule), "transient" (Ray: retry later), "internal" (a bug)
    error: str | None = None

    def data(self) -> Any:
        """The result's JSON, or None for an error or a content that is not JSON."""
        if self.is_error:
            return None
        try:
            return json.loads(self.content)
        except (TypeError, ValueError):
            return None


class Toolbox(Protocol):
    """The agent's tools: one schema list shared by every brain, one dispatch entry point."""

    def schemas(self) -> list[dict[str, Any]]:
        """Tool definitions in the Anthropic `tools` format: name, description, input_schema."""

    def call(self, name: str, args: Any) -> ToolResult:
        """Run one tool; never raises for bad input (the error comes back as is_error)."""


class Brain(Protocol):
    """Decides an agent's next actions. One `step` is one unit of thought (one model turn for
    Claude, one decision for the offline policy); the agent loop calls it until it returns False
    or the agent's budget ends."""

    def step(self, tools: Toolbox) -> bool:
        """Think once and act through `tools`; False when the brain has nothing left to do."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state, saved in the agent's workspace so a restarted actor resumes."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
