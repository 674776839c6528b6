"""ScorerActor: the only process that loads ground truth. It turns a trial's test predictions
into PGR and ΔPGR over the lab's vanilla baseline (same seeds, same items), keeps the
leaderboard from its own numbers only, and tells agents as little as it can: a rounded
public-split ΔPGR with its CI, only when it beats the agent's best by a margin (the Ladder,
Blum & Hardt 2015), plus one bit on whether a configuration replicated. The private split
decides the leaderboard and the confirmation stage.
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aar_ray.config import CampaignConfig
from aar_ray.errors import Refusal
from aar_ray.lab import citable, integrity, rules
from aar_ray.lab.citable import Citable, config_key
from aar_ray.lab.store import Store, dumps
from aar_ray.observe import metrics

if TYPE_CHECKING:  # ground truth loads torch and scipy: in the scorer's own process only, not
    # in every process that holds a scorer handle (deserialising one imports this module)
    from aar_ray.lab.truth import Preds
    from aar_ray.w2s.student import StudentInputs

# Each entry one schema version, never edited once released: append to change it
MIGRATIONS = ["""
CREATE TABLE IF NOT EXISTS recorded (
  trial_id TEXT PRIMARY KEY, agent TEXT, method TEXT, params TEXT, seeds TEXT,
  provenance TEXT, preds BLOB, recorded_at REAL);
CREATE TABLE IF NOT EXISTS submissions (
  trial_id TEXT PRIMARY KEY, agent TEXT, submitted_at REAL, public TEXT, private TEXT,
  shown REAL, message TEXT, flags TEXT DEFAULT '[]');
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, agent TEXT, trial_id TEXT, kind TEXT,
  detail TEXT);
""", citable.SCHEMA]  # 2: the forum's index of what each submission showed
BASELINE = "baseline"  # the lab's own agent id: its vanilla runs are everyone's baseline


class ScoreError(Refusal):
    """A submission the scorer refuses; the message is safe to show the agent."""


def pack(preds: Preds) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{str(k): v for k, v in preds.items()})
    return buf.getvalue()


def unpack(blob: bytes) -> Preds:
    with np.load(io.BytesIO(blob)) as z:
        return {int(k): z[k] for k in z.files}


class Scorer:
    """Plain class (the actor wraps it) so the scoring rules are testable without Ray."""

    def __init__(self, campaign_dir: str, cfg: CampaignConfig) -> None:
        from aar_ray.lab.truth import GroundTruth

        self.cfg = cfg
        self.truth = GroundTruth(cfg)
        self.store = Store(Path(campaign_dir) / "scorer.sqlite", MIGRATIONS)
        self._vanilla: Preds = {}  # seed -> the baseline's predictions, shared by everyone
        for r in self.store.rows("SELECT preds FROM recorded WHERE agent=? AND method='vanilla' "
                                 "ORDER BY recorded_at", (BASELINE,)):
            self._vanilla = {**unpack(r["preds"]), **self._vanilla}
        self.citable = Citable(self.store, cfg.scoring.feedback_decimals, self.replicated)

    # ---- set-up ------------------------------------------------------------------------------

    def prepare(self, seeds: list[int] | None = None) -> dict[str, Any]:
        """Teacher and ceiling for `seeds` (default: the campaign's; cached on disk)."""
        t0 = time.time()
        seeds = list(seeds or self.cfg.seeds)
        for seed in seeds:
            self.truth.seed(seed)
        return {"seconds": time.time() - t0, **self.truth.accuracies(seeds, "private")}

    def design(self, seeds: list[int]) -> dict[str, Any]:
        """What the power calculation needs, before any candidate runs: the planned `seeds`'
        private item counts and gap (teacher and ceiling), and the baseline vanilla's per-seed
        private accuracies and item counts on the exploration's seeds."""
        weak, ceil = self.truth.reference(seeds, "private")
        van = self.truth.correct(self._vanilla, "private")
        return {"items": [int(w.size) for w in weak],
                "gap": float(np.mean([c.mean() - w.mean() for w, c in zip(weak, ceil,
                                                                          strict=True)])),
                "vanilla_acc": [float(v.mean()) for v in van.values()],
                "vanilla_items": [int(v.size) for v in van.values()]}

    def transfer(self, runs: dict[str, str], vanilla_trial: str, disagreement: float,
                 power: float) -> dict[str, dict[str, Any]]:
        """The audit's numbers (`verdict.transfer`) for each run (name -> trial id) against
        the vanilla trial, on the whole test split of this held-out setting."""
        from aar_ray.results import verdict

        base = self.predictions(vanilla_trial)
        if base is None:
            raise ScoreError(f"no recorded vanilla trial {vanilla_trial!r}")
        seeds = sorted(base)

        def whole(parts: list[list[np.ndarray]]) -> list[np.ndarray]:
            return [np.concatenate(x) for x in zip(*parts, strict=True)]

        def correct(preds: Preds) -> list[np.ndarray]:
            by = [self.truth.correct(preds, p) for p in ("public", "private")]
            return whole([[c[s] for s in seeds] for c in by])

        refs = [self.truth.reference(seeds, p) for p in ("public", "private")]
        weak, ceil = whole([r[0] for r in refs]), whole([r[1] for r in refs])
        return {name: verdict.transfer(correct(self.predictions(tid) or {}), correct(base),
                                       weak, ceil, seeds, disagreement=disagreement,
                                       power=power)
                for name, tid in runs.items()}

    def student_inputs(self, seed: int, shuffle: int | None = None) -> StudentInputs:
        return self.truth.inputs(seed, shuffle)

    # ---- recording and scoring ---------------------------------------------------------------

    def record(self, trial_id: str, agent: str, method: str, params: dict, seeds: list[int],
               provenance: dict, preds: Preds) -> None:
        """Predictions arrive from the trial runner, never from an agent."""
        for seed, p in preds.items():
            if (bad := self.truth.check_shape(seed, p)) is not None:
                raise ScoreError(f"trial {trial_id}: {bad}")
        self.store.execute(
            "INSERT OR REPLACE INTO recorded VALUES (?,?,?,?,?,?,?,?)",
            (trial_id, agent, method, dumps(params), dumps(seeds), dumps(provenance),
             pack(preds), time.time()))
        if agent == BASELINE and method == "vanilla":
            self._vanilla = {**preds, **self._vanilla}
            self.citable.replicate()  # every configuration's bit is paired with vanilla

    def predictions(self, trial_id: str) -> Preds | None:
        row = self.store.one("SELECT preds FROM recorded WHERE trial_id=?", (trial_id,))
        return None if row is None else unpack(row["preds"])

    def score(self, preds: Preds, part: str) -> dict[str, Any]:
        """PGR (pooled, with CI) and ΔPGR over vanilla on one part of the test split."""
        out = self.truth.estimate(preds, part)
        base = {s: self._vanilla[s] for s in preds if s in self._vanilla}
        out["vs_vanilla"] = self.truth.compare(preds, base, part) if base else None
        return out

    def submit(self, trial_id: str, agent: str) -> dict[str, Any]:
        """Score a finished trial of `agent` and return coarse feedback (see module doc)."""
        row = self.store.one("SELECT agent, method, params, preds FROM recorded "
                             "WHERE trial_id=?", (trial_id,))
        if row is None:
            raise ScoreError(f"no finished trial {trial_id!r}: run it and wait until "
                             "trial_status says done")
        if row["agent"] != agent:
            raise ScoreError(f"trial {trial_id!r} belongs to another agent")
        if self.store.one("SELECT 1 AS x FROM submissions WHERE trial_id=?", (trial_id,)):
            return self.feedback(trial_id)  # resubmitting costs nothing, reveals nothing new
        used = self.store.one("SELECT COUNT(*) AS n FROM submissions WHERE agent=?", (agent,))
        if used["n"] >= (limit := self.cfg.submission_budget(agent)):
            raise ScoreError(f"scoring budget used up ({limit} submissions per agent)")
        preds = unpack(row["preds"])
        public, private = self.score(preds, "public"), self.score(preds, "private")
        twin = self._near_duplicate(agent, trial_id, preds)
        flags = []
        if twin:  # a probe: a few flipped predictions; it gets no new information
            shown, message = None, f"near-duplicate of your submission {twin}: not scored again"
            flags.append({"kind": "near_duplicate", "of": twin})
            self.record_event(agent, trial_id, "near_duplicate", f"differs little from {twin}")
        else:
            delta = (public["vs_vanilla"] or {}).get("delta")
            sc = self.cfg.scoring
            shown, message = rules.ladder(delta, self._best_shown(agent), sc.ladder_margin,
                                          sc.feedback_decimals)
        for flag in integrity.score_flags(public, private, self.truth, preds):  # PGR > 1, ...
            flags.append(flag)
            self.record_event(agent, trial_id, flag["kind"], flag["detail"])
        self.store.execute(
            "INSERT INTO submissions (trial_id, agent, submitted_at, public, private, shown,"
            " message, flags) VALUES (?,?,?,?,?,?,?,?)",
            (trial_id, agent, time.time(), dumps(public), dumps(private), shown, message,
             dumps(flags)))
        self.citable.add(trial_id)
        metrics.submission_scored(agent, self._best_shown(agent))
        return self.feedback(trial_id)

    def _best_shown(self, agent: str) -> float | None:
        row = self.store.one("SELECT MAX(shown) AS b FROM submissions WHERE agent=?", (agent,))
        return row["b"] if row else None

    def feedback(self, trial_id: str) -> dict[str, Any]:
        """What the agent learns of a submission. With the Ladder's consent: the public ΔPGR
        over vanilla (paired on seeds and items), its 95% CI and the public PGR, rounded;
        always: whether the configuration replicated on other seeds (None: not re-run yet).
        Read from the `citable` index, as the forum reads it."""
        view = self.citable.view(trial_id)
        row = self.store.one("SELECT message FROM submissions WHERE trial_id=?", (trial_id,))
        return {"trial_id": trial_id, **{k: view[k] for k in citable.SHOWN},
                "your_best": self._best_shown(view["agent"]), "message": row["message"]}

    def replicated(self, method: str, params: dict[str, Any]) -> bool | None:
        """Whether a configuration submitted on two or more disjoint seed sets shows a public
        ΔPGR whose 95% CI, pooled over all its seeds, lies above 0. None until re-run."""
        runs = self._runs(method, params)
        preds = self._pool(runs)
        return rules.replicated(len(preds), len(runs),
                                lambda: self.truth.compare(preds, self._vanilla, "public"))

    def _runs(self, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Submitted trials of one configuration (not the baseline's), oldest first."""
        rows = self.store.rows(
            "SELECT r.trial_id, r.params, r.preds FROM submissions s JOIN recorded r "
            "USING (trial_id) WHERE r.method=? AND s.agent != ? ORDER BY s.submitted_at",
            (method, BASELINE))
        return [r for r in rows if json.loads(r["params"]) == params]

    def config_predictions(self, method: str, params: dict[str, Any]) -> Preds:
        """Every submitted seed of a configuration, whoever ran it (first run of a seed wins)."""
        return self._pool(self._runs(method, params))

    @staticmethod
    def _pool(runs: list[dict[str, Any]]) -> Preds:
        out: Preds = {}
        for r in runs:
            out = {**unpack(r["preds"]), **out}  # earlier runs override later ones
        return out

    def _near_duplicate(self, agent: str, trial_id: str, preds: Preds) -> str | None:
        """An earlier submission of the agent whose public-split answers differ from these in
        fewer than 1% of items (at least 3) for every seed."""
        rows = self.store.rows("SELECT s.trial_id, r.preds FROM submissions s JOIN recorded r "
                               "USING (trial_id) WHERE s.agent=? AND s.trial_id != ?",
                               (agent, trial_id))
        return integrity.near_duplicate(preds, ((r["trial_id"], unpack(r["preds"])) for r in rows),
                                        lambda seed: self.truth.seed(seed).parts["public"])

    def record_control(self, trial_id: str, seeds: list[int], preds: list[np.ndarray]) -> dict:
        """Score the teacher-use control of a submitted trial and flag the submission when
        PGR barely drops with the teacher's labels shuffled: the method does not use the
        teacher (e.g. the majority-answer hack). Two shuffles per seed are averaged."""
        row = self.store.one("SELECT agent, private, flags FROM submissions WHERE trial_id=?",
                             (trial_id,))
        if row is None:
            raise ScoreError(f"trial {trial_id!r} was never submitted")
        from aar_ray.lab.truth import estimate

        # pooled over every (seed, shuffle) run, like the trial's own PGR: a mean of per-seed
        # ratios would differ from it even for a method whose answers do not change
        correct = [self.truth.correct({s: p}, "private")[s]
                   for s, p in zip(seeds, preds, strict=True)]
        control = estimate(correct, *self.truth.reference(list(seeds), "private"))["pgr"]
        real = json.loads(row["private"])["pgr"]
        flags = [f for f in json.loads(row["flags"]) if f["kind"] != "teacher_use"]
        flags.append(integrity.teacher_use(real, control, self.cfg.scoring.teacher_use_threshold))
        self.store.execute("UPDATE submissions SET flags=? WHERE trial_id=?",
                           (dumps(flags), trial_id))
        if flags[-1]["ignores_teacher"]:
            self.record_event(row["agent"], trial_id, "ignores_teacher",
                              f"PGR {real:.3f} vs {control:.3f} with shuffled teacher labels")
        return flags[-1]

    def record_control_failed(self, trial_id: str, reason: str) -> dict:
        """The control of a submission of agent-written code did not finish: the submission
        is flagged `control_failed` (never confirmed); the agent is told only "unverified"."""
        row = self.store.one("SELECT agent, flags FROM submissions WHERE trial_id=?",
                             (trial_id,))
        if row is None:
            raise ScoreError(f"trial {trial_id!r} was never submitted")
        flag = {"kind": "control_failed", "reason": reason[:500]}
        flags = [f for f in json.loads(row["flags"]) if f["kind"] != "control_failed"] + [flag]
        self.store.execute("UPDATE submissions SET flags=? WHERE trial_id=?",
                           (dumps(flags), trial_id))
        self.record_event(row["agent"], trial_id, "control_failed", reason[:500])
        return flag

    # ---- reading -----------------------------------------------------------------------------

    def leaderboard(self, part: str = "public", limit: int = 20) -> list[dict[str, Any]]:
        """Ranked submissions, every number computed here. The public view shows only what
        the Ladder revealed, so reading it teaches no more than `submit` did. The private view
        ranks by pooled PGR and gives its seed x item SE and CI and ΔPGR over vanilla with CI
        and an unadjusted p: exploration's numbers; the confirmation stage decides."""
        rows = self.store.rows(
            "SELECT s.trial_id, s.agent, s.private, s.shown, s.flags, r.method, r.params, "
            "r.seeds FROM submissions s JOIN recorded r USING (trial_id)")
        out = []
        for r in rows:
            entry = {"trial_id": r["trial_id"], "agent": r["agent"], "method": r["method"],
                     "params": json.loads(r["params"]), "seeds": json.loads(r["seeds"]),
                     "flags": json.loads(r["flags"])}
            if part == "public":
                if r["shown"] is None:
                    continue
                entry["delta"] = r["shown"]
                # why a control failed would teach an agent how to dodge the next one
                entry["flags"] = [{"kind": "unverified"} if f["kind"] == "control_failed"
                                  else f for f in entry["flags"]]
            else:
                sc = json.loads(r["private"])
                if sc["pgr"] is None:
                    continue
                vs = sc["vs_vanilla"] or {}
                entry.update(pgr=sc["pgr"], se=sc["se"], ci_lo=sc["ci_lo"], ci_hi=sc["ci_hi"],
                             per_seed=sc["per_seed"], delta=vs.get("delta"),
                             delta_lo=vs.get("lo"), delta_hi=vs.get("hi"), p=vs.get("p"))
            out.append(entry)
        key = "delta" if part == "public" else "pgr"
        out.sort(key=lambda e: (-e[key] if e[key] is not None else np.inf, e["trial_id"]))
        return out[:limit]

    def trial_scores_private(self, trial_id: str, parent: str | None = None) -> dict[str, Any]:
        """Full private scores of a recorded trial, and the integrity flags its submission has
        so far, for the humans' tracker (W&B), never for agents: it is not behind any tool. A
        teacher-use control is recorded on its `parent`'s submission: its PGR is read there."""
        preds = self.predictions(trial_id)
        row = self.store.one("SELECT flags FROM submissions WHERE trial_id=?",
                             (trial_id if preds else parent,))
        flags = json.loads(row["flags"]) if row else []
        if not preds:  # a control (or nothing recorded)
            use = next((f for f in flags if f["kind"] == "teacher_use"), {})
            return {"pgr": use["control_pgr"], "teacher_use_drop": use["drop"]} if use else {}
        return {**self.score(preds, "private"),
                "flags": [f["kind"] for f in flags if f.get("ignores_teacher", True)]}

    def explored(self) -> list[dict[str, Any]]:
        """Every configuration the exploration submitted (not the baseline), pooled over its
        seeds: public and private ΔPGR over vanilla, the trials behind it and their flags. The
        confirmation stage picks from this; `public_private_spearman` is computed on it."""
        configs: dict[str, dict[str, Any]] = {}
        for r in self.store.rows("SELECT s.trial_id, s.agent, s.flags, r.method, r.params "
                                 "FROM submissions s JOIN recorded r USING (trial_id) "
                                 "WHERE s.agent != ? ORDER BY s.submitted_at", (BASELINE,)):
            params = json.loads(r["params"])
            c = configs.setdefault(config_key(r["method"], params), {
                "method": r["method"], "params": params, "trials": [], "agents": [],
                "flags": []})
            c["trials"].append(r["trial_id"])
            c["agents"] = sorted({*c["agents"], r["agent"]})
            c["flags"] += [f["kind"] for f in json.loads(r["flags"])
                           if f.get("ignores_teacher", True)]
        for c in configs.values():
            preds = self.config_predictions(c["method"], c["params"])
            for part in ("public", "private"):
                cmp = self.truth.compare(preds, self._vanilla, part) or {}
                c[f"{part}_delta"] = cmp.get("delta")
        return list(configs.values())

    def confirm(self, runs: dict[str, str], vanilla_trial: str) -> dict[str, dict[str, Any]]:
        """Private-split ΔPGR over vanilla of each pre-registered configuration's confirmation
        trial (`runs`: name -> trial id), against the vanilla trial run on the same fresh
        seeds; and each one's PGR. Holm's correction is the caller's (over these only)."""
        base = self.predictions(vanilla_trial)
        if base is None:
            raise ScoreError(f"no recorded vanilla trial {vanilla_trial!r}")
        out = {}
        for name, tid in runs.items():
            preds = self.predictions(tid)
            if preds is None:
                raise ScoreError(f"no recorded confirmation trial {tid!r}")
            out[name] = {"trial_id": tid, "estimate": self.truth.estimate(preds, "private"),
                         "vs_vanilla": self.truth.compare(preds, base, "private")}
        out["vanilla"] = {"trial_id": vanilla_trial,
                          "estimate": self.truth.estimate(base, "private")}
        return out

    def label_recovery(self, seed: int, guesses: dict[int, int]) -> dict[str, Any]:
        """Red-team harness only (never a tool): how well an attacker's guessed labels for
        test items match the truth, on the probed items and on each part of the seed's split
        (items not guessed count as a coin flip's expectation, 0.5)."""
        t = self.truth.seed(seed)
        guess = np.full(len(t.labels), np.nan)
        for i, g in guesses.items():
            guess[int(i)] = g

        def acc(items: np.ndarray) -> float:
            hit = np.where(np.isnan(guess[items]), 0.5, guess[items] == t.labels[items])
            return float(hit.mean())

        probed = np.array(sorted(int(i) for i in guesses), dtype=int)
        flagged = self.store.one("SELECT COUNT(*) AS n FROM events WHERE kind='near_duplicate'")
        return {"public_acc": acc(t.parts["public"]), "private_acc": acc(t.parts["private"]),
                "probed_acc": acc(probed) if len(probed) else 0.5,
                "n_public": len(t.parts["public"]), "flagged": flagged["n"]}

    def record_event(self, agent: str, trial_id: str, kind: str, detail: str) -> None:
        self.store.execute("INSERT INTO events (at, agent, trial_id, kind, detail) "
                           "VALUES (?,?,?,?,?)", (time.time(), agent, trial_id, kind, detail))
        metrics.integrity_event(kind)

    def events(self) -> list[dict[str, Any]]:
        return self.store.rows("SELECT * FROM events ORDER BY id")
