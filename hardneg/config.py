"""Suite files (TOML) -> validated run specs.

A suite file names the modalities and data sets to run, the training and loss settings,
the adapter options and a grid; :func:`load_suite` validates all of it before anything runs
and expands the grid into :class:`~hardneg.spec.RunSpec` objects with stable ids.

Layout (every table optional except at least one modality table)::

    [suite]            name = "quick", description = "...",
                       budget_cpu_hours = 15, budget_cpu_minutes_per_run = 60 (optional; the
                       dry run's estimate is checked against them)
    [defaults.train]   TrainSpec fields for every modality
    [defaults.loss]    LossSpec fields for every modality
    [grid]             swept settings for every modality: lists of values (seeds included:
                       ``seed = [0, 1, 2]``; without one, every run has seed 0)
    [MODALITY]         datasets = [...], random_init = true|false
    [MODALITY.train]   TrainSpec overrides
    [MODALITY.loss]    LossSpec overrides
    [MODALITY.options] adapter options (checked by the adapter's ``options`` schema)
    [MODALITY.grid]    grid keys that replace the suite-wide grid's keys for this modality
    [[MODALITY.extra]] extra configurations beside the grid (baselines such as a frozen
                       floor or a pretrained model): each may hold train, loss, options,
                       grid and random_init, and datasets (a subset of the modality's, e.g.
                       a setting that depends on the data set); it inherits the modality's
                       fixed settings (except those its own grid sweeps) and the grid's
                       seeds, but not the rest of the grid, so it adds one run per data set
                       and seed unless it sweeps a grid of its own

Precedence of a loss setting, lowest first: LossSpec default < the adapter's
``default_loss`` < ``[defaults.loss]`` < ``[MODALITY.loss]`` < the grid. A setting that is
both fixed (``[defaults.*]``/``[MODALITY.*]``) and swept by the grid is rejected, because one
of the two would be silently ignored.

Grid keys: ``seed``, a bare LossSpec field (``beta``, ``tau_plus``, ``temperature``, ...),
or a dotted path ``loss.FIELD``, ``train.FIELD``, ``options.NAME``. The product of the
value lists is taken per modality and data set. ``random_init = true`` adds one untrained
run (``train.epochs = 0``) per data set, seed and swept adapter option: the loss and
training grids do not matter without training, so they are collapsed
(beta = tau_plus = 0, other settings at their un-swept value), and so are swept options
declared ``training_only`` (:class:`~hardneg.adapters.Option`).

Numbers: NaN and inf are refused everywhere (files, ``--set``, options). Loss settings
outside the range where the loss is known to stay finite (temperature >= 0.05,
beta <= 20) are accepted with a warning (:attr:`Suite.warnings`, printed by ``hardneg run``).

Overrides (``--set``) use the same paths as the file: ``graph.train.epochs=5``,
``defaults.loss.temperature=0.2``, ``graph.grid.beta=[0, 1]``; shorthands
``graph.epochs=5`` (a TrainSpec or LossSpec field under a modality) and ``train.epochs=5``
(under ``[defaults]``). Values are parsed as TOML (``5``, ``0.5``, ``true``, ``[0, 1]``,
``"text"``); a value that is not valid TOML is taken as a string.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import itertools
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import ConfigError, HardnegError, non_finite
from .spec import LossSpec, RunSpec, TrainSpec

SUITE_KEYS = {"name": str, "description": str, "budget_cpu_hours": float, "budget_cpu_minutes_per_run": float}
MODALITY_KEYS = ("datasets", "random_init", "train", "loss", "options", "grid", "extra")
EXTRA_KEYS = ("datasets", "random_init", "train", "loss", "options", "grid")
DEFAULTS_KEYS = ("train", "loss")
SUITE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

LOSS_FIELDS = {f.name: f for f in dataclasses.fields(LossSpec)}
TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainSpec)}
_HINTS = {**typing.get_type_hints(LossSpec), **typing.get_type_hints(TrainSpec)}


@dataclass
class Suite:
    """A validated suite: its name, source file and the expanded run specs (in run order)."""

    name: str
    path: Path | None
    description: str
    specs: list[RunSpec]
    modalities: list[str]
    document: dict[str, Any] = field(default_factory=dict)   # the TOML after overrides
    budget_cpu_hours: float | None = None                      # [suite] budget_cpu_hours
    budget_cpu_minutes_per_run: float | None = None            # [suite] budget_cpu_minutes_per_run
    warnings: list[str] = field(default_factory=list)          # settings outside the stable range

    def __len__(self) -> int:
        return len(self.specs)


# ---- small helpers ---------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


class _Where:
    """Prefix of every message: the file and the key path."""

    def __init__(self, source: str):
        self.source = source

    def err(self, path: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: {msg}" if path else f"{self.source}: {msg}")


def _coerce_field(where: _Where, path: str, name: str, value: Any) -> Any:
    """Type-check one LossSpec/TrainSpec field value; ints become floats for float fields."""
    hint = _HINTS[name]
    if hint is bool:
        if not isinstance(value, bool):
            raise where.err(path, f"{value!r} is a {_type_name(value)}; allowed: true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.err(path, f"{value!r} is a {_type_name(value)}; allowed: an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise where.err(path, f"{value!r} is a {_type_name(value)}; allowed: a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise where.err(path, f"{value!r} is a {_type_name(value)}; allowed: a string")
        return value
    return value  # pragma: no cover - every field has one of the types above


def _validate_train(where: _Where, path: str, train: TrainSpec) -> None:
    try:
        train.validate()
    except HardnegError as exc:
        raise where.err(path, str(exc)) from None


def _validate_loss(where: _Where, path: str, loss: LossSpec, warnings: list[str] | None = None) -> None:
    try:
        loss.validate()
    except HardnegError as exc:
        raise where.err(path, str(exc)) from None
    if warnings is not None:
        for w in loss.stability_warnings():
            msg = f"{where.source}: {path}: {w}"
            if msg not in warnings:
                warnings.append(msg)


def _check_table(where: _Where, path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.err(path, f"{value!r} is a {_type_name(value)}; allowed: a table")
    return value


def _check_fields(where: _Where, path: str, table: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    table = _check_table(where, path, table)
    out = {}
    for key, value in table.items():
        if key not in fields:
            raise where.err(f"{path}.{key}", f"unknown key; allowed: {', '.join(sorted(fields))}")
        out[key] = _coerce_field(where, f"{path}.{key}", key, value)
    return out


def _canonical_grid_key(where: _Where, path: str, key: str) -> str:
    """'beta' -> 'loss.beta'; 'seed'; 'loss.X' / 'train.X' / 'options.X' kept (checked)."""
    if key == "seed":
        return key
    if key in LOSS_FIELDS:
        return f"loss.{key}"
    head, _, tail = key.partition(".")
    if head == "loss" and tail in LOSS_FIELDS:
        return key
    if head == "train" and tail in TRAIN_FIELDS:
        return key
    if head == "options" and tail:
        return key
    raise where.err(f"{path}.{key}", "unknown grid key; allowed: seed, a loss field ("
                    + ", ".join(LOSS_FIELDS) + "), or loss.FIELD, train.FIELD, options.NAME")


def _parse_grid(where: _Where, path: str, table: Any, origin: dict[str, str]) -> dict[str, list[Any]]:
    """Canonical grid key -> checked values; ``origin`` gets canonical key -> key path as written."""
    table = _check_table(where, path, table)
    out: dict[str, list[Any]] = {}
    for key, values in table.items():
        canon = _canonical_grid_key(where, path, key)
        if canon in out:
            raise where.err(f"{path}.{key}", f"the same setting is given twice in the grid ({canon})")
        if not isinstance(values, list):
            raise where.err(f"{path}.{key}", f"{values!r} is a {_type_name(values)}; "
                            "allowed: an array of values, e.g. [0.0, 1.0]")
        if not values:
            raise where.err(f"{path}.{key}", "the array is empty, so the grid expands to zero runs; "
                            "allowed: at least one value")
        kind, _, name = canon.partition(".")
        checked = []
        for i, v in enumerate(values):
            vpath = f"{path}.{key}[{i}]"
            if canon == "seed":
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise where.err(vpath, f"{v!r} is not a valid seed; allowed: an integer >= 0")
            elif kind in ("loss", "train"):
                v = _coerce_field(where, vpath, name, v)
            checked.append(v)
        out[canon] = checked
        origin[canon] = f'{path}."{key}"' if "." in key else f"{path}.{key}"
    return out


# ---- overrides ---------------------------------------------------------------------------

def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(doc: dict[str, Any], overrides: Iterable[str], modalities: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``--set PATH=VALUE`` overrides applied (see module doc)."""
    doc = copy.deepcopy(doc)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is malformed; allowed: PATH=VALUE, e.g. graph.train.epochs=5")
        parts = key.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"--set {item!r}: empty key in {key!r}; allowed: dotted keys like graph.train.epochs")
        # shorthands
        if parts[0] in ("train", "loss") and len(parts) == 2:
            parts = ["defaults"] + parts
        elif len(parts) == 2 and (parts[0] in modalities or parts[0] in doc) and parts[0] not in ("suite", "grid", "defaults"):
            if parts[1] in TRAIN_FIELDS:
                parts = [parts[0], "train", parts[1]]
            elif parts[1] in LOSS_FIELDS:
                parts = [parts[0], "loss", parts[1]]
        value = _parse_value(raw.strip())
        node = doc
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i + 1])} is a "
                                  f"{_type_name(nxt)}, not a table; cannot set {key}")
            node = nxt
        node[parts[-1]] = value
    return doc


# ---- loading -----------------------------------------------------------------------------

def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a ConfigError naming the file and line."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"suite file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read suite file {p}: {exc.strerror}") from None


def load_suite(path: str | Path, *, overrides: Sequence[str] = (), only: Sequence[str] = ()) -> Suite:
    """Read, override, validate and expand a suite file. See :func:`parse_suite`."""
    p = Path(path)
    return parse_suite(read_toml(p), source=str(p), default_name=p.stem, path=p,
                       overrides=overrides, only=only)


def parse_suite(doc: Mapping[str, Any], *, source: str = "<suite>", default_name: str = "adhoc",
                path: Path | None = None, overrides: Sequence[str] = (), only: Sequence[str] = ()) -> Suite:
    """Validate a parsed suite document and expand it into run specs.

    Raises ConfigError naming ``source``, the key path and what is allowed for: unknown
    keys, wrong types, out-of-range values, unknown modalities/data sets/options, a grid
    that expands to zero runs and an ``only`` filter that matches nothing.
    """
    from . import adapters

    where = _Where(source + (" (with --set " + " ".join(overrides) + ")" if overrides else ""))
    known_modalities = adapters.available()
    doc = apply_overrides(dict(doc), overrides, known_modalities)

    allowed_top = ["suite", "defaults", "grid"] + known_modalities
    for key in doc:
        if key not in allowed_top:
            raise where.err(key, "unknown top-level key; allowed: suite, defaults, grid, or a modality ("
                            + ", ".join(known_modalities) + ")")

    suite_tbl = _check_table(where, "suite", doc.get("suite", {}))
    for key, value in suite_tbl.items():
        if key not in SUITE_KEYS:
            raise where.err(f"suite.{key}", f"unknown key; allowed: {', '.join(SUITE_KEYS)}")
        if SUITE_KEYS[key] is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise where.err(f"suite.{key}", f"{value!r} is invalid; allowed: a finite number > 0")
        elif not isinstance(value, SUITE_KEYS[key]):
            raise where.err(f"suite.{key}", f"{value!r} is a {_type_name(value)}; allowed: a string")
    name = suite_tbl.get("name", default_name)
    if not SUITE_NAME_RE.match(name):
        raise where.err("suite.name", f"{name!r} is not a valid suite name; allowed: letters, digits, "
                        "'_', '.', '-' (it names the results folder)")

    defaults = _check_table(where, "defaults", doc.get("defaults", {}))
    for key in defaults:
        if key not in DEFAULTS_KEYS:
            raise where.err(f"defaults.{key}", f"unknown key; allowed: {', '.join(DEFAULTS_KEYS)}")
    d_train = _check_fields(where, "defaults.train", defaults.get("train", {}), TRAIN_FIELDS)
    d_loss = _check_fields(where, "defaults.loss", defaults.get("loss", {}), LOSS_FIELDS)
    g_origin: dict[str, str] = {}
    g_grid = _parse_grid(where, "grid", doc.get("grid", {}), g_origin)

    modalities = [k for k in doc if k in known_modalities]
    if not modalities:
        raise where.err("", "the suite names no modality, so it expands to zero runs; allowed: one or more "
                        "tables named after a modality (" + ", ".join(known_modalities) + ")")

    specs: list[RunSpec] = []
    warnings: list[str] = []
    for mod in modalities:
        specs.extend(_expand_modality(where, mod, doc[mod], name, d_train, d_loss, g_grid, g_origin,
                                      warnings=warnings))

    specs = _filter_only(specs, only, modalities)
    seen: set[str] = set()
    unique = []
    for s in specs:
        if s.run_id not in seen:
            seen.add(s.run_id)
            unique.append(s)
    budget = suite_tbl.get("budget_cpu_hours")
    per_run = suite_tbl.get("budget_cpu_minutes_per_run")
    return Suite(name=name, path=path, description=suite_tbl.get("description", ""),
                 specs=unique, modalities=modalities, document=doc,
                 budget_cpu_hours=None if budget is None else float(budget),
                 budget_cpu_minutes_per_run=None if per_run is None else float(per_run), warnings=warnings)


def _expand_modality(where: _Where, mod: str, table: Any, suite: str, d_train: dict, d_loss: dict,
                     g_grid: dict[str, list[Any]], g_origin: dict[str, str], path: str | None = None,
                     warnings: list[str] | None = None) -> list[RunSpec]:
    from . import adapters

    path = path or mod
    table = _check_table(where, path, table)
    for key in table:
        if key not in MODALITY_KEYS:
            raise where.err(f"{path}.{key}", f"unknown key; allowed: {', '.join(MODALITY_KEYS)}")
    try:
        adapter = adapters.get(mod)
    except HardnegError as exc:
        raise where.err(mod, str(exc)) from None

    datasets = table.get("datasets")
    if datasets is None:
        raise where.err(f"{path}.datasets", "missing; allowed: an array of data set names, e.g. "
                        + repr(adapter.datasets()[:2]))
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise where.err(f"{path}.datasets", f"{datasets!r} is not an array of strings; allowed: data set names")
    if not datasets:
        raise where.err(f"{path}.datasets", "the array is empty, so the grid expands to zero runs; allowed: "
                        + ", ".join(adapter.datasets()))
    for i, ds in enumerate(datasets):
        try:
            adapter.check_dataset(ds)
        except HardnegError as exc:
            raise where.err(f"{path}.datasets[{i}]", str(exc)) from None
    random_init = table.get("random_init", False)
    if not isinstance(random_init, bool):
        raise where.err(f"{path}.random_init", f"{random_init!r} is a {_type_name(random_init)}; allowed: true or false")

    m_train = _check_fields(where, f"{path}.train", table.get("train", {}), TRAIN_FIELDS)
    m_loss = _check_fields(where, f"{path}.loss", table.get("loss", {}), LOSS_FIELDS)
    m_opts = _check_table(where, f"{path}.options", table.get("options", {}))
    grid = dict(g_grid)
    origin = dict(g_origin)
    grid.update(_parse_grid(where, f"{path}.grid", table.get("grid", {}), origin))
    grid.setdefault("seed", [0])

    # a setting both fixed and swept: one of the two would be ignored without notice
    for gkey in grid:
        kind, _, fname = gkey.partition(".")
        fixed = {"loss": [("defaults.loss", d_loss), (f"{path}.loss", m_loss)],
                 "train": [("defaults.train", d_train), (f"{path}.train", m_train)],
                 "options": [(f"{path}.options", m_opts)]}.get(kind, [])
        for tpath, tbl in fixed:
            if fname in tbl:
                raise where.err(f"{tpath}.{fname}", f"is fixed here and also swept by the grid ({gkey}); "
                                "allowed: one of the two")

    opt_where = f"{where.source}: [{path}.options] "
    try:
        base_opts = adapter.resolve_options(m_opts, where=opt_where)
    except HardnegError as exc:
        raise ConfigError(str(exc)) from None

    loss_base = {**{k: v for k, v in adapter.default_loss.items()}, **d_loss, **m_loss}
    train_base = {**d_train, **m_train}
    unknown_default = sorted(set(adapter.default_loss) - set(LOSS_FIELDS))
    if unknown_default:  # an adapter bug, but say so clearly
        raise where.err(mod, f"adapter default_loss has unknown field(s) {unknown_default}")

    base_loss = LossSpec(**loss_base)
    base_train = TrainSpec(**train_base)
    _validate_loss(where, f"{path}.loss", base_loss, warnings)
    _validate_train(where, f"{path}.train", base_train)

    # each grid value on its own, so that an error points at the offending array element
    for gkey, values in grid.items():
        kind, _, fname = gkey.partition(".")
        for i, v in enumerate(values):
            vpath = f"{origin.get(gkey, gkey)}[{i}]"
            if kind == "loss":
                _validate_loss(where, vpath, dataclasses.replace(base_loss, **{fname: v}), warnings)
            elif kind == "train":
                _validate_train(where, vpath, dataclasses.replace(base_train, **{fname: v}))
            elif kind == "options":
                try:
                    adapter.resolve_options({**m_opts, fname: v}, where=f"{where.source}: {vpath} ")
                except HardnegError as exc:
                    raise ConfigError(str(exc)) from None
                bad = list(non_finite(v, vpath))
                if bad:
                    raise where.err(vpath, f"{', '.join(bad)} is not allowed; allowed: finite numbers")
    bad = list(non_finite(dict(base_opts), f"{path}.options"))
    if bad:
        raise where.err(f"{path}.options", f"{', '.join(bad)} is not allowed; allowed: finite numbers")
    # swept options that matter only to training do not multiply the untrained floors
    floor_fixed = {}
    for gkey in grid:
        kind, _, fname = gkey.partition(".")
        if kind == "options" and fname in adapter.options and adapter.options[fname].training_only:
            floor_fixed[fname] = base_opts[fname]

    keys = list(grid)
    specs: list[RunSpec] = []
    for ds in datasets:
        trained: list[RunSpec] = []
        floors: list[RunSpec] = []
        for combo in itertools.product(*(grid[k] for k in keys)):
            setting = dict(zip(keys, combo))
            loss_kw = dict(loss_base)
            train_kw = dict(train_base)
            opts = dict(m_opts)
            seed = setting["seed"]
            for k, v in setting.items():
                kind, _, fname = k.partition(".")
                {"loss": loss_kw, "train": train_kw, "options": opts}.get(kind, {})[fname] = v
            resolved_opts = adapter.resolve_options(opts, where=opt_where)
            spec = RunSpec(modality=mod, dataset=ds, seed=seed, loss=LossSpec(**loss_kw),
                           train=TrainSpec(**train_kw), options=resolved_opts, suite=suite)
            trained.append(spec)
            if random_init:
                floor_loss = dataclasses.replace(base_loss, beta=0.0, tau_plus=0.0)
                floor_train = dataclasses.replace(base_train, epochs=0)
                floor = RunSpec(modality=mod, dataset=ds, seed=seed, loss=floor_loss, train=floor_train,
                                options={**resolved_opts, **floor_fixed}, suite=suite)
                if floor not in floors:
                    floors.append(floor)
        specs.extend(floors)
        specs.extend(trained)

    extras = table.get("extra", [])
    if not isinstance(extras, list) or not all(isinstance(e, dict) for e in extras):
        raise where.err(f"{path}.extra", f"{extras!r} is not an array of tables; allowed: [[{mod}.extra]] "
                        "tables with train, loss, options, grid or random_init")
    for i, extra in enumerate(extras):
        epath = f"{mod}.extra[{i}]"
        for key in extra:
            if key not in EXTRA_KEYS:
                raise where.err(f"{epath}.{key}", f"unknown key; allowed: {', '.join(EXTRA_KEYS)}")
        # one fixed configuration per data set and seed, unless the extra sweeps its own grid;
        # the suite-wide and modality grids do not apply, except their seeds
        sub_grid = dict(_check_table(where, f"{epath}.grid", extra.get("grid", {})))
        swept = {_canonical_grid_key(where, f"{epath}.grid", k) for k in sub_grid}
        sub_grid.setdefault("seed", grid["seed"])
        ex_datasets = extra.get("datasets", datasets)
        if (not isinstance(ex_datasets, list) or not ex_datasets
                or any(d not in datasets for d in ex_datasets)):
            raise where.err(f"{epath}.datasets", f"{ex_datasets!r} is invalid; allowed: a non-empty list of the "
                            f"modality's data sets ({', '.join(map(str, datasets))})")
        sub: dict[str, Any] = {"datasets": ex_datasets, "random_init": extra.get("random_init", False),
                               "grid": sub_grid}
        for section in ("train", "loss", "options"):
            # the modality's fixed settings carry over, except those this extra sweeps
            inherited = {k: v for k, v in table.get(section, {}).items() if f"{section}.{k}" not in swept}
            sub[section] = {**inherited, **_check_table(where, f"{epath}.{section}", extra.get(section, {}))}
        specs.extend(_expand_modality(where, mod, sub, suite, d_train, d_loss, {}, {}, path=epath,
                                      warnings=warnings))
    return specs


def _filter_only(specs: list[RunSpec], only: Sequence[str], modalities: Sequence[str]) -> list[RunSpec]:
    """Keep specs matching any ``MODALITY`` or ``MODALITY/DATASET`` pattern (glob on the data set)."""
    if not only:
        return specs
    kept: list[RunSpec] = []
    for pattern in only:
        mod, _, ds = pattern.partition("/")
        if mod not in modalities:
            raise ConfigError(f"--only {pattern!r}: modality {mod!r} is not in this suite; "
                              f"allowed: {', '.join(modalities)}")
        hits = [s for s in specs if s.modality == mod and (not ds or fnmatch.fnmatchcase(s.dataset, ds))]
        if not hits:
            avail = sorted({s.dataset for s in specs if s.modality == mod})
            raise ConfigError(f"--only {pattern!r} matches no run; data sets of {mod} in this suite: "
                              + ", ".join(avail))
        kept.extend(h for h in hits if h not in kept)
    order = {id(s): i for i, s in enumerate(specs)}
    return sorted(kept, key=lambda s: order[id(s)])


def find_suite(name_or_path: str, search: Sequence[Path] = ()) -> Path:
    """A suite file from a path, or a bare name looked up as ``benchmarks/NAME.toml``."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or "/" in name_or_path:
        if not p.exists():
            raise ConfigError(f"suite file {p} does not exist")
        return p
    dirs = list(search) or suite_dirs()
    for d in dirs:
        cand = d / f"{name_or_path}.toml"
        if cand.exists():
            return cand
    names = sorted({q.stem for d in dirs if d.is_dir() for q in d.glob("*.toml")})
    raise ConfigError(f"no suite named {name_or_path!r}; allowed: a path to a .toml file or one of "
                      + (", ".join(names) if names else "(no suites found in benchmarks/)"))


def suite_dirs() -> list[Path]:
    """Where bare suite names are looked up: ./benchmarks, then the source tree's benchmarks/."""
    here = Path.cwd() / "benchmarks"
    src = Path(__file__).resolve().parent.parent / "benchmarks"
    out = [here]
    if src.resolve() != here.resolve():
        out.append(src)
    return out
