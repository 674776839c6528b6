"""The W2S science without Ray: tasks, cache, every method, PGR arithmetic, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from aar_ray.config import ConfigError, SettingConfig
from aar_ray.w2s import features, pgr
from aar_ray.w2s.methods import METHODS, build_params, describe, make_method
from aar_ray.w2s.tasks import load_task, make_splits
from aar_ray.w2s.trial import Setting, TrialConfig, run_method, run_trial, student_inputs


@pytest.fixture(scope="module")
def setting(small_setting, cache_dir):
    return Setting.load(small_setting, cache_dir)


@pytest.mark.parametrize("task", ["tweets", "compositional", "tweet_pairs"])
def test_tasks_are_balanced_and_deterministic(task):
    a, b = load_task(task, 400), load_task(task, 400)
    assert a.texts == b.texts and len(a.texts) == 400
    assert a.labels.mean() == pytest.approx(0.5, abs=0.01)
    assert len(set(a.texts)) == len(a.texts)


def test_splits_redraw_every_part_per_seed():
    """Each seed draws its own test items (so item noise averages over seeds) and splits the
    rest; the same seed always draws the same."""
    s0, s1 = make_splits(1000, 200, 0), make_splits(1000, 200, 1)
    assert np.array_equal(s0.test, make_splits(1000, 200, 0).test)
    assert not np.array_equal(s0.test, s1.test)
    assert 0 < len(np.intersect1d(s0.test, s1.test)) < 200  # overlapping, independent draws
    assert not np.array_equal(s0.unlabelled, s1.unlabelled)
    for s in (s0, s1):
        parts = np.concatenate([s.labelled, s.unlabelled, s.test])
        assert len(np.unique(parts)) == 1000  # disjoint and complete


def test_feature_cache_computes_each_text_once(tmp_path):
    texts = ["a fine day", "a bad day", "a fine day"]
    assert features.embed_counting("glove50", texts, tmp_path) == 2
    assert features.embed_counting("glove50", texts + ["new text"], tmp_path) == 1
    assert features.embed_counting("glove50", texts, tmp_path) == 0
    first = features.embed("glove50", texts, tmp_path)
    assert np.allclose(first[0], first[2]) and not np.allclose(first[0], first[1])


def test_second_trial_recomputes_nothing(small_setting, fast_student, cache_dir, monkeypatch):
    cfg = TrialConfig(small_setting, "vanilla", seeds=[0], student=fast_student)
    run_trial(cfg, cache_dir)
    from aar_ray.w2s import models

    def boom(texts):
        raise AssertionError("recomputed features")

    for name in ("glove50", "minilm_l1"):
        spec = models.MODELS.get(name)
        monkeypatch.setitem(models.MODELS._items, name,
                            models.ModelSpec(spec.name, spec.description, boom))
    monkeypatch.setattr("sklearn.linear_model.LogisticRegression.fit",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("refit teacher")))
    features._CACHES.clear()
    again = run_trial(cfg, cache_dir)
    assert again.seeds[0].weak_acc > 0.6


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_and_predicts(method, setting, fast_student):
    inputs = student_inputs(setting, 0)
    probs = run_method(method, None, inputs, fast_student)
    assert probs.shape == (200, 2)
    assert np.allclose(probs.sum(1), 1, atol=1e-4) and (probs >= 0).all()
    acc = pgr.accuracy(probs, setting.data.labels[setting.splits(0).test])
    assert acc > 0.6, f"{method} did not learn from weak labels (acc {acc})"


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_documents_and_validates_its_params(method):
    d = describe(method)
    assert d["summary"] and d["params"]["type"] == "object"
    for name, prop in d["params"]["properties"].items():
        build_params(METHODS.get(method), {name: prop["default"]})  # defaults are valid
        if "maximum" in prop:
            with pytest.raises(ConfigError, match=rf"{method}\.{name}: .* out of range"):
                build_params(METHODS.get(method), {name: prop["maximum"] + 1})


def test_bad_input_names_what_is_allowed():
    with pytest.raises(ConfigError, match="unknown method 'vanila'.*did you mean 'vanilla'"):
        make_method("vanila")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['alpah'\].*allowed"):
        make_method("aux_confidence", {"alpah": 0.5})
    with pytest.raises(ConfigError, match="expected float"):
        make_method("aux_confidence", {"alpha": "high"})
    with pytest.raises(ConfigError, match="must be finite"):
        make_method("soft_labels", {"temperature": float("nan")})
    with pytest.raises(ConfigError, match="not one of"):
        make_method("bootstrap", {"kind": "medium"})
    with pytest.raises(ConfigError, match="unknown task"):
        SettingConfig(task="imdb").validate("setting")
    with pytest.raises(ConfigError, match="unknown model"):
        SettingConfig(strong="gpt5").validate("setting")


def test_pgr_arithmetic_edge_cases():
    assert pgr.pgr(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert pgr.pgr(0.7, 0.7, 0.7) is None  # no gap: undefined, not a division crash
    assert pgr.pgr(0.8, 0.9, 0.85) is None  # ceiling below the teacher
    assert pgr.pgr(0.95, 0.7, 0.9) == pytest.approx(1.25)  # beating the ceiling is allowed
    assert pgr.mean_se([None, None]) == (None, None)
    mean, se = pgr.mean_se([0.2, 0.4, None])
    assert mean == pytest.approx(0.3) and se == pytest.approx(0.1)


def test_trial_summary_reports_mean_and_se(small_setting, fast_student, cache_dir):
    result = run_trial(TrialConfig(small_setting, "aux_confidence", {"alpha": 0.5},
                                   seeds=[0, 1], student=fast_student), cache_dir)
    s = result.summary()
    assert len(s["per_seed"]) == 2 and s["pgr"]["se"] is not None
    assert s["ceiling_acc"]["mean"] > s["weak_acc"]["mean"]


@pytest.mark.parametrize("argv", [["audit", "/nonexistent"], ["report", "/nonexistent"],
                                  ["run", "--config", "/nonexistent.yaml"],
                                  ["rerun", "tnope", "--campaign", "/nonexistent"],
                                  ["trial", "--seeds", "1,1"]])
def test_cli_bad_input_is_a_clear_error(argv, capsys):
    from aar_ray.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("aar: error: ") and "Traceback" not in err
