"""Suite files: validation messages, grid expansion, stable ids, overrides and filters."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import toy_adapter  # noqa: F401  (registers the 'toy' modality)
from hardneg import config
from hardneg.errors import ConfigError

BASE = """
[suite]
name = "t"
[defaults.train]
epochs = 2
batch_size = 16
[grid]
beta = [0.0, 1.0]
tau_plus = [0.0, 0.1]
seed = [0, 1]
[toy]
datasets = ["blobs4", "blobs8"]
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def load(tmp_path: Path, text: str, **kw) -> config.Suite:
    return config.load_suite(write(tmp_path, text), **kw)


def error_of(tmp_path: Path, text: str, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **kw)
    return str(info.value)


# ---- validation ----------------------------------------------------------------------------

def test_typo_in_train_key_names_file_path_and_allowed(tmp_path):
    msg = error_of(tmp_path, BASE.replace("epochs = 2", "epochz = 2"))
    assert "suite.toml" in msg and "defaults.train.epochz" in msg
    assert "unknown key" in msg and "epochs" in msg and "batch_size" in msg


def test_typo_in_top_level_and_modality_keys(tmp_path):
    msg = error_of(tmp_path, BASE + "\n[toyy]\ndatasets = ['blobs4']\n")
    assert "toyy" in msg and "allowed" in msg and "toy" in msg
    msg = error_of(tmp_path, BASE.replace('datasets = ["blobs4", "blobs8"]', 'dataset = ["blobs4"]'))
    assert "toy.dataset" in msg and "datasets" in msg


def test_unknown_loss_field_and_unknown_option(tmp_path):
    msg = error_of(tmp_path, BASE + "[toy.loss]\ntemprature = 0.1\n")
    assert "toy.loss.temprature" in msg and "temperature" in msg
    msg = error_of(tmp_path, BASE + "[toy.options]\nhiden = 3\n")
    assert "suite.toml" in msg and "hiden" in msg and "hidden" in msg


@pytest.mark.parametrize("snippet,path,allowed", [
    ("[toy.train]\nepochs = '5'\n", "toy.train.epochs", "an integer"),
    ("[toy.train]\nepochs = 2.5\n", "toy.train.epochs", "an integer"),
    ("[toy.train]\nlr = 'fast'\n", "toy.train.lr", "a number"),
    ("[toy.loss]\nfloor = 1\n", "toy.loss.floor", "true or false"),
    ("[toy.options]\nhidden = 'wide'\n", "hidden", "int"),
])
def test_wrong_type(tmp_path, snippet, path, allowed):
    msg = error_of(tmp_path, BASE + snippet)
    assert path in msg and allowed in msg and "suite.toml" in msg


def test_random_init_wrong_type(tmp_path):
    msg = error_of(tmp_path, BASE.replace('datasets = ["blobs4", "blobs8"]',
                                          'datasets = ["blobs4"]\nrandom_init = "yes"'))
    assert "toy.random_init" in msg and "true or false" in msg


@pytest.mark.parametrize("snippet,needle", [
    ("[toy.train]\nlr = -1.0\n", "train.lr"),
    ("[toy.train]\nthreads = -1\n", "threads"),
    ("[toy.options]\nhidden = 1\n", "hidden"),
    ("[toy.loss]\nobjective = 'nce'\n", "objective"),
])
def test_out_of_range(tmp_path, snippet, needle):
    msg = error_of(tmp_path, BASE + snippet)
    assert needle in msg and "allowed" in msg


def test_out_of_range_grid_value_points_at_element(tmp_path):
    msg = error_of(tmp_path, BASE.replace("tau_plus = [0.0, 0.1]", "tau_plus = [0.0, 1.0]"))
    assert "grid.tau_plus[1]" in msg and "0 <= tau_plus < 1" in msg
    msg = error_of(tmp_path, BASE + '[toy.grid]\n"options.hidden" = [8, 0]\n')
    assert 'toy.grid."options.hidden"[1]' in msg and "hidden" in msg


@pytest.mark.parametrize("old,new", [
    ("beta = [0.0, 1.0]", "beta = []"),
    ('datasets = ["blobs4", "blobs8"]', "datasets = []"),
])
def test_zero_run_grid(tmp_path, old, new):
    msg = error_of(tmp_path, BASE.replace(old, new))
    assert "zero runs" in msg


def test_suite_without_modality_is_zero_runs(tmp_path):
    msg = error_of(tmp_path, "[suite]\nname = 'empty'\n")
    assert "zero runs" in msg


def test_unknown_dataset_and_grid_key(tmp_path):
    msg = error_of(tmp_path, BASE.replace('"blobs8"', '"blobz"'))
    assert "toy.datasets[1]" in msg and "blobz" in msg and "blobs8" in msg
    msg = error_of(tmp_path, BASE.replace("seed = [0, 1]", "seeds = [0, 1]"))
    assert "grid.seeds" in msg and "unknown grid key" in msg


def test_fixed_and_swept_setting_conflict(tmp_path):
    msg = error_of(tmp_path, BASE + "[toy.loss]\nbeta = 0.5\n")
    assert "toy.loss.beta" in msg and "swept" in msg


def test_invalid_toml_and_missing_file(tmp_path):
    msg = error_of(tmp_path, "[suite\nname=")
    assert "not valid TOML" in msg and "suite.toml" in msg
    with pytest.raises(ConfigError, match="does not exist"):
        config.load_suite(tmp_path / "nope.toml")


# ---- expansion --------------------------------------------------------------------------------

def test_grid_expansion_and_stable_ids(tmp_path):
    s = load(tmp_path, BASE)
    assert len(s.specs) == 2 * 2 * 2 * 2  # datasets x beta x tau+ x seeds
    assert len({sp.run_id for sp in s.specs}) == len(s.specs)
    # the same file gives the same ids; the suite name is not part of the id
    again = config.load_suite(write(tmp_path, BASE.replace('name = "t"', 'name = "other"'), "b.toml"))
    assert [sp.run_id for sp in s.specs] == [sp.run_id for sp in again.specs]
    # ints in the file become floats: beta = [0, 1] gives the same ids as [0.0, 1.0]
    ints = config.load_suite(write(tmp_path, BASE.replace("beta = [0.0, 1.0]", "beta = [0, 1]"), "c.toml"))
    assert [sp.run_id for sp in ints.specs] == [sp.run_id for sp in s.specs]
    first = s.specs[0]
    assert (first.dataset, first.loss.beta, first.loss.tau_plus, first.seed, first.train.epochs) == \
        ("blobs4", 0.0, 0.0, 0, 2)
    assert first.suite == "t"
    assert first.options == {"hidden": 16, "n": 64, "fail": "none", "delay": 0.0, "jitter": 0.3}  # defaults filled


def test_modality_default_loss_under_suite_settings(tmp_path):
    s = load(tmp_path, BASE)
    assert {sp.loss.temperature for sp in s.specs} == {0.2}  # toy's default_loss
    s = load(tmp_path, BASE + "[defaults.loss]\ntemperature = 0.3\n")
    assert {sp.loss.temperature for sp in s.specs} == {0.3}
    s = load(tmp_path, BASE + "[defaults.loss]\ntemperature = 0.3\n[toy.loss]\ntemperature = 0.4\n")
    assert {sp.loss.temperature for sp in s.specs} == {0.4}


def test_modality_grid_replaces_keys_and_dotted_paths(tmp_path):
    s = load(tmp_path, BASE + '[toy.grid]\nbeta = [2.0]\n"train.lr" = [0.01, 0.001]\n"options.hidden" = [8]\n')
    assert {sp.loss.beta for sp in s.specs} == {2.0}
    assert {sp.train.lr for sp in s.specs} == {0.01, 0.001}
    assert {sp.options["hidden"] for sp in s.specs} == {8}
    assert len(s.specs) == 2 * 1 * 2 * 2 * 2


def test_random_init_one_run_per_dataset_and_seed(tmp_path):
    text = BASE.replace('datasets = ["blobs4", "blobs8"]', 'datasets = ["blobs4", "blobs8"]\nrandom_init = true')
    s = load(tmp_path, text + '[toy.grid]\n"loss.hardness" = ["logit", "cosine"]\n')
    floors = [sp for sp in s.specs if sp.train.epochs == 0]
    assert len(floors) == 2 * 2  # datasets x seeds, whatever the loss grid
    assert {sp.method for sp in floors} == {"random-init"}
    assert {(sp.loss.beta, sp.loss.tau_plus) for sp in floors} == {(0.0, 0.0)}
    assert len(s.specs) == 4 + 2 * 2 * 2 * 2 * 2
    # floors come first per data set, so the floor of a data set is measured before its grid
    assert s.specs[0].train.epochs == 0


def test_extra_configurations_beside_the_grid(tmp_path):
    text = BASE + textwrap.dedent("""
        [toy.options]
        hidden = 16
        [[toy.extra]]
        train = {epochs = 0}
        options = {hidden = 32}
        [[toy.extra]]
        loss = {temperature = 0.5}
        grid = {beta = [0.0, 2.0]}
        """)
    s = load(tmp_path, text)
    grid_runs = [sp for sp in s.specs if sp.options["hidden"] == 16 and sp.loss.temperature == 0.2]
    assert len(grid_runs) == 2 * 2 * 2 * 2  # datasets x beta x tau+ x seeds, as without extras
    first = [sp for sp in s.specs if sp.options["hidden"] == 32]
    # one run per data set and seed; the loss grid does not apply, the seeds do
    assert len(first) == 2 * 2 and {sp.seed for sp in first} == {0, 1}
    assert {sp.train.epochs for sp in first} == {0}
    assert {(sp.loss.beta, sp.loss.tau_plus) for sp in first} == {(0.0, 0.0)}
    second = [sp for sp in s.specs if sp.loss.temperature == 0.5]
    assert len(second) == 2 * 2 * 2  # datasets x its own beta grid x seeds
    assert {sp.loss.beta for sp in second} == {0.0, 2.0} and {sp.train.epochs for sp in second} == {2}
    assert len({sp.run_id for sp in s.specs}) == len(s.specs)


def test_extra_inherits_fixed_settings_except_what_it_sweeps(tmp_path):
    text = BASE.replace("[grid]\nbeta = [0.0, 1.0]\n", "[grid]\n") + textwrap.dedent("""
        [toy.loss]
        beta = 1.0
        [[toy.extra]]
        grid = {beta = [0.0, 3.0]}
        [[toy.extra]]
        options = {hidden = 8}
        """)
    s = load(tmp_path, text)
    assert {sp.loss.beta for sp in s.specs if sp.options["hidden"] == 8} == {1.0}   # inherited
    swept = {sp.loss.beta for sp in s.specs if sp.options["hidden"] == 16}
    assert swept == {0.0, 1.0, 3.0}


@pytest.mark.parametrize("snippet, needle", [
    ('[[toy.extra]]\nbogus = 1\n', "toy.extra[0].bogus"),
    ('[[toy.extra]]\noptions = {hidden = 1}\n', "hidden"),
    ('[[toy.extra]]\ntrain = {epochz = 1}\n', "toy.extra[0].train.epochz"),
])
def test_bad_extra_is_named(tmp_path, snippet, needle):
    assert needle in error_of(tmp_path, BASE + snippet)


def test_extra_restricted_to_some_data_sets(tmp_path):
    """A setting that depends on the data set (e.g. tau+ = its measured class prior) runs only there."""
    ds = load(tmp_path, BASE).specs[0].dataset
    text = BASE + f'[[toy.extra]]\ndatasets = ["{ds}"]\nloss = {{tau_plus = 0.3}}\n'
    s = load(tmp_path, text)
    extra = [sp for sp in s.specs if sp.loss.tau_plus == 0.3]
    assert {sp.dataset for sp in extra} == {ds} and len(extra) == 2       # one run per seed
    assert "toy.extra[0].datasets" in error_of(tmp_path, BASE + '[[toy.extra]]\ndatasets = ["nope"]\n')


def test_extra_that_is_not_an_array_of_tables(tmp_path):
    assert "toy.extra" in error_of(tmp_path, BASE.replace("[toy]\n", "[toy]\nextra = 3\n"))


def test_overrides(tmp_path):
    s = load(tmp_path, BASE, overrides=["toy.train.epochs=5"])
    assert {sp.train.epochs for sp in s.specs} == {5}
    s = load(tmp_path, BASE, overrides=["toy.epochs=3", "toy.temperature=0.7"])  # shorthands
    assert {sp.train.epochs for sp in s.specs} == {3} and {sp.loss.temperature for sp in s.specs} == {0.7}
    s = load(tmp_path, BASE, overrides=["train.batch_size=8"])
    assert {sp.train.batch_size for sp in s.specs} == {8}
    s = load(tmp_path, BASE, overrides=["grid.beta=[0.5]", "grid.seed=[3]", "toy.options.hidden=12"])
    assert {(sp.loss.beta, sp.seed, sp.options["hidden"]) for sp in s.specs} == {(0.5, 3, 12)}
    s = load(tmp_path, BASE, overrides=["suite.name=renamed"])
    assert s.name == "renamed"


def test_bad_overrides(tmp_path):
    with pytest.raises(ConfigError, match="malformed"):
        load(tmp_path, BASE, overrides=["toy.train.epochs"])
    msg = error_of(tmp_path, BASE, overrides=["toy.train.epochs=many"])
    assert "toy.train.epochs" in msg and "an integer" in msg
    msg = error_of(tmp_path, BASE, overrides=["toy.train.epoch=1"])
    assert "toy.train.epoch" in msg and "unknown key" in msg


def test_only_filter(tmp_path):
    s = load(tmp_path, BASE, only=["toy/blobs8"])
    assert {sp.dataset for sp in s.specs} == {"blobs8"} and len(s.specs) == 8
    s = load(tmp_path, BASE, only=["toy/blobs*"])
    assert len(s.specs) == 16
    with pytest.raises(ConfigError, match="matches no run"):
        load(tmp_path, BASE, only=["toy/MUTAG"])
    with pytest.raises(ConfigError, match="not in this suite"):
        load(tmp_path, BASE, only=["graph/MUTAG"])


def test_find_suite_by_name(tmp_path):
    (tmp_path / "quickish.toml").write_text(BASE)
    assert config.find_suite("quickish", [tmp_path]) == tmp_path / "quickish.toml"
    with pytest.raises(ConfigError, match="quickish"):
        config.find_suite("nope", [tmp_path])


def test_shipped_suites_are_valid():
    """Every suite in benchmarks/ loads (its modalities must be importable to validate options)."""
    root = Path(__file__).resolve().parent.parent / "benchmarks"
    files = sorted(root.glob("*.toml"))
    assert any(f.stem == "smoke" for f in files)
    for f in files:
        s = config.load_suite(f)
        assert len(s.specs) > 0, f


# ---- numbers: NaN and inf refused, the stable range warned about ---------------------------

@pytest.mark.parametrize("snippet,needle", [
    ("[toy.loss]\ntemperature = inf\n", "toy.loss: temperature=inf is not allowed; allowed: a finite number"),
    ("[toy.loss]\ntemperature = nan\n", "toy.loss: temperature=nan is not allowed; allowed: a finite number"),
    ("[toy.train]\nlr = inf\n", "toy.train: train.lr=inf is not allowed; allowed: a finite number"),
    ("[toy.train]\nweight_decay = -inf\n", "train.weight_decay=-inf is not allowed"),
    ("[toy.options]\ndelay = nan\n", "delay=nan is not allowed; allowed: a finite number"),
    ("[toy.grid]\nbeta = [0.0, inf]\n", "toy.grid.beta[1]: beta=inf is not allowed"),
    ("[toy.grid]\n\"options.delay\" = [0.0, inf]\n", "delay=inf is not allowed"),
])
def test_non_finite_numbers_are_refused_in_files(tmp_path, snippet, needle):
    msg = error_of(tmp_path, BASE + snippet)
    assert needle in msg and "suite.toml" in msg


@pytest.mark.parametrize("override,needle", [
    ("toy.loss.temperature=inf", "temperature=inf is not allowed"),
    ("toy.temperature=-inf", "temperature=-inf is not allowed"),
    ("toy.options.jitter=nan", "jitter=nan is not allowed"),
    ("grid.tau_plus=[nan]", "tau_plus=nan is not allowed"),
])
def test_non_finite_numbers_are_refused_in_overrides(tmp_path, override, needle):
    msg = error_of(tmp_path, BASE, overrides=[override])
    assert needle in msg and f"--set {override}" in msg


def test_spec_classes_refuse_non_finite_numbers():
    from hardneg.spec import LossSpec, RunSpec, TrainSpec
    for bad, needle in ((LossSpec(temperature=float("inf")), "temperature=inf"),
                        (LossSpec(beta=float("inf")), "beta=inf"), (TrainSpec(lr=float("nan")), "train.lr=nan"),
                        (TrainSpec(grad_clip=float("inf")), "train.grad_clip=inf")):
        with pytest.raises(ConfigError, match=needle):
            bad.validate()
    with pytest.raises(ConfigError, match=r"options.w\[1\]=inf is not allowed"):
        RunSpec("toy", "blobs4", options={"w": [1.0, float("inf")]}).validate()


def test_settings_outside_the_stable_range_are_accepted_with_a_warning(tmp_path):
    s = load(tmp_path, BASE + "[toy.loss]\ntemperature = 1e-30\n", overrides=["grid.beta=[0.0, 1e6]"])
    assert len(s.specs) == 16
    assert any("temperature=1e-30 is below 0.05" in w and "beta <= 20" in w for w in s.warnings)
    assert any("beta=1e+06 is above 20" in w and "grid.beta[1]" in w for w in s.warnings)
    assert load(tmp_path, BASE).warnings == []


def test_suite_budget_keys(tmp_path):
    s = load(tmp_path, BASE.replace('name = "t"', 'name = "t"\nbudget_cpu_hours = 15\nbudget_cpu_minutes_per_run = 55.5'))
    assert (s.budget_cpu_hours, s.budget_cpu_minutes_per_run) == (15.0, 55.5)
    for bad in ("0", "-1", "inf", "'lots'", "true"):
        msg = error_of(tmp_path, BASE.replace('name = "t"', f'name = "t"\nbudget_cpu_hours = {bad}'))
        assert "suite.budget_cpu_hours" in msg and "a finite number > 0" in msg


def test_training_only_options_do_not_multiply_the_floors(tmp_path):
    text = BASE.replace('datasets = ["blobs4", "blobs8"]', 'datasets = ["blobs4"]\nrandom_init = true')
    s = load(tmp_path, text + '[toy.grid]\n"options.jitter" = [0.1, 0.5]\n"options.hidden" = [8, 16]\n')
    floors = [sp for sp in s.specs if sp.train.epochs == 0]
    # hidden changes the untrained model: one floor per value and seed; jitter does not
    assert sorted((f.options["hidden"], f.options["jitter"], f.seed) for f in floors) == \
        [(8, 0.3, 0), (8, 0.3, 1), (16, 0.3, 0), (16, 0.3, 1)]
    assert len(s.specs) == 4 + 2 * 2 * 2 * 2 * 2
