"""Brains decide an agent's next action from tool schemas and tool results only."""
from __future__ import annotations

import os
import threading

from aar_ray.brains.base import Brain
from aar_ray.config import CampaignConfig, ConfigError

_fake_lock = threading.Lock()
_fake_server = None


def _fake_base_url() -> str:
    """One local fake Messages API per process, for the offline `fake-claude` demo."""
    global _fake_server
    with _fake_lock:
        if _fake_server is None:
            from aar_ray.brains.fake_anthropic import FakeAnthropic

            _fake_server = FakeAnthropic().__enter__()
        return _fake_server.base_url


def make_brain(cfg: CampaignConfig, agent_id: str, direction: str, index: int,
               api_key: str | None = None) -> Brain:
    if cfg.brain == "offline":
        from aar_ray.brains.offline import OfflineBrain

        return OfflineBrain(agent_id, direction, cfg.budget, seed=index)
    from dataclasses import replace

    from aar_ray.brains.claude import ClaudeBrain

    if cfg.brain == "fake-claude":
        claude = replace(cfg.claude, base_url=_fake_base_url())
        return ClaudeBrain(claude, cfg.budget, agent_id=agent_id, direction=direction,
                           api_key="fake-key")
    key = api_key or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        raise ConfigError("brain: claude needs ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY_FILE) in "
                          "the environment of the process that runs the campaign")
    return ClaudeBrain(cfg.claude, cfg.budget, agent_id=agent_id, direction=direction,
                       api_key=key)
