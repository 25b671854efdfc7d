"""``--set PATH=VALUE`` overrides applied to a parsed suite document (paths and shorthands)."""

from __future__ import annotations

import copy
import tomllib
from typing import Any, Iterable, Sequence

from ..errors import ConfigError
from .fields import LOSS_FIELDS, TRAIN_FIELDS, _type_name


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(doc: dict[str, Any], overrides: Iterable[str], modalities: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``--set PATH=VALUE`` overrides applied (see :mod:`hardneg.config`)."""
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
