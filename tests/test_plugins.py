"""Tasks and methods come from their folders and from other packages' entry points.

Nothing is installed: a distribution is faked as a `*.dist-info` folder on `sys.path` in a temp
directory, which is all `importlib.metadata.entry_points` reads.
"""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from aar_ray.config import ConfigError, SettingConfig
from aar_ray.registry import METHODS, TASKS, Registry
from aar_ray.w2s.methods import describe, make_method
from aar_ray.w2s.tasks import load_task
from aar_ray.w2s.trial import Setting, run_method, student_inputs

PLUGIN = '''
from dataclasses import dataclass

import numpy as np

from aar_ray.w2s.methods import Method, MethodContext, param
from aar_ray.w2s.tasks import TaskData, TaskSpec


def load():
    rng = np.random.default_rng(0)
    words = [["bad", "awful", "poor"], ["good", "great", "fine"]]
    labels = np.tile([0, 1], 200)
    texts = [" ".join(rng.choice(words[y], 4)) + f" n{i}" for i, y in enumerate(labels)]
    return TaskData(texts, labels, ("neg", "pos"))


SPEC = TaskSpec(name="plugin_task", description="a third-party task", load=load,
                default_size=400, default_test_size=100)


class Sharpen(Method):
    """Trains on the teacher's probabilities raised to a power (a third-party method)."""

    name = "plugin_method"

    @dataclass
    class Params:
        power: float = param(2.0, lo=1.0, hi=8.0, help="exponent")

    def run(self, ctx: MethodContext) -> np.ndarray:
        w = ctx.weak ** self.p.power
        student = ctx.students.new()
        student.fit(w / w.sum(1, keepdims=True))
        return student.predict("test")
'''


def _fake_distribution(root, entry_points: str, module: str = PLUGIN):
    (root / "aar_plugin_demo.py").write_text(module)
    info = root / "aar_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aar-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def fresh_catalogs(monkeypatch, tmp_path):
    """TASKS and METHODS as if never read (their items copied back afterwards), the temp dir on
    sys.path, and the plugin module forgotten after the test."""
    for reg in (TASKS, METHODS):
        reg.names()  # built-ins first, so the copy below holds them
        monkeypatch.setattr(reg, "_items", dict(reg._items))
        monkeypatch.setattr(reg, "_state", "new")
        monkeypatch.setattr(reg, "_broken", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "aar_plugin_demo", raising=False)
    return tmp_path


def test_entry_points_register_a_task_and_a_method(fresh_catalogs, fast_student, cache_dir):
    _fake_distribution(fresh_catalogs, """
        [aar_ray.tasks]
        plugin_task = aar_plugin_demo:SPEC
        [aar_ray.methods]
        plugin_method = aar_plugin_demo:Sharpen
    """)
    assert "plugin_task" in TASKS and "tweets" in TASKS  # the built-ins are still there
    assert "plugin_method" in METHODS and "vanilla" in METHODS
    sc = SettingConfig(task="plugin_task", weak="bow", strong="glove50", max_examples=400,
                       test_size=100)
    sc.validate("setting")  # config checks the name against the catalog
    assert len(load_task("plugin_task").texts) == 400
    assert describe("plugin_method")["params"]["properties"]["power"]["maximum"] == 8.0
    with pytest.raises(ConfigError, match="out of range"):
        make_method("plugin_method", {"power": 9.0})
    inputs = student_inputs(Setting.load(sc, cache_dir), 0)
    preds = run_method("plugin_method", {"power": 3.0}, inputs, fast_student)
    assert preds.shape == (100, 2) and np.allclose(preds.sum(1), 1, atol=1e-4)


def test_an_entry_point_may_name_a_module_that_registers_itself(fresh_catalogs):
    module = PLUGIN + "\nfrom aar_ray.registry import TASKS\nTASKS.add('plugin_task', SPEC)\n"
    _fake_distribution(fresh_catalogs, """
        [aar_ray.tasks]
        anything = aar_plugin_demo
    """, module)
    assert TASKS.get("plugin_task").description == "a third-party task"


@pytest.mark.parametrize("entry, error", [
    ("plugin_task = aar_plugin_demo:NOPE", "plugin_task = 'aar_plugin_demo:NOPE'.*failed to "
                                           "load: AttributeError"),
    ("other_name = aar_plugin_demo:SPEC", "names a task called 'plugin_task'"),
])
def test_a_broken_entry_point_is_a_clear_error(fresh_catalogs, entry, error):
    """Only a read of the broken name, or of the whole catalog, fails; the rest still works."""
    _fake_distribution(fresh_catalogs, f"[aar_ray.tasks]\n{entry}\n")
    TASKS.check("tweets", "setting.task")
    name = entry.split(" = ")[0]
    with pytest.raises(ConfigError, match=error):
        TASKS.check(name, "setting.task")
    with pytest.raises(ConfigError, match=error):
        TASKS.names()


def test_a_new_module_in_a_catalog_folder_is_found_without_an_import_list(tmp_path, monkeypatch):
    pkg = tmp_path / "catalog_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from aar_ray.registry import Registry\n"
                                     "THINGS = Registry('thing', 'catalog_demo')\n")
    for name in ("alpha", "beta"):
        (pkg / f"{name}.py").write_text(f"from catalog_demo import THINGS\n"
                                        f"THINGS.add({name!r}, {name!r}.upper())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "catalog_demo", raising=False)
    import catalog_demo

    assert catalog_demo.THINGS.names() == ["alpha", "beta"]
    assert catalog_demo.THINGS.get("beta") == "BETA"
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        catalog_demo.THINGS.get("alpah")
    assert isinstance(catalog_demo.THINGS, Registry)
