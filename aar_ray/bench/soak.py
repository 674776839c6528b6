"""Bench (opt-in, `python -m aar_ray.bench soak`): a campaign under fire for an hour. A 2-node
loopback cluster (`aar_ray.testing.cluster.local_cluster`) runs an offline campaign through
`aar run` in a driver process of its own, plus one Claude agent against a Messages API that
fails 10% of its answers (`aar_ray.testing.chaos`), while a recorded schedule kills the scorer,
forum and trial-queue actors once each, kills a worker node midway and brings a new one up,
and stops the driver with SIGTERM at a random point of the confirmation, then resumes it with
`aar run --resume`. Every `sample_s` it samples memory, fds, processes and disk
(`soak_probe.sample`); at the end it checks the campaign's own records (`soak_probe.end_checks`)
and writes `soak` into bench/results.json and plots beside results.md.

AAR_BENCH_SOAK_MINUTES (default 60), AAR_BENCH_SOAK_CONFIG (a campaign YAML for the setting;
default: the built-in setting) and AAR_BENCH_SOAK_AGENTS (default 9) shrink it; the table's
title says what ran. Not yet done: filling the campaign's filesystem (docs/operations.md)."""
from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray

from aar_ray.bench import RESULTS, merge_results, soak_probe
from aar_ray.config import BudgetConfig, CampaignConfig, load_campaign, save_campaign
from aar_ray.lab import NAMESPACE, placement
from aar_ray.results import records
from aar_ray.testing.chaos import ChaosPolicy
from aar_ray.testing.cluster import WORKER, local_cluster, place_on_cluster
from aar_ray.testing.fake_anthropic import FakeAnthropic

ACTOR_FAULTS = ("scorer", "forum", "trials")
FAULTS = (*ACTOR_FAULTS, "node", "api_errors", "sigterm")
CLAUDE_AGENT = "agent-claude"


@dataclass
class SoakConfig:
    """How long, how many agents, what to break and how often to look."""

    minutes: float = 60.0
    agents: int = 9
    sample_s: float = 60.0
    faults: tuple[str, ...] = FAULTS
    api_error_rate: float = 0.1
    api_timeout_s: float = 3.0
    warmup_fraction: float = 1 / 6  # growth is measured after min(10 min, this share of a run)
    sigterm_within_s: float = 10.0  # the driver is stopped this long at most into confirmation
    seed: int = 0
    base: CampaignConfig = field(default_factory=CampaignConfig)  # the setting and student

    @property
    def warmup_s(self) -> float:
        return min(600.0, self.minutes * 60 * self.warmup_fraction)


def campaign_config(sc: SoakConfig, root: Path) -> CampaignConfig:
    """The soak's campaign: `base`'s setting, a trial budget it never reaches, exploration
    for about 3/4 of the run so that the confirmation (where the driver is stopped) fits."""
    cfg = replace(copy.deepcopy(sc.base), name="soak", agents=sc.agents, root=str(root),
                  seed=sc.seed, budget=BudgetConfig(trials_per_agent=100_000, steps_per_agent=0,
                                      wall_clock_s=round(sc.minutes * 60 * 0.75)))
    place_on_cluster(cfg.resources)
    cfg.resources.agents_per_actor = 3
    cfg.scoring.control_top_k = 1
    cfg.scoring.submissions_per_agent = 100_000
    cfg.confirm.top_k = 2
    cfg.validate("soak")
    return cfg


class Soak:
    """One soak run: the cluster, the drivers, the fault schedule, the samples."""

    def __init__(self, sc: SoakConfig, root: Path) -> None:
        self.sc, self.root, self.t0 = sc, root, time.time()
        self.rng = random.Random(sc.seed)
        self.cfg = campaign_config(sc, root)
        self.faults: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.dir: Path | None = None
        self.explored_s = float("inf")  # when the confirmation began
        self.driver: subprocess.Popen | None = None
        self.stop = threading.Event()

    def now(self) -> float:
        return time.time() - self.t0

    def fault(self, name: str, **detail: Any) -> dict[str, Any]:
        f = {"fault": name, "at_s": round(self.now(), 1), "at": time.time(), **detail}
        self.faults.append(f)
        print(f"soak: [{f['at_s']:7.1f}s] {name} {detail or ''}", flush=True)
        return f

    def aar(self, *args: str) -> subprocess.Popen:
        log = open(self.root / "driver.log", "a")  # noqa: SIM115 (the child holds it open)
        env = {**os.environ, "RAY_ADDRESS": self.cluster.address}
        return subprocess.Popen([sys.executable, "-m", "aar_ray.cli", "run", "--no-progress",
                                 *args], env=env, stdout=log, stderr=subprocess.STDOUT)

    def sampler(self) -> None:
        while True:
            self.samples.append(soak_probe.sample(os.getpid(), self.dir, self.session, self.now()))
            if self.stop.wait(self.sc.sample_s):
                return

    def wait_for(self, what: str, pred, timeout: float) -> None:
        deadline = time.time() + timeout
        while not pred():
            if time.time() > deadline:
                raise RuntimeError(f"soak: timed out waiting for {what}")
            if self.driver is not None and self.driver.poll() not in (None, 0, 130):
                raise RuntimeError(f"soak: the driver exited {self.driver.returncode} while "
                                   f"waiting for {what}; see {self.root / 'driver.log'}")
            time.sleep(1)

    def trials(self, kind: str, status: str | None = None) -> int:
        if self.dir is None:
            dirs = sorted(self.root.glob("soak-*/trials.sqlite"))
            self.dir = dirs[0].parent if dirs else None
        return 0 if self.dir is None else sum(
            t["kind"] == kind and status in (None, t["status"])
            for t in records.queued_trials(self.dir))

    def run(self) -> dict[str, Any]:
        # what this process ran before the soak (e.g. a sandbox server of an earlier test) is
        # not the campaign's
        before = set(soak_probe.descendants(os.getpid()))
        with local_cluster(workers=2) as cluster:
            self.cluster = cluster
            self.session = Path(cluster.head_node.get_session_dir_path()).parent
            ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
            threading.Thread(target=self.sampler, daemon=True).start()
            try:
                self.campaign()
            finally:
                self.stop.set()
                ray.shutdown()
        # the cluster's processes are stopped; anything still here after the grace leaked
        return self.report(len(soak_probe.still_running(
            lambda: [p for p in soak_probe.descendants(os.getpid()) if p not in before])))

    def campaign(self) -> None:
        sc, cfg = self.sc, self.cfg
        save_campaign(cfg, self.root / "soak.yaml")
        self.driver = self.aar("--config", str(self.root / "soak.yaml"))
        self.wait_for("the first agent trial", lambda: self.trials("agent", "done") >= 1, 1800)
        explore_end = time.time() + cfg.budget.wall_clock_s * 0.8  # before it ends
        chaos = ChaosPolicy(sc.api_error_rate if "api_errors" in sc.faults else 0,
                            sc.api_timeout_s, sc.seed)
        with FakeAnthropic(chaos) as fake:
            claude = self.claude_agent(fake.base_url, explore_end)
            f = self.fault("api_errors", rate=sc.api_error_rate) if "api_errors" in sc.faults \
                else None
            self.scheduled(explore_end)
            self.wait_for("confirmation", lambda: self.trials("confirm") >= 1,
                          cfg.budget.wall_clock_s + 1800)
            self.explored_s = self.now()
            if f is not None:
                f["injected"] = dict(chaos.injected)
            ray.kill(claude[0], no_restart=True)  # its run ended with the exploration
        if "sigterm" in sc.faults:
            time.sleep(self.rng.uniform(0, sc.sigterm_within_s))  # a random point of it
            if self.driver.poll() is not None:
                raise RuntimeError("soak: the confirmation ended before the SIGTERM; give a "
                                   "smaller sigterm_within_s")
            self.fault("sigterm", confirm_trials_done=self.trials("confirm", "done"))
            self.driver.send_signal(signal.SIGTERM)
            code = self.driver.wait(timeout=300)
            if code != 130:
                raise RuntimeError(f"soak: the stopped driver exited {code}, not 130")
            self.driver = self.aar("--resume", str(self.dir))
        code = self.driver.wait(timeout=3600)
        if code != 0:
            raise RuntimeError(f"soak: the campaign exited {code}; see {self.root}/driver.log")
        self.driver_exited = time.time()
        # the driver's actors go with it; anything hosting one after the grace leaked
        self.leaked_actors = len(soak_probe.still_running(
            lambda: list(soak_probe.lab_processes(soak_probe.descendants(os.getpid())))))

    def claude_agent(self, base_url: str, deadline: float) -> tuple[Any, Any]:
        """One more agent, a Claude brain whose API fails on purpose, in the same campaign:
        its own actor (the campaign's brain is offline), on the workers like the others."""
        cfg = replace(self.cfg, brain="fake-claude", claude=replace(
            self.cfg.claude, base_url=base_url, max_retries=0, timeout_s=self.sc.api_timeout_s,
            pause_s=1.0))
        from aar_ray.lab.agent import ResearcherActor

        actor = ResearcherActor.options(name="soak-claude", namespace=NAMESPACE,
                                        **placement.agents(cfg)).remote(
            [(CLAUDE_AGENT, "any method that beats vanilla", self.sc.agents)], str(self.dir),
            cfg)
        return actor, actor.run.remote(deadline)

    def scheduled(self, explore_end: float) -> None:
        """The actor kills and the node loss, spread over the exploration, in random order."""
        names = [n for n in (*ACTOR_FAULTS, "node") if n in self.sc.faults]
        self.rng.shuffle(names)
        start = time.time()
        for i, name in enumerate(names):
            at = start + (explore_end - start) * (i + 1) / (len(names) + 1)
            time.sleep(max(0.0, at - time.time()))
            if name == "node":
                self.lose_node()
            else:
                self.fault(name)
                ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=False)

    def lose_node(self) -> None:
        old = self.cluster.worker_nodes
        victim = next(iter(old))
        self.fault("node", node=victim.node_id[:12])
        self.cluster.remove_node(victim, allow_graceful=False)
        self.cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1,
                              resources={WORKER: 1}, object_store_memory=200 << 20)

    def survived(self, f: dict[str, Any]) -> bool:
        """A fault survived: the campaign finished (`report` is reached only then) and the
        operations log accounts for it."""
        after = soak_probe.entries_after
        d, t = self.dir, f["at"]
        if f["fault"] in ACTOR_FAULTS:
            return bool(after(d, "actor_restarted", t, actor=f["fault"]))
        if f["fault"] == "node":  # the agents and trials it hosted came back elsewhere
            return bool(after(d, "actor_restarted", t, actor="agent-")
                        or after(d, "trial_rerun", t))
        if f["fault"] == "api_errors":  # every failed answer is in the log, none more, but
            # for one in flight each time the agent's process died (its step was never saved),
            # the soak's own kill of it at the end of exploration included
            logged = sum(e.get("count", 0) for e in after(d, "api_call_failed", t,
                                                           agent=CLAUDE_AGENT))
            deaths = len(after(d, "actor_restarted", t, actor=CLAUDE_AGENT)) + 1
            f.update(logged=logged, agent_restarts=deaths)
            injected = sum(f.get("injected", {}).values())
            return injected > 0 and 0 <= injected - logged <= deaths
        return bool(after(d, "campaign_interrupted", t) and after(d, "campaign_resumed", t))

    def explored_after_resume(self) -> int:
        """Agent trials created after the SIGTERM: a resume in the confirmation must go on
        with it, not explore for another wall-clock budget."""
        stop = next((f["at"] for f in self.faults if f["fault"] == "sigterm"), None)
        return 0 if stop is None else sum(t["kind"] == "agent" and t["created"] >= stop
                                          for t in records.queued_trials(self.dir))

    def report(self, left_after_shutdown: int) -> dict[str, Any]:
        assert self.dir is not None
        checks = soak_probe.end_checks(self.dir)
        survived = [self.survived(f) for f in self.faults]  # adds what it counted to each
        faults = [{k: v for k, v in f.items() if k != "at"} | {"survived": ok}
                  for f, ok in zip(self.faults, survived, strict=True)]
        # growth over the exploration after the warm-up: the confirmation's processes differ
        window = (self.sc.warmup_s, self.explored_s)
        flat = [{**s, **{f"pss_{k}": v for k, v in s["lab_pss_by_actor"].items()}}
                for s in self.samples]

        def growth(key: str) -> float | None:
            return soak_probe.growth_per_h(flat, key, *window)

        out = {"minutes": round(self.now() / 60, 1), "planned_minutes": self.sc.minutes,
               "agents": self.sc.agents + 1, "sample_s": self.sc.sample_s,
               "growth_window_s": [round(x, 1) for x in window],
               "pss_growth_mib_per_h": growth("pss_mib"),
               "lab_pss_growth_mib_per_h": growth("lab_pss_mib"),
               "lab_pss_growth_by_actor_mib_per_h": {
                   k.decode(): growth(f"pss_{k.decode()}") for k in soak_probe.LAB_ACTORS},
               "ray_session_growth_mib_per_h": growth("ray_session_mib"),
               "fds_growth_per_h": growth("fds"),
               "sqlite_mib": round(sum(f.stat().st_size for f in self.dir.glob("*.sqlite*"))
                                   / 2**20, 2),
               "leaked_processes": self.leaked_actors + left_after_shutdown, **checks,
               "trials_done": self.trials("agent", "done"), "faults": faults,
               "explored_after_resume": self.explored_after_resume(),
               "campaign_dir": str(self.dir), "samples": self.samples}
        (self.root / "soak.json").write_text(json.dumps(out, indent=1))
        return out


def run_soak(sc: SoakConfig, root: Path) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    return Soak(sc, root).run()


def run() -> tuple[str, list[dict]]:
    minutes = float(os.environ.get("AAR_BENCH_SOAK_MINUTES", 60))
    base = CampaignConfig()
    if os.environ.get("AAR_BENCH_SOAK_CONFIG"):
        base = load_campaign(os.environ["AAR_BENCH_SOAK_CONFIG"])
    sc = SoakConfig(minutes=minutes, agents=int(os.environ.get("AAR_BENCH_SOAK_AGENTS", 9)),
                    sample_s=60 if minutes >= 30 else 20, base=base)
    out = run_soak(sc, RESULTS.parent.parent / "campaigns" / "bench-soak"
                   / time.strftime("%Y%m%d-%H%M%S"))
    plots = write_plots(out, RESULTS.parent)
    merge_results("soak", {k: v for k, v in out.items() if k != "samples"} | {"plots": plots})
    rows = [{k: v for k, v in s.items() if k != "lab_pss_by_actor"} for s in out["samples"]]
    title = (f"Soak: {out['minutes']:.0f} minutes under fire ({sc.agents} offline agents + 1 "
             f"Claude agent, {sc.base.setting.label}); PSS growth "
             f"{out['pss_growth_mib_per_h']} MiB/h (lab actors {out['lab_pss_growth_mib_per_h']}) "
             f"from {sc.warmup_s / 60:.1f} min to the end of exploration, leaked "
             f"{out['leaked_processes']}, lost trials {out['lost_trials']}, lost posts "
             f"{out['lost_posts']}, duplicate requests {out['duplicate_requests']}; faults: "
             + ", ".join(f"{f['fault']} at {f['at_s']:.0f} s "
                         f"({'survived' if f['survived'] else 'NOT survived'})"
                         for f in out["faults"])
             + "; plots: " + ", ".join(f"[{p}]({p})" for p in plots))
    return title, rows


def write_plots(out: dict[str, Any], where: Path) -> list[str]:
    """Memory and disk over time, as SVG files next to results.md."""
    names = []
    for name, keys, title in (("soak-memory.svg", ["pss_mib", "lab_pss_mib"], "PSS (MiB)"),
                              ("soak-disk.svg", ["ray_session_mib", "sqlite_mib", "wal_mib"],
                               "Disk (MiB)")):
        (where / name).write_text(soak_probe.svg_plot(out["samples"], keys, title,
                                                      out["faults"]))
        names.append(name)
    return names
