"""The README's plugin, taken from the README itself, passes the conformance kit; plugins that break
the contract (probe test rows in pretraining, a one-row tail batch) fail it, saying why."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from hardneg import adapters
from hardneg.testing import check_adapter

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_plugin() -> str:
    text = README.read_text()
    m = re.search(r"```python\n(# my_package/vectors\.py\n.*?)```", text, re.S)
    assert m, "the README's plugin example (# my_package/vectors.py) is missing"
    return m.group(1)


def load_plugin(tmp_path: Path, source: str, module: str, monkeypatch) -> type:
    path = tmp_path / f"{module}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    monkeypatch.setattr(adapters, "_REGISTRY", dict(adapters._REGISTRY))
    adapters.register("vectors", mod.VectorsAdapter, replace=True)
    return mod.VectorsAdapter


@pytest.fixture
def data(tmp_path) -> Path:
    """90 rows of three Gaussian classes in 4-d (the class in the last column)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 4))
    y = np.arange(90) % 3
    x = centres[y] + rng.normal(0, 1, (90, 4))
    root = tmp_path / "data"
    (root / "vectors").mkdir(parents=True)
    np.savetxt(root / "vectors" / "blobs.csv", np.column_stack([x, y]), delimiter=",")
    return root


def test_the_readme_plugin_passes_the_kit(tmp_path, data, monkeypatch):
    load_plugin(tmp_path, readme_plugin(), "readme_vectors", monkeypatch)
    report = check_adapter("vectors", dataset="blobs", options={"hidden": 8}, data_root=data, batch_size=8)
    assert report["metrics"] == ["ncm_acc"] and report["untrained_metrics"] == ["ncm_acc"]
    assert report["tail_batch_sizes"][0] == 2 and 67 in report["tail_batch_sizes"]   # 68 training rows


def test_a_plugin_that_pretrains_on_probe_test_rows_fails(tmp_path, data, monkeypatch):
    source = readme_plugin()
    leaky = source.replace('run.extra["train"] = (x[train].to(run.device), y[train].to(run.device))',
                           'run.extra["train"] = (x.to(run.device), y.to(run.device))   # every row')
    assert leaky != source
    load_plugin(tmp_path, leaky, "leaky_vectors", monkeypatch)
    with pytest.raises(AssertionError, match="pretraining reads the held-out test rows"):
        check_adapter("vectors", dataset="blobs", options={"hidden": 8}, data_root=data, batch_size=8)


def test_a_plugin_that_yields_a_one_row_tail_batch_fails(tmp_path, data, monkeypatch):
    source = readme_plugin()
    tail = source.replace("range(0, len(x) - b + 1, b)", "range(0, len(x), b)")
    assert tail != source
    load_plugin(tmp_path, tail, "tail_vectors", monkeypatch)
    with pytest.raises(AssertionError, match=r"batch_size=67 holds 1 item\(s\); a batch needs at least 2"):
        check_adapter("vectors", dataset="blobs", options={"hidden": 8}, data_root=data, batch_size=8)


def test_a_plugin_that_ignores_scramble_test_fails(tmp_path, data, monkeypatch):
    source = readme_plugin()
    noop = source.replace("if run.scramble_test:", "if False:")
    assert noop != source
    load_plugin(tmp_path, noop, "noop_vectors", monkeypatch)
    with pytest.raises(AssertionError, match="prepare does not replace the test rows evaluate reports on"):
        check_adapter("vectors", dataset="blobs", options={"hidden": 8}, data_root=data, batch_size=8)
