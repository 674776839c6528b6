"""The hub tasks on fake rows (no network, no `datasets`), the GPU campaign config, and the
weak teacher's decoder feature path on a tiny random Qwen3."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from aar_ray.w2s.tasks import PAIR_SEP, TASKS, hub, split_pair

ROOT = Path(__file__).resolve().parents[1]


def _balanced(data) -> bool:
    return len(data.texts) > 0 and 2 * int(data.labels.sum()) == len(data.labels)


def _unique(data) -> bool:
    return len(set(data.texts)) == len(data.texts)


# ---- chat preference -----------------------------------------------------------------------

def _dialogue(i: int) -> str:
    return f"\n\nHuman: How do I do thing {i}?\n\nAssistant: Which thing?\n\nHuman: Thing {i}."


def hh_rows(n: int = 39) -> list[dict]:
    rows = [{"chosen": _dialogue(i) + f"\n\nAssistant: Helpful answer {i}.",
             "rejected": _dialogue(i) + f"\n\nAssistant: Rude answer {i}."} for i in range(n)]
    rows += [
        dict(rows[0]),  # an exact duplicate
        {"chosen": _dialogue(100) + "\n\nAssistant: Same.",  # identical replies
         "rejected": _dialogue(100) + "\n\nAssistant: Same."},
        {"chosen": _dialogue(101) + "\n\nAssistant: A.",  # dialogues differ before the reply
         "rejected": _dialogue(102) + "\n\nAssistant: B."},
        {"chosen": _dialogue(103) + "\n\nAssistant: X.",  # seen both ways: contradictory
         "rejected": _dialogue(103) + "\n\nAssistant: Y."},
        {"chosen": _dialogue(103) + "\n\nAssistant: Y.",
         "rejected": _dialogue(103) + "\n\nAssistant: X."},
        {"chosen": "\n\nHuman: " + "long " * 2000 + "\nB: tricky\n\nAssistant: " + "yes " * 500,
         "rejected": "\n\nHuman: " + "long " * 2000 + "\nB: tricky\n\nAssistant: no"},
    ]
    return rows


def test_chat_preference_pairs_are_balanced_unique_and_labelled_by_the_chosen_reply():
    data = hub.chat_preference_from_rows(hh_rows())
    assert data.classes == ("B", "A") and _balanced(data) and _unique(data)
    assert len(data.texts) == 40  # 39 short + the long one; the 5 bad rows are skipped
    for text, y in zip(data.texts, data.labels, strict=True):
        assert text.count(PAIR_SEP) == 1  # features.embed splits it into (dialogue + A, B)
        a_side, b = split_pair(text)
        a = a_side.rsplit("\n\nA: ", 1)[1]
        chosen = a if y == 1 else b
        assert chosen.startswith(("Helpful", "yes")), (chosen, y)
        assert "Same." not in text and "Y." not in text and "Thing 101" not in text
        assert len(text) < 2200  # fits 512 tokens: both replies survive right-truncation
    assert 0 < data.labels[:20].sum() < 20  # A/B order is randomised, not fixed


def test_chat_preference_is_deterministic_and_independent_of_row_order():
    rows = hh_rows()
    first = hub.chat_preference_from_rows(rows)
    again = hub.chat_preference_from_rows(list(reversed(rows)))
    assert first.fingerprint() == again.fingerprint()
    assert first.fingerprint() != hub.chat_preference_from_rows(rows, seed=1).fingerprint()


def test_long_dialogue_keeps_its_end_and_loses_the_stray_pair_separator():
    data = hub.chat_preference_from_rows(hh_rows())
    (long_text,) = [t for t in data.texts if "long long" in t]
    assert "… long" in long_text and "B : tricky" in long_text and "\nB: tricky" not in long_text
    assert "yes yes" in long_text and long_text.count("yes") < 200


# ---- math verification ---------------------------------------------------------------------

def gsm8k_rows(n: int = 60) -> list[dict]:
    rows = [{"question": f"Tom has {i} apples and buys {i + 3} more. How many now?",
             "answer": f"He has {i} + {i + 3} = <<{i}+{i + 3}={2 * i + 3}>>{2 * i + 3}.\n"
                       f"#### {2 * i + 3:,}"} for i in range(0, 600 * n, 600)]
    rows += [dict(rows[0]),  # duplicate
             {"question": "No final line?", "answer": "I think 4."},
             {"question": "A fraction?", "answer": "#### 2.5"},
             {"question": rows[1]["question"], "answer": "#### 99999"},  # contradictory
             {"question": "Pairs\nB: like this?", "answer": "#### 12"}]
    return rows


def _proposed(text: str) -> int:
    return int(re.search(r"Proposed answer: (-?\d+)", text).group(1))


def test_math_verification_wrong_answers_really_differ():
    rows = gsm8k_rows()
    truth = {r["question"].replace(PAIR_SEP, "\nB : "): hub.final_answer(r["answer"])
             for r in rows}
    data = hub.math_verification_from_rows(rows)
    assert data.classes == ("incorrect", "correct") and _balanced(data) and _unique(data)
    assert len(data.texts) == 60  # 61 usable questions, one of them contradictory
    for text, y in zip(data.texts, data.labels, strict=True):
        question = text.removeprefix("Question: ").split("\n\nProposed answer:")[0]
        assert (_proposed(text) == truth[question]) == bool(y)
        assert _proposed(text) >= 0 and PAIR_SEP not in text
    assert all("1,203" not in t for t in data.texts)  # commas parsed, numbers printed plainly
    assert hub.math_verification_from_rows(rows).fingerprint() == data.fingerprint()


@pytest.mark.parametrize("n", [0, 1, 7, 10, 42, 100, 1203, -5])
def test_wrong_answers_are_plausible_and_never_right(n):
    wrong = hub.wrong_answers(n)
    assert wrong and n not in wrong
    assert all(w >= 0 for w in wrong) or n < 0
    assert {n + 1, n - 1} & set(wrong)


def test_final_answer_parsing():
    assert hub.final_answer("steps\n#### 1,234") == 1234
    assert hub.final_answer("#### -3") == -3
    assert hub.final_answer("no marker 5") is None and hub.final_answer("#### 2.5") is None


# ---- code review ---------------------------------------------------------------------------

TEMPLATES = [
    "def f{i}(xs):\r\n    total = 0\r\n    for k in range(len(xs)):\r\n        total += xs[k]\r\n"
    "    return total",
    "def f{i}(a, b):\n\tif a < b:\n\t\treturn a\n\treturn b + {i}",
    "def f{i}(n):\n    out = []\n    for k in range(1,n):\n        if k % {m} == 0:\n"
    "            out.append(k)\n    return out",
    "def f{i}(s):\n    return s.upper() == s and len(s) > {i}",
]


def mbpp_rows(n: int = 48) -> list[dict]:
    rows = [{"text": f"Write a function number {i}.", "test_list": [f"assert f{i}(1) == 1"],
             "code": TEMPLATES[i % len(TEMPLATES)].format(i=i, m=i % 5 + 2)} for i in range(n)]
    rows += [dict(rows[0]),  # duplicate
             {"text": "Nothing to break.", "code": "def g(x):\n    return x", "test_list": []},
             {"text": "Not Python 3.", "code": "print 'hi'", "test_list": []},
             {"text": "Too long.", "code": "x = 1\n" * 400, "test_list": []}]
    return rows


def _code(text: str) -> str:
    return text.split("```python\n", 1)[1].rsplit("\n```", 1)[0]


def test_code_review_bugs_really_change_the_code():
    rows = mbpp_rows()
    reference = {r["text"]: r["code"].replace("\r\n", "\n") for r in rows}
    data = hub.code_review_from_rows(rows)
    assert data.classes == ("buggy", "correct") and _balanced(data) and _unique(data)
    assert len(data.texts) == 48
    kinds = set()
    for text, y in zip(data.texts, data.labels, strict=True):
        description = text.removeprefix("Task: ").split("\n\nProposed solution:")[0]
        code, ref = _code(text), reference[description]
        assert description not in ("Nothing to break.", "Not Python 3.", "Too long.")
        if y:
            assert code == ref
        else:
            assert code != ref and ast.dump(ast.parse(code)) != ast.dump(ast.parse(ref))
            kinds |= {k for k, mutants in hub.code_mutants(ref).items() if code in mutants}
    assert len(kinds) >= 3  # bugs of several kinds, not one pattern to spot
    assert hub.code_review_from_rows(list(reversed(rows))).fingerprint() == data.fingerprint()


def test_code_mutants_of_each_kind():
    code = ("def f(xs, n):\n    best = 0\n    for i in range(0, n):\n"
            "        if xs[i] > best and i >= 0:\n            best = xs[i] + 1\n    return best")
    mutants = hub.code_mutants(code)
    assert set(mutants) == set(hub.MUTATIONS)
    assert "range(0, n + 1)" in mutants["off_by_one_range"][0]  # follows the call's spacing
    assert any("xs[i] <= best" in m for m in mutants["flipped_comparison"])
    assert {m.rsplit("return ", 1)[1] for m in mutants["wrong_return_variable"]} == {"xs", "n"}
    for found in mutants.values():
        assert all(m != code and ast.parse(m) for m in found)
    assert hub.code_mutants("def g(x):\n    return x") == {}
    assert hub.code_mutants("print 'py2'") == {}
    assert "range(n+1)" in hub.code_mutants("for i in range(n):\n    pass")["off_by_one_range"][0]


# ---- loaders, registration, the missing-library error --------------------------------------

def test_hub_tasks_are_registered_with_protected_cache_paths():
    for name, repo in (("chat_preference", "Anthropic--hh-rlhf"),
                       ("math_verification", "openai--gsm8k"),
                       ("code_review", "google-research-datasets--mbpp")):
        spec = TASKS.get(name)
        paths = spec.protected_paths()
        assert any(p.endswith(f"datasets--{repo}") for p in paths)
        assert not any(p.endswith("/hub") for p in paths)  # model weights stay readable


def test_loaders_call_datasets_then_the_pure_conversion(monkeypatch):
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        if args[0] == hub.HH_RLHF:
            return hh_rows()
        if args[0] == hub.GSM8K[0]:
            return gsm8k_rows()
        rows = mbpp_rows()
        return {"train": rows[:20], "test": rows[20:]}  # a DatasetDict: all splits are used

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert len(hub.load_chat_preference.__wrapped__().texts) == 40
    assert len(hub.load_math_verification.__wrapped__().texts) == 60
    assert len(hub.load_code_review.__wrapped__().texts) == 48
    pin = hub.REVISIONS  # every load names the data set's pinned commit
    assert calls == [(("Anthropic/hh-rlhf",), {"split": "train",
                                               "revision": pin["Anthropic/hh-rlhf"]}),
                     (("openai/gsm8k", "main"), {"split": "train",
                                                "revision": pin["openai/gsm8k"]}),
                     (("google-research-datasets/mbpp", "full"),
                      {"revision": pin["google-research-datasets/mbpp"]})]


def test_missing_datasets_library_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails
    for load in (hub.load_chat_preference, hub.load_math_verification, hub.load_code_review):
        with pytest.raises(RuntimeError, match=re.escape("pip install 'aar-ray[gpu]'")):
            load.__wrapped__()


def test_importing_the_tasks_does_not_import_datasets():
    code = "import sys, aar_ray.w2s.tasks.hub; print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


# ---- the GPU campaign config ---------------------------------------------------------------

def test_gpu_qwen_campaign_validates():
    from aar_ray.config import load_campaign

    cfg = load_campaign(ROOT / "jobs/configs/gpu_qwen.yaml")
    assert (cfg.setting.task, cfg.setting.weak, cfg.setting.strong) == (
        "chat_preference", "qwen1.5-0.5b-chat", "qwen3-4b-base")
    assert cfg.student.mode == "finetune" and cfg.finetune.use_gpu and cfg.finetune.lora_r == 16
    assert cfg.resources.gpus_per_trial == 0 and cfg.resources.max_concurrent_trials == 4
    assert cfg.brain == "claude" and cfg.agents == 9
    assert {s.task for s in cfg.audit.settings} == {"math_verification", "code_review",
                                                     "chat_preference"}


# ---- the weak teacher's features: a decoder, mean-pooled --------------------------------------

def test_qwen_feature_path_on_a_tiny_random_qwen3(tmp_path):
    from aar_ray.w2s import features
    from aar_ray.w2s.models import MODELS

    assert MODELS.get("qwen1.5-0.5b-chat").embed is not None
    embed = MODELS.get("tiny-qwen3-weak").embed
    texts = ["short", "a somewhat longer text about apples", "x " * 200, "another one here"]
    x = embed(texts)
    assert x.shape == (4, 64) and np.isfinite(x).all()
    assert not np.allclose(x[0], x[1])
    # right padding: a text's features do not depend on what it is batched with
    alone = np.concatenate([embed([t]) for t in texts])
    np.testing.assert_allclose(alone, x, atol=1e-5)
    # the teacher's path for the seed task: pair texts become f(dialogue + A) - f(B)
    pairs = hub.chat_preference_from_rows(hh_rows(8)).texts
    assert TASKS.get("chat_preference").pairwise and not TASKS.get("math_verification").pairwise
    diff = features.embed("tiny-qwen3-weak", pairs, tmp_path, pairwise=True)
    a_side, b_side = zip(*(split_pair(t) for t in pairs), strict=True)
    np.testing.assert_allclose(diff, embed(list(a_side)) - embed(list(b_side)), atol=1e-5)
    assert diff.shape == (len(pairs), 64) and np.isfinite(diff).all()


def test_decoder_layer_truncation_and_missing_pad_token(monkeypatch):
    import transformers

    from aar_ray.w2s import models

    models._encoder.cache_clear()  # build this test's encoder under the patched tokenizer
    full = models.MODELS.get("tiny-qwen3-weak").embed(["one text", "two texts here"])
    original = transformers.AutoTokenizer.from_pretrained

    def no_pad(*args, **kwargs):
        tok = original(*args, **kwargs)
        tok.padding_side, tok.pad_token = "left", None
        return tok

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_pad)
    cut = models.sentence_embedder(models.minilm_path, layers=1, max_length=32,
                                   config_fn=models._tiny_qwen3_config)
    x = cut(["one text", "two texts here"])
    assert x.shape == (2, 64) and np.isfinite(x).all() and not np.allclose(x, full)
    tok, model = models._encoder(models.minilm_path(), 1, models._tiny_qwen3_config)
    assert len(model.layers) == 1 and tok.padding_side == "right" and tok.pad_token is not None
