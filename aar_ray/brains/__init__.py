"""Brains decide an agent's next action from tool schemas and tool results only."""
from __future__ import annotations

import os
from dataclasses import replace

from aar_ray.brains.base import Brain
from aar_ray.config import BudgetConfig, CampaignConfig, ConfigError


def agent_budget(cfg: CampaignConfig) -> BudgetConfig:
    """An agent's own limits: its per-agent budget, capped by an equal share of the campaign's
    token and dollar budgets, so the fleet cannot overshoot them by more than a step each."""
    b = cfg.budget

    def cap(own: float, total: float) -> float:
        share = total / cfg.agents if total else 0
        return min(x for x in (own, share) if x) if (own or share) else 0

    return replace(b, tokens_per_agent=int(cap(b.tokens_per_agent, b.tokens_total)),
                   dollars_per_agent=cap(b.dollars_per_agent, b.dollars_total))


def make_brain(cfg: CampaignConfig, agent_id: str, direction: str, index: int,
               api_key: str | None = None) -> Brain:
    if cfg.brain == "offline":
        from aar_ray.brains.offline import OfflineBrain

        return OfflineBrain(agent_id, direction, cfg.budget, seed=index,
                            campaign_seed=cfg.seed)
    from aar_ray.brains.claude import ClaudeBrain

    if cfg.brain == "fake-claude":  # its starter (the CLI, a test) serves the fake: base_url
        if not cfg.claude.base_url:
            raise ConfigError("brain: fake-claude needs claude.base_url (a fake Messages API)")
        return ClaudeBrain(cfg.claude, agent_budget(cfg), agent_id=agent_id,
                           direction=direction, api_key="fake-key")
    key = api_key or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        raise ConfigError(NO_KEY)
    return ClaudeBrain(cfg.claude, agent_budget(cfg), agent_id=agent_id, direction=direction,
                       api_key=key)


NO_KEY = ("brain: claude needs ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY_FILE) in the environment "
          "of the process that runs the campaign")


def require_key(cfg: CampaignConfig) -> None:
    """Refuse a Claude campaign without a key before Ray starts: the agents would otherwise
    fail one by one after the scorer's whole start-up."""
    if cfg.brain == "claude" and cfg.explorer == "agents" and not (
            os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_API_KEY_FILE")):
        raise ConfigError(NO_KEY)
