"""The trial queue: agents' requests run on Ray with fair share between agents, and the
predictions go straight from the worker to the scorer with the trial's provenance.

State lives in SQLite (`trials.sqlite`): a restarted queue or a resumed campaign re-runs only
trials that had not finished. A failing trial becomes an error row for its agent; it never
stops the queue.
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import time
import traceback
import uuid
from collections import defaultdict, deque
from importlib import metadata
from pathlib import Path
from typing import Any

import ray

from aar_ray import train
from aar_ray.config import CampaignConfig, ConfigError
from aar_ray.errors import Refusal
from aar_ray.lab import integrity, placement
from aar_ray.lab.store import Store, dumps
from aar_ray.observe import metrics, operations, tracking
from aar_ray.sandbox import custom_methods

# Each entry one schema version, never edited once released: append to change it
MIGRATIONS = ["""
CREATE TABLE IF NOT EXISTS trials (
  trial_id TEXT PRIMARY KEY, seq INTEGER, agent TEXT, kind TEXT, method TEXT, params TEXT,
  seeds TEXT, status TEXT, error TEXT, created REAL, started REAL, finished REAL,
  provenance TEXT, parent TEXT);
CREATE TABLE IF NOT EXISTS requests (request_id TEXT PRIMARY KEY, trial_id TEXT);
"""]
ACTIVE = ("queued", "running")
LOST = (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError,  # its worker/node died
        ray.exceptions.ObjectLostError, ray.exceptions.LocalRayletDiedError)


class TrialError(Refusal):
    """A trial request the queue refuses; the message says what is allowed."""


@functools.cache
def package_versions() -> dict[str, str | None]:
    """Installed versions do not change while a process runs: read them from disk once."""
    versions = {}
    for pkg in ("aar-ray", "torch", "numpy", "ray", "transformers", "scikit-learn"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def provenance(cfg: CampaignConfig, method: str, source_path: Path | None = None
               ) -> dict[str, Any]:
    """Everything needed to rerun a trial exactly: code hash, setting and the hub commits of its
    data and models, teacher and student recipes, versions."""
    from aar_ray.w2s.trial import revisions

    if source_path is not None:  # the source itself: the trial (and its control) run this text
        source = source_path.read_text()
        code = {"code_hash": custom_methods.code_hash(source),
                "method_source_path": str(source_path), "method_source": source}
    else:
        from aar_ray.w2s.methods import code_hash  # imports torch: not at module level

        code = {"code_hash": code_hash(method)}
    finetune = "finetune" in (cfg.setting.teacher, cfg.student.mode)
    return {**code, "task": cfg.setting.task,
            "weak": cfg.setting.weak, "strong": cfg.setting.strong,
            "revisions": revisions(cfg.setting), "teacher": cfg.setting.teacher,
            "student": cfg.student.__dict__,
            "finetune": cfg.finetune.recipe() if finetune else None,
            "versions": dict(package_versions())}


@ray.remote
def execute_trial(cfg: CampaignConfig, campaign_dir: str, method: str, params: dict,
                  source: str | None, *inputs) -> list[Any]:
    """One trial on a worker: predictions per input (seed), from inputs that carry no labels;
    an agent's own method (its `source`) only ever runs in a sandboxed child."""
    train.install()  # a built-in method may fine-tune (student.mode finetune) on Ray Train
    return custom_methods.run_any(cfg, campaign_dir, method, params, list(inputs), source)


class TrialQueue:
    def __init__(self, campaign_dir: str, cfg: CampaignConfig, scorer: Any,
                 secrets: dict[str, Any] | None = None) -> None:
        self.cfg, self.dir = cfg, campaign_dir
        # (seed, shuffle) -> ObjectRef of StudentInputs from the scorer, owned by this actor so
        # a restarted queue simply asks again; shuffle 0/1 = the teacher-use control's labels
        self._inputs: dict[tuple[int, int | None], Any] = {}
        for name, ref in (secrets or {}).items():  # W&B reads its key from the environment
            os.environ[name] = ray.get(ref)
        self.scorer = scorer
        self.store = Store(Path(campaign_dir) / "trials.sqlite", MIGRATIONS)
        self.pending: dict[str, deque[str]] = defaultdict(deque)
        self.running: dict[str, asyncio.Task] = {}
        self.wake = asyncio.Event()
        self.tracking: set[asyncio.Task] = set()  # W&B logging still in flight
        self.done_event: dict[str, asyncio.Event] = {}
        self.reruns: dict[str, int] = defaultdict(int)  # per trial, after a lost worker/node
        for r in self.store.rows("SELECT trial_id, agent FROM trials WHERE status IN "
                                 "('queued','running') ORDER BY seq"):
            self.pending[r["agent"]].append(r["trial_id"])  # unfinished work from before
        self.store.execute("UPDATE trials SET status='queued' WHERE status='running'")
        self._loop: asyncio.Task | None = None

    def _slots(self) -> int:
        res = self.cfg.resources
        if res.max_concurrent_trials:
            return res.max_concurrent_trials
        cpus = ray.cluster_resources().get("CPU", 1)
        return max(1, int(cpus // res.cpus_per_trial))

    def _ensure_loop(self) -> None:
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._dispatch())

    # ---- requests ----------------------------------------------------------------------------

    async def enqueue(self, agent: str, method: str, params: dict | None = None,
                      seeds: list[int] | None = None, kind: str = "agent",
                      parent: str | None = None, request_id: str | None = None) -> dict:
        """Queue a trial; a repeated `request_id` (an agent replaying its step after a
        restart) gets the trial queued the first time."""
        from aar_ray.w2s.methods import make_method

        self._ensure_loop()
        if request_id and (old := self.store.one(
                "SELECT t.trial_id, t.status, t.seeds FROM requests r JOIN trials t "
                "USING (trial_id) WHERE r.request_id=?", (request_id,))):
            return {"trial_id": old["trial_id"], "status": old["status"],
                    "seeds": json.loads(old["seeds"])}
        params = dict(params or {})
        custom, source_path = custom_methods.parse_id(method), None
        if custom:  # only the agent's own (the lab confirms anyone's); run only in the sandbox
            source_path = custom_methods.method_path(self.dir, *custom)
            if (custom[0] != agent and kind != "confirm") or not source_path.exists():
                raise TrialError(f"no method {method!r} of yours; write it with write_method")
        else:
            try:
                make_method(method, params, self.cfg.student.mode)
            except ConfigError as e:
                raise TrialError(str(e)) from None
        if kind == "confirm":  # the lab's own re-runs, on seeds exploration never saw
            if parent and (old := self.store.one(
                    "SELECT trial_id, seeds FROM trials WHERE kind='confirm' AND parent=?",
                    (parent,))):
                return {"trial_id": old["trial_id"], "status": "queued",
                        "seeds": json.loads(old["seeds"])}  # a resumed campaign asks again
            allowed = self.cfg.confirm.seeds
        else:
            allowed = self.cfg.seeds
        seeds = list(seeds) if seeds else self.cfg.default_trial_seeds()
        if len(set(seeds)) != len(seeds) or any(s not in allowed for s in seeds):
            raise TrialError(f"seeds must be distinct values from {allowed}; got {seeds}")
        limit = self.cfg.trial_budget(agent)
        if kind == "agent" and limit:
            used = self.store.one("SELECT COUNT(*) AS n FROM trials WHERE agent=? AND "
                                  "kind='agent'", (agent,))["n"]
            if used >= limit:
                raise TrialError(f"trial budget used up ({limit} trials per agent)")
        prov = provenance(self.cfg, method, source_path)
        if kind == "control":  # the parent's exact code, even if the agent rewrote it since
            prov = json.loads(self.store.one("SELECT provenance FROM trials WHERE trial_id=?",
                                             (parent,))["provenance"])
        trial_id = f"t{uuid.uuid4().hex[:10]}"
        seq = self.store.one("SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM trials")["s"]
        self.store.execute(
            "INSERT INTO trials (trial_id, seq, agent, kind, method, params, seeds, status,"
            " created, provenance, parent) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (trial_id, seq, agent, kind, method, dumps(params), dumps(seeds), "queued",
             time.time(), dumps(prov), parent))
        if request_id:
            self.store.execute("INSERT INTO requests VALUES (?,?)", (request_id, trial_id))
        self.pending[agent].append(trial_id)
        metrics.queue_length(sum(len(q) for q in self.pending.values()))
        self.wake.set()
        return {"trial_id": trial_id, "status": "queued", "seeds": seeds,
                "available_seeds": list(allowed)}

    async def method_catalog(self) -> dict[str, dict[str, Any]]:
        """The built-in methods that run in this campaign's student mode, described. Agents
        read it here so that their processes never import torch (≈ 55 MB, not ≈ 200 MB)."""
        from aar_ray.w2s.methods import catalog

        return catalog(self.cfg.student.mode)

    async def slots(self) -> int:
        """How many trials run at once: a sweep keeps this many configurations in flight."""
        return self._slots()

    async def enqueue_control(self, trial_id: str) -> dict[str, Any]:
        """The teacher-use control of a trial: the same method and params, trained on the
        teacher's labels shuffled across examples. Run by the lab, not by agents."""
        row = self.store.one("SELECT * FROM trials WHERE trial_id=?", (trial_id,))
        if row is None:
            raise TrialError(f"no trial {trial_id!r}")
        old = self.store.one("SELECT trial_id FROM trials WHERE parent=? AND kind='control'",
                             (trial_id,))
        if old:
            return {"trial_id": old["trial_id"]}
        return await self.enqueue(row["agent"], row["method"], json.loads(row["params"]),
                                  json.loads(row["seeds"]), kind="control", parent=trial_id)

    async def status(self, trial_id: str, agent: str | None = None,
                     wait_s: float = 0.0) -> dict[str, Any]:
        """A trial's state; `wait_s` blocks up to that long for it to finish."""
        self._ensure_loop()
        row = self.store.one("SELECT * FROM trials WHERE trial_id=?", (str(trial_id),))
        if row is None or (agent is not None and row["agent"] != agent):
            raise TrialError(f"no trial {trial_id!r} of yours")
        if row["status"] in ACTIVE and wait_s > 0:
            event = self.done_event.setdefault(trial_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout=min(wait_s, 600))
            except TimeoutError:
                pass
            row = self.store.one("SELECT * FROM trials WHERE trial_id=?", (trial_id,))
        return self._view(row)

    @staticmethod
    def _view(row: dict[str, Any]) -> dict[str, Any]:
        return {"trial_id": row["trial_id"], "agent": row["agent"], "method": row["method"],
                "params": json.loads(row["params"]), "seeds": json.loads(row["seeds"]),
                "status": row["status"], "error": integrity.agent_error(row["error"]),
                "kind": row["kind"],
                "parent": row["parent"], "seconds": (row["finished"] - row["started"])
                if row["finished"] and row["started"] else None}

    async def list(self, agent: str | None = None, kind: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM trials WHERE 1=1", []
        if agent:
            sql, args = sql + " AND agent=?", args + [agent]
        if kind:
            sql, args = sql + " AND kind=?", args + [kind]
        return [self._view(r) for r in self.store.rows(sql + " ORDER BY seq", tuple(args))]

    async def counts(self, kind: str | None = None) -> dict[str, int]:
        where, args = ("WHERE kind=?", (kind,)) if kind else ("", ())
        rows = self.store.rows(f"SELECT status, COUNT(*) AS n FROM trials {where} "
                               "GROUP BY status", args)
        out = {"queued": 0, "running": 0, "done": 0, "error": 0}
        out.update({r["status"]: r["n"] for r in rows})
        return out

    async def drain(self, timeout_s: float = 3600) -> dict[str, int]:
        """Wait until no trial is queued or running."""
        self._ensure_loop()
        end = time.time() + timeout_s
        while time.time() < end:
            c = await self.counts()
            if c["queued"] == 0 and c["running"] == 0:
                await asyncio.gather(*self.tracking, return_exceptions=True)
                return c
            await asyncio.sleep(0.2)
        return await self.counts()

    # ---- execution ---------------------------------------------------------------------------

    def _next(self) -> str | None:
        """Fair share: the agent with the fewest running trials, oldest request first."""
        running_by = defaultdict(int)
        for tid in self.running:
            running_by[self._agent_of(tid)] += 1
        waiting = [(running_by[a], q[0]) for a, q in self.pending.items() if q]
        if not waiting:
            return None
        seq = {tid: self.store.one("SELECT seq FROM trials WHERE trial_id=?", (tid,))["seq"]
               for _, tid in waiting}
        _, tid = min(waiting, key=lambda w: (w[0], seq[w[1]]))
        self.pending[self._agent_of(tid)].popleft()
        return tid

    def _agent_of(self, trial_id: str) -> str:
        return self.store.one("SELECT agent FROM trials WHERE trial_id=?", (trial_id,))["agent"]

    def _launch(self, trial_id: str) -> None:
        row = self.store.one("SELECT * FROM trials WHERE trial_id=?", (trial_id,))
        res = self.cfg.resources
        # a finetune trial's CPUs are held by its Ray Train workers, not by this task
        cpus = 0 if self.cfg.student.mode == "finetune" else res.cpus_per_trial
        seeds = json.loads(row["seeds"])
        shuffles = (0, 1) if row["kind"] == "control" else (None,)  # a call each: no repeats
        calls = [[self._input(s, r) for s in seeds] for r in shuffles]
        # no Ray retries (an out-of-memory kill is the trial's error); see `_rerun`
        opts = {"num_cpus": cpus, "num_gpus": res.gpus_per_trial, "max_retries": 0,
                "name": f"trial-{trial_id}-{row['method']}", **placement.trials(self.cfg)}
        custom, source = custom_methods.parse_id(row["method"]), None
        if custom:
            prov = json.loads(row["provenance"])  # campaigns from before kept no source
            source = prov.get("method_source") or custom_methods.method_path(
                self.dir, *custom).read_text()
            if custom_methods.code_hash(source) != prov["code_hash"]:
                self._fail(trial_id, "the method's source changed after the trial was queued; "
                                     "run a new trial")
                return
        refs = [execute_trial.options(**opts).remote(self.cfg, self.dir, row["method"], json.loads(
            row["params"]), source, *c) for c in calls]
        self.running[trial_id] = asyncio.get_running_loop().create_task(
            self._finish(trial_id, refs))
        self.store.execute("UPDATE trials SET status='running', started=? WHERE trial_id=?",
                           (time.time(), trial_id))

    def _input(self, seed: int, shuffle: int | None = None) -> Any:
        if (seed, shuffle) not in self._inputs:
            self._inputs[seed, shuffle] = self.scorer.student_inputs.remote(seed, shuffle)
        return self._inputs[seed, shuffle]

    def _wake(self, trial_id: str) -> None:
        """Wake whoever waits on a finished trial; the event goes (its waiters hold it), so
        a long campaign keeps no event per trial."""
        if (event := self.done_event.pop(trial_id, None)) is not None:
            event.set()

    def _fail(self, trial_id: str, error: str) -> None:
        self.store.execute("UPDATE trials SET status='error', error=?, finished=? WHERE "
                           "trial_id=?", (error, time.time(), trial_id))
        self._wake(trial_id)

    async def _dispatch(self) -> None:
        while True:
            while len(self.running) < self._slots():
                tid = self._next()
                if tid is None:
                    break
                self._launch(tid)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)
            except TimeoutError:
                pass

    async def _finish(self, trial_id: str, refs: list[ray.ObjectRef]) -> None:
        """Await a trial's tasks (a control: one per shuffle), send predictions to the scorer."""
        row = self.store.one("SELECT * FROM trials WHERE trial_id=?", (trial_id,))
        seeds = json.loads(row["seeds"])
        try:
            parts = [await ref for ref in refs]
            preds = [p[i] for i in range(len(seeds)) for p in parts]  # seed-major, as recorded
            if row["kind"] == "control":
                await self.scorer.record_control.remote(
                    row["parent"], [s for s in seeds for _ in range(2)], preds)
            else:
                await self.scorer.record.remote(
                    trial_id, row["agent"], row["method"], json.loads(row["params"]), seeds,
                    json.loads(row["provenance"]), dict(zip(seeds, preds, strict=True)))
            self.store.execute("UPDATE trials SET status='done', finished=? WHERE trial_id=?",
                               (time.time(), trial_id))
            self._wake(trial_id)
            metrics.trial_finished(row["agent"], row["method"], "done")
            # one W&B run per trial (controls too, under their own job_type), off the loop
            task = asyncio.get_running_loop().create_task(self._track(row))
            self.tracking.add(task)
            task.add_done_callback(self.tracking.discard)
        except Exception as e:  # any failure is the asking agent's error result
            if isinstance(e, LOST) and self._rerun(row):
                return
            self._fail(trial_id, error_text(e))
            metrics.trial_finished(row["agent"], row["method"], "error")
            cause = getattr(e, "cause", None) or e
            if type(cause).__name__ == "SandboxViolation":
                await self.scorer.record_event.remote(row["agent"], trial_id, cause.event,
                                                      str(cause))
            if row["kind"] == "control" and custom_methods.parse_id(row["method"]):
                await self.scorer.record_control_failed.remote(row["parent"], error_text(e))
        finally:
            self.running.pop(trial_id, None)
            metrics.queue_length(sum(len(q) for q in self.pending.values()))
            self.wake.set()

    def _rerun(self, row: dict[str, Any]) -> bool:
        """Queue again, first in line, a trial whose worker or node died under it (at most
        `resources.trial_retries` times); only a finished run reaches the scorer."""
        tid = row["trial_id"]
        if self.reruns[tid] >= self.cfg.resources.trial_retries:
            return False
        self.reruns[tid] += 1
        operations.record(self.dir, "trial_rerun", trial_id=tid, agent=row["agent"])
        self.store.execute("UPDATE trials SET status='queued' WHERE trial_id=?", (tid,))
        self.pending[row["agent"]].appendleft(tid)
        return True

    async def _track(self, row: dict[str, Any]) -> None:
        """Log the trial to W&B with the scorer's numbers (its private scores)."""
        scores = await self.scorer.trial_scores_private.remote(row["trial_id"], row["parent"])
        path = Path(self.dir) / "agents" / row["agent"] / "direction.md"
        direction = path.read_text().strip() if path.exists() else row["agent"]
        trial = {**row, "params": json.loads(row["params"]), "seeds": json.loads(row["seeds"])}
        await asyncio.to_thread(tracking.log_trial, Path(self.dir).name, self.dir, self.cfg,
                                trial, direction, scores)


def error_text(e: BaseException) -> str:
    """The root cause's type and message (and the sandboxed child's traceback), without Ray's
    wrapping: kept whole in trials.sqlite; agents see only `integrity.agent_error` of it."""
    cause = getattr(e, "cause", None) or e
    text = f"{type(cause).__name__}: {cause}".strip()
    if isinstance(cause, MemoryError) or "OutOfMemory" in type(e).__name__:
        return "out of memory: " + text
    return text or traceback.format_exc(limit=1)

