"""The scorer's rules (aar_ray/lab/rules.py: the Ladder, what feedback shows, replication) and
the integrity flags (aar_ray/lab/integrity.py), pinned on exact values and at their boundaries:
pure Python and numpy, no ground truth and no Ray, so that `make mutation` can run them once per
mutant (docs/testing.md)."""
from __future__ import annotations

import numpy as np
import pytest

from aar_ray.lab import integrity, rules

NOT_BETTER = "not better than your best ΔPGR ({}) by the margin {}"
UNDEFINED = "ΔPGR undefined (no vanilla run on these seeds, or no teacher-ceiling gap)"


# ---- the Ladder ------------------------------------------------------------------------------

def test_ladder_shows_the_first_score_rounded():
    assert rules.ladder(0.12345, None, 0.02, 2) == (0.12, "new best")
    assert rules.ladder(0.12345, None, 0.02, 3) == (0.123, "new best")
    assert rules.ladder(0.456, None, 0.5, 0) == (0.0, "new best")
    assert rules.ladder(-0.126, None, 0.02, 2) == (-0.13, "new best")  # a loss is a score too


def test_ladder_margin_boundary():
    # exact binary fractions: best + margin == 0.75 exactly
    assert rules.ladder(0.75, 0.5, 0.25, 2) == (0.75, "new best")
    assert rules.ladder(np.nextafter(0.75, 0), 0.5, 0.25, 2) == (
        None, NOT_BETTER.format(0.5, 0.25))
    assert rules.ladder(0.875, 0.5, 0.25, 1) == (0.9, "new best")
    assert rules.ladder(0.5, 0.5, 0.25, 2) == (None, NOT_BETTER.format(0.5, 0.25))
    # margin 0: equal to the best is enough, below it is not
    assert rules.ladder(0.5, 0.5, 0.0, 2) == (0.5, "new best")
    assert rules.ladder(0.25, 0.5, 0.0, 2) == (None, NOT_BETTER.format(0.5, 0.0))
    assert rules.ladder(0.43, 0.40, 0.05, 2) == (
        None, "not better than your best ΔPGR (0.4) by the margin 0.05")
    assert rules.ladder(0.456, 0.40, 0.05, 2) == (0.46, "new best")


def test_ladder_without_a_delta_shows_nothing():
    assert rules.ladder(None, None, 0.02, 2) == (None, UNDEFINED)
    assert rules.ladder(None, 0.4, 0.02, 2) == (None, UNDEFINED)


# ---- what feedback shows ---------------------------------------------------------------------

PUBLIC = {"pgr": 0.61234, "vs_vanilla": {"delta": 0.1234, "lo": 0.01567, "hi": 0.23456}}


def test_shown_scores_round_the_ci_and_pgr_of_a_revealed_delta():
    assert rules.shown_scores(0.12, PUBLIC, 2) == {
        "public_delta": 0.12, "public_delta_ci": [0.02, 0.23], "public_pgr": 0.61}
    assert rules.shown_scores(0.123, PUBLIC, 3) == {
        "public_delta": 0.123, "public_delta_ci": [0.016, 0.235], "public_pgr": 0.612}
    # 0.0 is a revealed score, not a missing one
    assert rules.shown_scores(0.0, PUBLIC, 1) == {
        "public_delta": 0.0, "public_delta_ci": [0.0, 0.2], "public_pgr": 0.6}
    assert list(rules.shown_scores(0.0, PUBLIC, 1)) == ["public_delta", "public_delta_ci",
                                                       "public_pgr"]


def test_shown_scores_reveal_nothing_the_ladder_withheld():
    assert rules.shown_scores(None, PUBLIC, 2) == {
        "public_delta": None, "public_delta_ci": None, "public_pgr": None}


def test_shown_scores_with_undefined_parts():
    no_vanilla = {"pgr": 0.61234, "vs_vanilla": None}
    assert rules.shown_scores(0.1, no_vanilla, 2) == {
        "public_delta": 0.1, "public_delta_ci": None, "public_pgr": 0.61}
    no_ci = {"pgr": 0.61234, "vs_vanilla": {"delta": 0.1, "lo": None, "hi": None}}
    assert rules.shown_scores(0.1, no_ci, 2) == {
        "public_delta": 0.1, "public_delta_ci": None, "public_pgr": 0.61}
    no_pgr = {"pgr": None, "vs_vanilla": PUBLIC["vs_vanilla"]}
    assert rules.shown_scores(0.1, no_pgr, 2) == {
        "public_delta": 0.1, "public_delta_ci": [0.02, 0.23], "public_pgr": None}


# ---- replication -----------------------------------------------------------------------------

def _never():
    raise AssertionError("pooled() computed before the configuration was re-run")


@pytest.mark.parametrize("n_seeds,n_runs", [(0, 0), (1, 1), (1, 5), (5, 1), (2, 1), (1, 2)])
def test_not_replicated_until_rerun_on_two_seeds(n_seeds, n_runs):
    assert rules.replicated(n_seeds, n_runs, _never) is None


@pytest.mark.parametrize("cmp,want", [
    ({"lo": 0.01}, True), ({"lo": 1e-12}, True), ({"lo": 0.0}, False), ({"lo": -0.1}, False),
    ({"lo": None}, False), (None, False), ({}, False)])
def test_replicated_when_the_pooled_ci_lies_above_zero(cmp, want):
    calls = []

    def pooled():
        calls.append(1)
        return cmp

    assert rules.replicated(2, 2, pooled) is want
    assert rules.replicated(3, 7, pooled) is want
    assert calls == [1, 1]


# ---- near-duplicates -------------------------------------------------------------------------

def _answers(labels, n_classes=3):
    """Probabilities whose argmax is `labels`."""
    out = np.full((len(labels), n_classes), 0.1)
    out[np.arange(len(labels)), labels] = 0.8
    return out


def _flipped(labels, k, where=None):
    """`labels` with the first k of `where` (default: all items) changed."""
    out = np.array(labels)
    idx = np.arange(len(out)) if where is None else np.asarray(where)
    out[idx[:k]] = (out[idx[:k]] + 1) % 3
    return out


@pytest.mark.parametrize("n,k,same", [
    (100, 2, True), (100, 3, False),  # the floor: at least 3 differences
    (399, 2, True), (399, 3, False),  # 1% of 399 rounds down to 3
    (400, 3, True), (400, 4, False),  # 1% of 400 is 4
    (500, 4, True), (500, 5, False), (500, 0, True)])
def test_same_answers_threshold(n, k, same):
    labels = np.arange(n) % 3
    items = np.arange(n)
    assert integrity.same_answers(_answers(labels), _answers(_flipped(labels, k)), items) is same


def test_same_answers_counts_only_the_given_items():
    labels = np.arange(1000) % 3
    items = np.arange(0, 1000, 2)  # 500 items: limit 5
    off = _flipped(labels, 400, where=np.arange(1, 1000, 2))  # every flip outside `items`
    assert integrity.same_answers(_answers(labels), _answers(off), items) is True
    inside = _flipped(labels, 5, where=items)
    assert integrity.same_answers(_answers(labels), _answers(inside), items) is False
    assert integrity.same_answers(_answers(labels), _answers(_flipped(labels, 4, items)),
                                  items) is True


def test_near_duplicate_needs_every_shared_seed_to_match():
    labels = np.arange(300) % 3
    same, far = _answers(labels), _answers(_flipped(labels, 50))
    items = {0: np.arange(300), 1: np.arange(150), 2: np.arange(300)}
    seen = []

    def public(seed):
        seen.append(seed)
        return items[seed]

    preds = {0: same, 1: same}
    assert integrity.near_duplicate(preds, [], public) is None
    assert integrity.near_duplicate(preds, [("a", {2: same})], public) is None  # no shared seed
    assert seen == []
    # shared seed 0 only: it decides, seed 1 (not in the earlier trial) is not compared
    assert integrity.near_duplicate(preds, [("a", {0: same, 2: far})], public) == "a"
    assert integrity.near_duplicate(preds, [("a", {0: same, 1: far})], public) is None
    assert integrity.near_duplicate(preds, [("a", {0: far, 1: same})], public) is None
    # the first earlier submission that matches, after one that does not
    earlier = [("a", {0: far}), ("b", {1: same}), ("c", {0: same})]
    assert integrity.near_duplicate(preds, earlier, public) == "b"
    # each seed is compared on its own public items: far differs only on seed 1's items 150+
    late = _answers(_flipped(labels, 50, where=np.arange(150, 300)))
    assert integrity.near_duplicate({1: same}, [("d", {1: late})], public) == "d"
    assert integrity.near_duplicate({0: same}, [("d", {0: late})], public) is None


# ---- teacher use -----------------------------------------------------------------------------

def _tu(control, drop, ignores):
    return {"kind": "teacher_use", "control_pgr": control, "drop": drop,
            "ignores_teacher": ignores}


def test_teacher_use_threshold_is_a_share_of_the_pgr():
    assert integrity.teacher_use(0.5, 0.25, 0.5) == _tu(0.25, 0.25, False)  # drop == 0.25: uses
    assert integrity.teacher_use(0.5, 0.375, 0.5) == _tu(0.375, 0.125, True)
    assert integrity.teacher_use(0.5, 0.25, 0.75) == _tu(0.25, 0.25, True)
    assert integrity.teacher_use(0.5, 0.75, 0.5) == _tu(0.75, -0.25, True)  # no drop at all
    assert integrity.teacher_use(0.5, -0.5, 1.0) == _tu(-0.5, 1.0, False)


def test_teacher_use_floor_and_negative_pgr():
    # |PGR| 0.05 counts as 0.1: the bar is 0.05
    assert integrity.teacher_use(0.05, 0.0, 0.5) == _tu(0.0, 0.05, False)
    assert integrity.teacher_use(0.05, 0.015625, 0.5)["ignores_teacher"] is True
    # a negative PGR: the bar is a share of its size
    assert integrity.teacher_use(-0.5, -1.0, 0.5) == _tu(-1.0, 0.5, False)
    assert integrity.teacher_use(-0.5, -0.625, 0.5) == _tu(-0.625, 0.125, True)


def test_teacher_use_undefined():
    assert integrity.teacher_use(None, 0.5, 0.5) == _tu(0.5, None, False)
    assert integrity.teacher_use(0.5, None, 0.5) == _tu(None, None, False)
    assert integrity.teacher_use(None, None, 0.5) == _tu(None, None, False)


# ---- score flags -----------------------------------------------------------------------------

class FakeTruth:
    """The two calls score_flags makes of GroundTruth, for fixed correctness arrays."""

    def __init__(self, method, ceiling):
        self.method, self.ceiling = method, ceiling

    def correct(self, preds, part):
        assert part == "private"
        return {s: self.method[s] for s in sorted(preds)}

    def reference(self, seeds, part):
        assert part == "private" and seeds == sorted(self.method)
        return [None] * len(seeds), [self.ceiling[s] for s in seeds]


def _score(pgr, *seeds):
    return {"pgr": pgr, "per_seed": [{"transfer_acc": t, "ceiling_acc": c} for t, c in seeds]}


HONEST = FakeTruth({0: np.array([True, False, False])}, {0: np.array([True, True, False])})


def test_no_flags_for_an_honest_score():
    public = _score(0.5, (0.7, 0.9), (0.75, 0.85))
    assert integrity.score_flags(public, _score(None, (0.7, 0.8)), HONEST, {0: None}) == []
    assert integrity.score_flags(_score(1.0, (0.7, 0.9)), _score(1.0, (0.7, 0.9)), HONEST,
                                 {0: None}) == []  # PGR exactly 1 is not above one


def test_pgr_above_one_on_either_part():
    flags = integrity.score_flags(_score(1.0004, (0.7, 0.9)), _score(0.9, (0.7, 0.9)), HONEST,
                                  {0: None})
    assert flags == [{"kind": "pgr_above_one", "detail": "PGR > 1, better than a student "
                      "trained on the true labels: public 1.000"}]
    flags = integrity.score_flags(_score(1.25, (0.7, 0.9)), _score(1.5, (0.7, 0.9)), HONEST,
                                  {0: None})
    assert flags == [{"kind": "pgr_above_one", "detail": "PGR > 1, better than a student "
                      "trained on the true labels: public 1.250, private 1.500"}]


def test_transfer_at_ceiling_uses_the_mean_over_seeds():
    # public: mean transfer 0.8 vs mean ceiling 0.8 (equal counts); private: 0.7 vs 0.8
    public = _score(0.5, (0.75, 0.875), (0.875, 0.75))
    private = _score(0.5, (0.875, 0.875), (0.5, 0.75))
    assert integrity.score_flags(public, private, HONEST, {0: None}) == [
        {"kind": "transfer_at_ceiling",
         "detail": "transfer accuracy at or above the ceiling's: public 0.812 >= 0.812"}]
    below = _score(0.5, (0.75, 0.875), (0.875, 0.875))
    assert integrity.score_flags(below, below, HONEST, {0: None}) == []
    above = _score(1.5, (0.9, 0.8))
    assert [f["kind"] for f in integrity.score_flags(above, above, HONEST, {0: None})] == [
        "pgr_above_one", "transfer_at_ceiling"]
    assert integrity.score_flags(above, above, HONEST, {0: None})[1]["detail"] == (
        "transfer accuracy at or above the ceiling's: public 0.900 >= 0.800, "
        "private 0.900 >= 0.800")


def test_score_flags_add_beyond_inputs_last():
    n = 12  # right on 12 items the ceiling gets wrong, per seed: p = 2**-12 per seed
    thief = FakeTruth({0: np.ones(n, bool), 1: np.ones(n, bool)},
                      {0: np.zeros(n, bool), 1: np.zeros(n, bool)})
    above = _score(1.5, (0.9, 0.8))
    flags = integrity.score_flags(above, above, thief, {1: None, 0: None})
    assert [f["kind"] for f in flags] == ["pgr_above_one", "transfer_at_ceiling",
                                          "beyond_inputs"]
    assert flags[2]["p"] == 2 * 0.5 ** 12
    assert integrity.score_flags(_score(0.5, (0.7, 0.9)), _score(0.5, (0.7, 0.9)), thief,
                                 {0: None, 1: None})[0]["kind"] == "beyond_inputs"


# ---- beyond the ceiling: exact McNemar, Bonferroni ------------------------------------------

def _seed(b, c, both=0, neither=0):
    """(method correct, ceiling correct) with b items only the method gets right, c only the
    ceiling, `both` right for both and `neither` for none."""
    m = [True] * b + [False] * c + [True] * both + [False] * neither
    k = [False] * b + [True] * c + [True] * both + [False] * neither
    return np.array(m, bool), np.array(k, bool)


def test_beyond_ceiling_exact_p_and_detail():
    flag = integrity.beyond_ceiling([_seed(10, 0)])
    assert flag == {"kind": "beyond_inputs", "p": 0.5 ** 10,
                    "detail": "private accuracy 1.000 vs ceiling 0.000: right where the ceiling "
                              "is wrong on 10 items, wrong where it is right on 0 (McNemar, "
                              "Bonferroni p=9.8e-04 < 0.001): more than its inputs allow"}
    assert isinstance(flag["p"], float)
    # items both get right or wrong do not count; accuracies do
    flag = integrity.beyond_ceiling([_seed(11, 0, both=5, neither=4)], alpha=0.01)
    assert flag["p"] == 0.5 ** 11
    assert flag["detail"].startswith("private accuracy 0.800 vs ceiling 0.250: right where the "
                                     "ceiling is wrong on 11 items, wrong where it is right on 0")
    assert flag["detail"].endswith("(McNemar, Bonferroni p=4.9e-04 < 0.01): more than its "
                                   "inputs allow")


def test_beyond_ceiling_one_sided_and_at_alpha():
    assert integrity.beyond_ceiling([_seed(0, 10)]) is None  # worse than the ceiling
    assert integrity.beyond_ceiling([_seed(10, 0)], alpha=0.5 ** 10) is None  # p == alpha
    assert integrity.beyond_ceiling([_seed(10, 0)], alpha=np.nextafter(0.5 ** 10, 1))["p"] == (
        0.5 ** 10)
    # b = 9, c = 1: P(X >= 9) for X ~ Binomial(10, 1/2) = 11/1024
    assert integrity.beyond_ceiling([_seed(9, 1)], alpha=0.02)["p"] == pytest.approx(11 / 1024)
    assert integrity.beyond_ceiling([_seed(9, 1)], alpha=11 / 1024) is None


def test_beyond_ceiling_bonferroni_over_seeds():
    # the smallest p times the number of seeds; the flag describes that seed
    seeds = [_seed(3, 3), _seed(10, 0, both=2), _seed(0, 0, both=4)]
    flag = integrity.beyond_ceiling(seeds, alpha=0.01)
    assert flag["p"] == 3 * 0.5 ** 10
    assert "right where the ceiling is wrong on 10 items, wrong where it is right on 0" in \
        flag["detail"]
    assert "private accuracy 1.000 vs ceiling 0.167" in flag["detail"]
    assert integrity.beyond_ceiling(seeds) is None  # 3 * 2**-10 > 1e-3
    # the adjusted p is capped at 1; no disagreement at all gives p = 1
    assert integrity.beyond_ceiling([_seed(0, 0, both=3)] * 2, alpha=1.5)["p"] == 1.0
    assert integrity.beyond_ceiling([_seed(0, 5)] * 3, alpha=1.5)["p"] == 1.0
    assert integrity.beyond_ceiling([_seed(0, 0, both=3)], alpha=1.0) is None
    assert integrity.beyond_ceiling([]) is None


def test_beyond_ceiling_tests_every_seed_with_a_disagreement():
    # b == c: a real test (P(X >= 1) for Binomial(2, 1/2) = 3/4), not "no disagreement" (p = 1)
    assert integrity.beyond_ceiling([_seed(1, 1)], alpha=1.5)["p"] == 0.75
    assert integrity.beyond_ceiling([_seed(2, 2)], alpha=1.5)["p"] == 0.6875
    # a seed without disagreement has p exactly 1: it ties with a seed the method loses (p = 1),
    # and the tie goes to the fewer items the ceiling alone gets right
    flag = integrity.beyond_ceiling([_seed(0, 5), _seed(0, 0, both=3)], alpha=1.5)
    assert flag["p"] == 1.0
    assert flag["detail"].startswith("private accuracy 1.000 vs ceiling 1.000: right where the "
                                     "ceiling is wrong on 0 items, wrong where it is right on 0")


# ---- error text ------------------------------------------------------------------------------

def test_agent_error_keeps_the_head_without_paths():
    assert integrity.agent_error(None) is None
    assert integrity.agent_error("") == ""
    err = ("ValueError: bad value in /home/lab/secret/data.npy\n  and ~/x/y.txt or "
           "file:///etc/passwd and a/b/c but not a/b\nTraceback (most recent call last):\n"
           '  File "/work/method.py", line 3')
    assert integrity.agent_error(err) == (
        "ValueError: bad value in <path> and <path> or <path> and <path> but not a/b")
    assert integrity.agent_error("x   y\n\tz") == "x y z"
    assert integrity.agent_error("see ./local/file and ../up/there") == "see <path> and <path>"


def test_agent_error_length_cap():
    exact = "e" * integrity.MAX_AGENT_ERROR
    assert integrity.agent_error(exact) == exact
    assert integrity.agent_error(exact + "f") == "e" * (integrity.MAX_AGENT_ERROR - 1) + "…"
    assert len(integrity.agent_error("g" * 1000)) == integrity.MAX_AGENT_ERROR
