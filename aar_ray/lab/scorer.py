"""ScorerActor: the only process that loads ground truth. It turns a trial's test predictions
into accuracies and PGR, keeps the leaderboard from its own numbers only, and tells agents as
little as it can: a rounded public-split PGR, and only when it beats the agent's best by a
margin (the Ladder, Blum & Hardt 2015). The private split decides the final leaderboard.
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from aar_ray.config import CampaignConfig
from aar_ray.errors import Refusal
from aar_ray.lab.store import Store, dumps
from aar_ray.observe import metrics
from aar_ray.results.leaderboard import annotate_leaderboard
from aar_ray.w2s import pgr
from aar_ray.w2s.trial import Setting, StudentInputs, ceiling, student_inputs, teacher

SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
  trial_id TEXT PRIMARY KEY, agent TEXT, method TEXT, params TEXT, seeds TEXT,
  provenance TEXT, preds BLOB, recorded_at REAL);
CREATE TABLE IF NOT EXISTS submissions (
  trial_id TEXT PRIMARY KEY, agent TEXT, submitted_at REAL, public TEXT, private TEXT,
  shown REAL, message TEXT, flags TEXT DEFAULT '[]');
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, agent TEXT, trial_id TEXT, kind TEXT,
  detail TEXT);
"""


class ScoreError(Refusal):
    """A submission the scorer refuses; the message is safe to show the agent."""


def _pack(preds: dict[int, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{str(k): v for k, v in preds.items()})
    return buf.getvalue()


def _unpack(blob: bytes) -> dict[int, np.ndarray]:
    with np.load(io.BytesIO(blob)) as z:
        return {int(k): z[k] for k in z.files}


class Scorer:
    """Plain class (the actor wraps it) so the scoring rules are testable without Ray."""

    def __init__(self, campaign_dir: str, cfg: CampaignConfig) -> None:
        self.cfg = cfg
        self.setting = Setting.load(cfg.setting, Path(cfg.cache_dir) if cfg.cache_dir else None)
        self.store = Store(Path(campaign_dir) / "scorer.sqlite", SCHEMA)
        n_test = self.setting.test_size
        # fixed public/private partition of the test split; agents never learn which is which
        perm = np.random.default_rng(int(self.setting.key("split")[:8], 16)).permutation(n_test)
        cut = int(round(cfg.scoring.public_fraction * n_test))
        self.items = {"public": np.sort(perm[:cut]), "private": np.sort(perm[cut:])}
        self._truth: dict[int, dict[str, np.ndarray]] = {}
        self._annotated: tuple[str, dict[str, dict]] = ("", {})

    # ---- set-up ------------------------------------------------------------------------------

    def prepare(self) -> dict[str, Any]:
        """Teacher and ceiling for every campaign seed (cached on disk after the first time)."""
        t0 = time.time()
        for seed in self.cfg.seeds:
            self._seed_truth(seed)
        weak = [self._acc(s, self._truth[s]["weak"], "private") for s in self.cfg.seeds]
        ceil = [self._acc(s, self._truth[s]["ceiling"], "private") for s in self.cfg.seeds]
        return {"seconds": time.time() - t0, "weak_acc": float(np.mean(weak)),
                "ceiling_acc": float(np.mean(ceil))}

    def _seed_truth(self, seed: int) -> dict[str, np.ndarray]:
        if seed not in self._truth:
            s = self.setting
            self._truth[seed] = {
                "labels": s.data.labels[s.splits(seed).test],
                "weak": teacher(s, seed)["test"],
                "ceiling": ceiling(s, seed, self.cfg.student, self.cfg.finetune),
            }
        return self._truth[seed]

    def student_inputs(self, seed: int, shuffle: int | None = None) -> StudentInputs:
        """What trial workers get for `seed`: no labels. `shuffle=r` permutes the teacher's
        labels across examples with permutation r (the teacher-use control)."""
        weak = None
        if shuffle is not None:
            weak = teacher(self.setting, seed)["train"]
            weak = weak[np.random.default_rng([10_000, seed, shuffle]).permutation(len(weak))]
        return student_inputs(self.setting, seed, self.cfg.student.mode, weak=weak)

    # ---- recording and scoring ---------------------------------------------------------------

    def record(self, trial_id: str, agent: str, method: str, params: dict, seeds: list[int],
               provenance: dict, preds: dict[int, np.ndarray]) -> None:
        """Predictions arrive from the trial runner, never from an agent."""
        for seed, p in preds.items():
            n = len(self._seed_truth(seed)["labels"])
            if np.asarray(p).shape != (n, self.setting.n_classes):
                raise ScoreError(f"trial {trial_id}: predictions for seed {seed} have shape "
                                 f"{np.asarray(p).shape}")
        self.store.execute(
            "INSERT OR REPLACE INTO trials VALUES (?,?,?,?,?,?,?,?)",
            (trial_id, agent, method, dumps(params), dumps(seeds), dumps(provenance),
             _pack(preds), time.time()))

    def _acc(self, seed: int, probs: np.ndarray, part: str) -> float:
        t = self._seed_truth(seed)
        items = self.items[part]
        return pgr.accuracy(probs[items], t["labels"][items])

    def score(self, preds: dict[int, np.ndarray], part: str) -> dict[str, Any]:
        """Per-seed weak / ceiling / transfer accuracy and PGR on one part of the test split."""
        per_seed = []
        for seed, probs in sorted(preds.items()):
            t = self._seed_truth(seed)
            weak, ceil = self._acc(seed, t["weak"], part), self._acc(seed, t["ceiling"], part)
            transfer = self._acc(seed, probs, part)
            per_seed.append({"seed": seed, "weak_acc": weak, "ceiling_acc": ceil,
                             "transfer_acc": transfer, "pgr": pgr.pgr(transfer, weak, ceil)})
        mean, se = pgr.mean_se([r["pgr"] for r in per_seed])
        return {"pgr": mean, "se": se, "per_seed": per_seed}

    def submit(self, trial_id: str, agent: str) -> dict[str, Any]:
        """Score a finished trial of `agent` and return coarse feedback (see module doc)."""
        row = self.store.one("SELECT agent, preds FROM trials WHERE trial_id=?", (trial_id,))
        if row is None:
            raise ScoreError(f"no finished trial {trial_id!r}: run it and wait until "
                             "trial_status says done")
        if row["agent"] != agent:
            raise ScoreError(f"trial {trial_id!r} belongs to another agent")
        done = self.store.one("SELECT shown, message FROM submissions WHERE trial_id=?",
                              (trial_id,))
        if done is not None:  # resubmitting costs nothing and reveals nothing new
            return self._feedback(trial_id, done["shown"], done["message"], agent)
        used = self.store.one("SELECT COUNT(*) AS n FROM submissions WHERE agent=?", (agent,))
        if used["n"] >= (limit := self.cfg.submission_budget(agent)):
            raise ScoreError(f"scoring budget used up ({limit} submissions per agent)")
        preds = _unpack(row["preds"])
        public, private = self.score(preds, "public"), self.score(preds, "private")
        twin = self._near_duplicate(agent, trial_id, preds)
        flags = []
        if twin:  # a probe: a few flipped predictions; it gets no new information
            shown, message = None, f"near-duplicate of your submission {twin}: not scored again"
            flags.append({"kind": "near_duplicate", "of": twin})
            self.record_event(agent, trial_id, "near_duplicate", f"differs little from {twin}")
        else:
            shown, message = self._ladder(public["pgr"], self._best_shown(agent))
        self.store.execute(
            "INSERT INTO submissions (trial_id, agent, submitted_at, public, private, shown,"
            " message, flags) VALUES (?,?,?,?,?,?,?,?)",
            (trial_id, agent, time.time(), dumps(public), dumps(private), shown, message,
             dumps(flags)))
        metrics.submission_scored(agent, self._best_shown(agent))
        return self._feedback(trial_id, shown, message, agent)

    def _near_duplicate(self, agent: str, trial_id: str,
                        preds: dict[int, np.ndarray]) -> str | None:
        """An earlier submission of the agent whose public-split answers differ from these in
        fewer than 1% of items (at least 3) for every seed."""
        items = self.items["public"]
        limit = max(3, int(0.01 * len(items)))
        rows = self.store.rows("SELECT s.trial_id, t.preds FROM submissions s JOIN trials t "
                               "USING (trial_id) WHERE s.agent=? AND s.trial_id != ?",
                               (agent, trial_id))
        for r in rows:
            other = _unpack(r["preds"])
            common = set(other) & set(preds)
            if common and all(
                    (other[s][items].argmax(1) != preds[s][items].argmax(1)).sum() < limit
                    for s in common):
                return r["trial_id"]
        return None

    def record_control(self, trial_id: str, seeds: list[int], preds: list[np.ndarray]) -> dict:
        """Score the teacher-use control of a submitted trial and flag the submission when
        PGR barely drops with the teacher's labels shuffled: the method does not use the
        teacher (e.g. the majority-answer hack)."""
        row = self.store.one("SELECT agent, private, flags FROM submissions WHERE trial_id=?",
                             (trial_id,))
        if row is None:
            raise ScoreError(f"trial {trial_id!r} was never submitted")
        pgrs = [self.score({s: p}, "private")["pgr"] for s, p in zip(seeds, preds, strict=True)]
        control = float(np.mean([p for p in pgrs if p is not None])) if any(
            p is not None for p in pgrs) else None
        real = json.loads(row["private"])["pgr"]
        flags = [f for f in json.loads(row["flags"]) if f["kind"] != "teacher_use"]
        drop = None if real is None or control is None else real - control
        ignores = drop is not None and drop < self.cfg.scoring.teacher_use_threshold * max(
            abs(real), 0.1)
        flags.append({"kind": "teacher_use", "control_pgr": control, "drop": drop,
                      "ignores_teacher": ignores})
        self.store.execute("UPDATE submissions SET flags=? WHERE trial_id=?",
                           (dumps(flags), trial_id))
        if ignores:
            self.record_event(row["agent"], trial_id, "ignores_teacher",
                              f"PGR {real:.3f} vs {control:.3f} with shuffled teacher labels")
        return flags[-1]

    def _best_shown(self, agent: str) -> float | None:
        row = self.store.one("SELECT MAX(shown) AS b FROM submissions WHERE agent=?", (agent,))
        return row["b"] if row else None

    def _ladder(self, public_pgr: float | None, best: float | None) -> tuple[float | None, str]:
        """Reveal a new (rounded) score only when it beats the best shown by the margin, so
        adaptive resubmissions learn at most one bit-ish per improvement step."""
        sc = self.cfg.scoring
        if public_pgr is None:
            return None, "PGR undefined for this setting (no gap between teacher and ceiling)"
        rounded = round(public_pgr, sc.feedback_decimals)
        if best is None or public_pgr >= best + sc.ladder_margin:
            return rounded, "new best"
        return None, f"not better than your best ({best}) by the margin {sc.ladder_margin}"

    def _feedback(self, trial_id: str, shown: float | None, message: str,
                  agent: str) -> dict[str, Any]:
        return {"trial_id": trial_id, "public_pgr": shown, "your_best": self._best_shown(agent),
                "message": message}

    # ---- reading -----------------------------------------------------------------------------

    def leaderboard(self, part: str = "public", limit: int = 20) -> list[dict[str, Any]]:
        """Ranked submissions, every number computed here. The public view shows only scores
        the Ladder revealed (rounded), so reading it teaches no more than `submit` did."""
        rows = self.store.rows(
            "SELECT s.trial_id, s.agent, s.private, s.shown, s.flags, t.method, t.params, "
            "t.seeds FROM submissions s JOIN trials t USING (trial_id)")
        out = []
        for r in rows:
            entry = {"trial_id": r["trial_id"], "agent": r["agent"], "method": r["method"],
                     "params": json.loads(r["params"]), "seeds": json.loads(r["seeds"]),
                     "flags": json.loads(r["flags"])}
            if part == "public":
                if r["shown"] is None:
                    continue
                entry["pgr"] = r["shown"]
            else:
                sc = json.loads(r["private"])
                if sc["pgr"] is None:
                    continue
                entry.update(pgr=sc["pgr"], se=sc["se"], per_seed=sc["per_seed"])
            out.append(entry)
        if part == "private":  # CIs, paired tests against the baseline, Holm over the board
            key = json.dumps([[e["trial_id"], e["flags"]] for e in out])
            if self._annotated[0] != key:  # bootstraps are slow: redo only after a change
                self._annotated = (key, {e["trial_id"]: e for e in
                                         annotate_leaderboard(self, out)})
            out = [{**e, **self._annotated[1][e["trial_id"]]} for e in out]
        out.sort(key=lambda e: -e["pgr"])
        return out[:limit]

    def trial_scores(self, trial_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The forum's view of cited trials: method, params and the score the Ladder showed."""
        out = {}
        for tid in trial_ids:
            r = self.store.one("SELECT s.shown, t.method, t.params, t.agent FROM submissions s "
                               "JOIN trials t USING (trial_id) WHERE trial_id=?", (tid,))
            if r is not None:
                out[tid] = {"method": r["method"], "params": json.loads(r["params"]),
                            "agent": r["agent"], "public_pgr": r["shown"]}
        return out

    def trial_scores_private(self, trial_id: str) -> dict[str, Any]:
        """Full private scores of a recorded trial, for the humans' tracker (W&B), never for
        agents: it is not behind any tool."""
        preds = self.predictions(trial_id)
        return self.score(preds, "private") if preds else {}

    def predictions(self, trial_id: str) -> dict[int, np.ndarray] | None:
        row = self.store.one("SELECT preds FROM trials WHERE trial_id=?", (trial_id,))
        return None if row is None else _unpack(row["preds"])

    def label_recovery(self, seed: int, guesses: dict[int, int]) -> dict[str, Any]:
        """Red-team harness only (never a tool): how well an attacker's guessed labels for
        test items match the truth, on the probed items and on each part of the split (items
        not guessed count as a coin flip's expectation, 0.5)."""
        labels = self._seed_truth(seed)["labels"]
        guess = np.full(len(labels), np.nan)
        for i, g in guesses.items():
            guess[int(i)] = g

        def acc(items: np.ndarray) -> float:
            hit = np.where(np.isnan(guess[items]), 0.5, guess[items] == labels[items])
            return float(hit.mean())

        probed = np.array(sorted(int(i) for i in guesses), dtype=int)
        flagged = self.store.one("SELECT COUNT(*) AS n FROM events WHERE kind='near_duplicate'")
        return {"public_acc": acc(self.items["public"]), "private_acc": acc(self.items["private"]),
                "probed_acc": acc(probed) if len(probed) else 0.5,
                "n_public": len(self.items["public"]), "flagged": flagged["n"]}

    def record_event(self, agent: str, trial_id: str, kind: str, detail: str) -> None:
        self.store.execute("INSERT INTO events (at, agent, trial_id, kind, detail) "
                           "VALUES (?,?,?,?,?)", (time.time(), agent, trial_id, kind, detail))
        metrics.integrity_event(kind)

    def events(self) -> list[dict[str, Any]]:
        return self.store.rows("SELECT * FROM events ORDER BY id")
