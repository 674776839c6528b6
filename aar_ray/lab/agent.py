"""ResearcherActor: hosts one agent (or several, for large fleets) with its workspace, its
direction and its brain. The agent acts only through its toolbox; its state is saved after
every step, so a killed actor restarts where it stopped."""
from __future__ import annotations

import json
import logging
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ray

from aar_ray.brains import make_brain
from aar_ray.brains.base import USAGE_KEYS
from aar_ray.config import CampaignConfig
from aar_ray.lab import ACTOR_OPTIONS, NAMESPACE
from aar_ray.lab.tools import LabToolbox
from aar_ray.observe import metrics, operations

log = logging.getLogger(__name__)


class Researcher:
    def __init__(self, agent_id: str, direction: str, index: int, campaign_dir: str,
                 cfg: CampaignConfig, *, forum: Any, scorer: Any, queue: Any,
                 api_key: str | None = None) -> None:
        self.agent_id, self.cfg = agent_id, cfg
        self.workspace = Path(campaign_dir) / "agents" / agent_id
        self.tools = LabToolbox(agent_id, self.workspace, cfg, forum=forum, scorer=scorer,
                                queue=queue)
        # a `fake-claude` brain gets its fake API's address in cfg.claude.base_url from whoever
        # started the campaign (the CLI, a test): the lab starts no fake itself
        self.brain = make_brain(cfg, agent_id, direction, index, api_key)
        self.steps, self.finished = 0, False
        self._last_usage: dict[str, Any] = {}  # usage already reported to the metrics
        state_file = self.workspace / "state.json"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            self.brain.load_state_dict(state["brain"])
            self.steps, self.finished = state["steps"], state["finished"]
        else:
            (self.workspace / "direction.md").write_text(direction + "\n")
        self._api_failures = self._failures()  # failed API calls already in the operations log

    def _failures(self) -> int:
        return (getattr(self.brain, "counters", None) or {}).get("api_failures", 0)

    def _save(self) -> None:
        tmp = self.workspace / ".state.json.tmp"
        tmp.write_text(json.dumps({"steps": self.steps, "finished": self.finished,
                                   "brain": self.brain.state_dict()}))
        os.replace(tmp, self.workspace / "state.json")

    def run(self, deadline: float) -> dict[str, Any]:
        limit = self.cfg.budget.steps_per_agent
        while (not self.finished and (not limit or self.steps < limit) and time.time() < deadline):
            try:
                self.tools.step = self.steps
                more = self.brain.step(self.tools)
            except Exception as e:  # a brain bug must not take the campaign down
                log.exception("agent %s: brain step failed", self.agent_id)
                operations.record(self.tools.campaign_dir, "brain_step_error",
                                  agent=self.agent_id, error=f"{type(e).__name__}: {e}",
                                  traceback=traceback.format_exc())
                more = True
                time.sleep(1)
                self.tools.call("post", {"title": f"{self.agent_id}: internal error",
                                         "body": f"{type(e).__name__}: {e}"[:2000],
                                         "kind": "error"})
            self.steps += 1
            self.finished = not more
            self._save()
            self._report_usage()
            self._note_api_failures()
        return self.summary()

    def _report_usage(self) -> None:
        """Claude token and dollar counters for the dashboard (deltas since the last step)."""
        usage = getattr(self.brain, "usage", None)
        if not usage:
            return
        last = self._last_usage
        for key in USAGE_KEYS:
            metrics.tokens(self.agent_id, key.removesuffix("_tokens"),
                           usage.get(key, 0) - last.get(key, 0))
        metrics.dollars(self.agent_id, usage.get("dollars", 0.0) - last.get("dollars", 0.0))
        self._last_usage = dict(usage)

    def _note_api_failures(self) -> None:
        """One operations-log entry per step in which Messages API calls failed after the
        SDK's retries (`count` of them): what a user reads to see an API outage."""
        failures = self._failures()
        if failures > self._api_failures:
            operations.record(self.tools.campaign_dir, "api_call_failed", agent=self.agent_id,
                              count=failures - self._api_failures,
                              error=getattr(self.brain, "last_error", ""))
        self._api_failures = failures

    def summary(self) -> dict[str, Any]:
        usage = getattr(self.brain, "usage", None)
        return {"agent": self.agent_id, "steps": self.steps, "finished": self.finished,
                "usage": {k: v for k, v in (usage or {}).items() if k != "step_input_tokens"}}


@ray.remote(**ACTOR_OPTIONS, max_concurrency=8)
class ResearcherActor:
    """One actor process per agent by default; `agents_per_actor` packs several (each agent
    runs in its own thread) because an actor process costs ≈55 MB."""

    def __init__(self, agents: list[tuple[str, str, int]], campaign_dir: str,
                 cfg: CampaignConfig, secrets: dict[str, Any] | None = None) -> None:
        handles = {name: ray.get_actor(name, namespace=NAMESPACE)
                   for name in ("forum", "scorer", "trials")}
        ref = (secrets or {}).get("ANTHROPIC_API_KEY")
        key = ray.get(ref) if ref is not None else None  # held in memory only
        self.agents = [Researcher(a, d, i, campaign_dir, cfg, forum=handles["forum"],
                                  scorer=handles["scorer"], queue=handles["trials"],
                                  api_key=key)
                       for a, d, i in agents]
        operations.note_restart(campaign_dir, ",".join(a for a, _, _ in agents))

    def run(self, deadline: float) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(len(self.agents)) as pool:
            return list(pool.map(lambda r: r.run(deadline), self.agents))

    def summaries(self) -> list[dict[str, Any]]:
        return [r.summary() for r in self.agents]

    def pid(self) -> int:
        return os.getpid()
