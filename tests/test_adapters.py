"""The adapter registry (built-ins, register(), entry points) and option validation."""

from __future__ import annotations

import sys
import textwrap

import pytest

from hardneg import adapters
from hardneg.adapters import Option
from hardneg.errors import ConfigError, HardnegError


def test_builtins_are_registered():
    assert {"image", "graph", "sentence"} <= set(adapters.available())


def test_third_party_adapter_through_entry_point(tmp_path, monkeypatch):
    (tmp_path / "fake_modality.py").write_text(textwrap.dedent("""
        from hardneg.adapters import ModalityAdapter
        class FakeAdapter(ModalityAdapter):
            name = "fake"
            def datasets(self): return ["one"]
            def prepare(self, run): pass
            def build_model(self, run): pass
            def train_batches(self, run, epoch): return []
            def score_batch(self, model, batch, run): pass
            def evaluate(self, model, run): return []
    """))
    dist = tmp_path / "fake_modality-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-modality\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hardneg.modalities]\nfake = fake_modality:FakeAdapter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(adapters, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(adapters, "_REGISTRY", dict(adapters._REGISTRY))
    assert "fake" in adapters.available()
    a = adapters.get("fake")
    assert a.datasets() == ["one"] and type(a).__name__ == "FakeAdapter"
    sys.modules.pop("fake_modality", None)


def test_register_refuses_silent_replacement(monkeypatch):
    monkeypatch.setattr(adapters, "_REGISTRY", dict(adapters._REGISTRY))
    with pytest.raises(HardnegError, match="already registered"):
        adapters.register("graph", "elsewhere:Adapter")
    adapters.register("graph", "elsewhere:Adapter", replace=True)
    with pytest.raises(HardnegError, match="cannot be loaded"):
        adapters.get("graph")


def test_unknown_modality():
    with pytest.raises(ConfigError, match="unknown modality 'audio'; allowed: .*graph"):
        adapters.get("audio")


def test_option_checks_name_value_and_allowed():
    o = Option(32, "hidden width", low=1, high=4096)
    assert o.check("hidden", 64) == 64
    with pytest.raises(ConfigError, match=r"hidden=0 is out of range; allowed: 1 <= hidden <= 4096"):
        o.check("hidden", 0)
    with pytest.raises(ConfigError, match=r"hidden='wide' has the wrong type; allowed: int"):
        o.check("hidden", "wide")
    with pytest.raises(ConfigError, match="wrong type"):
        o.check("hidden", True)
    c = Option("gin", choices=("gin", "gcn"))
    with pytest.raises(ConfigError, match=r"encoder='gat' is not allowed; allowed: 'gin', 'gcn'"):
        c.check("encoder", "gat")
    assert Option(0.5).check("lr", 1) == 1.0


def test_option_exclusive_bounds_and_non_finite_values():
    o = Option(0.5, "a rate", low=0.0, high=1.0, low_inclusive=False)
    assert o.check("rate", 1.0) == 1.0 and o.check("rate", 1e-9) == 1e-9
    with pytest.raises(ConfigError, match=r"rate=0.0 is out of range; allowed: 0 < rate <= 1"):
        o.check("rate", 0.0)
    h = Option(2, high=8, high_inclusive=False)
    with pytest.raises(ConfigError, match=r"n=8 is out of range; allowed: n < 8"):
        h.check("n", 8)
    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ConfigError, match="is not allowed; allowed: a finite number"):
            Option(1.0).check("x", bad)          # no bounds at all: still refused
    assert Option(1.0, training_only=True).training_only and not Option(1.0).training_only


def test_plugin_api_is_importable_from_adapters():
    from hardneg.adapters import LossSpec, RunContext, RunSpec, TrainSpec, open_run  # noqa: F401
    for cls in (RunSpec, TrainSpec, LossSpec):
        assert cls.__doc__ and "Attributes" in cls.__doc__
    for key in ("objective", "beta", "tau_plus", "temperature", "floor", "hardness", "multi_positive",
                "jsd_convention"):
        assert key in LossSpec.__doc__ and key in adapters.ModalityAdapter.__doc__ or key in LossSpec.__doc__


def test_run_contexts_are_made_in_one_place():
    """hardneg.context.open_run is the only place a run context is constructed (code, benchmarks, tests)."""
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    needle = "RunContext" + "("
    calls = [p.relative_to(repo).as_posix() for folder in ("hardneg", "modalities", "benchmarks", "tests")
             for p in (repo / folder).rglob("*.py") if needle in p.read_text().replace(f"class {needle}", "")]
    assert calls == ["hardneg/context.py"]
