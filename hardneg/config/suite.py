"""A whole suite file: reading the TOML, the [suite] and [defaults] tables, and
:func:`parse_suite`, which applies the overrides and expands every modality into a :class:`Suite`."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..spec import RunSpec
from .expand import _expand_modality, _filter_only
from .fields import LOSS_FIELDS, TRAIN_FIELDS, _check_fields, _check_table, _type_name, _Where
from .grid import _parse_grid
from .overrides import apply_overrides

SUITE_KEYS = {"name": str, "description": str, "budget_cpu_hours": float, "budget_cpu_minutes_per_run": float}
DEFAULTS_KEYS = ("train", "loss")
SUITE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    selection: str = ""                                        # the --only / --set that narrowed the file

    def __len__(self) -> int:
        return len(self.specs)


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
    from .. import adapters

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
                 budget_cpu_minutes_per_run=None if per_run is None else float(per_run), warnings=warnings,
                 selection=" ".join([f"--only {o}" for o in only] + [f"--set {o}" for o in overrides]))
