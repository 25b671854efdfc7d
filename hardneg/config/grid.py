"""Grid keys and values: ``beta`` -> ``loss.beta``, the dotted paths, and each value list checked."""

from __future__ import annotations

from typing import Any

from .fields import LOSS_FIELDS, TRAIN_FIELDS, _check_table, _coerce_field, _type_name, _Where


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
