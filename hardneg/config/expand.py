"""One modality table -> run specs: its checks, the product of its grid, the random_init
floors and the ``[[MODALITY.extra]]`` configurations; and the ``--only`` filter on the result."""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
from typing import Any, Sequence

from ..errors import ConfigError, HardnegError, non_finite
from ..spec import LossSpec, RunSpec, TrainSpec
from .fields import (LOSS_FIELDS, TRAIN_FIELDS, _check_fields, _check_table, _type_name, _validate_loss,
                     _validate_train, _Where)
from .grid import _canonical_grid_key, _parse_grid

MODALITY_KEYS = ("datasets", "random_init", "train", "loss", "options", "grid", "extra")
EXTRA_KEYS = ("datasets", "random_init", "train", "loss", "options", "grid")


def _expand_modality(where: _Where, mod: str, table: Any, suite: str, d_train: dict, d_loss: dict,
                     g_grid: dict[str, list[Any]], g_origin: dict[str, str], path: str | None = None,
                     warnings: list[str] | None = None) -> list[RunSpec]:
    from .. import adapters

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
