"""TrainSpec/LossSpec fields in a suite: type coercion, validation, table checks, and the
``_Where`` helper that prefixes every error with the file and the key path."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from ..errors import ConfigError, HardnegError
from ..spec import LossSpec, TrainSpec

LOSS_FIELDS = {f.name: f for f in dataclasses.fields(LossSpec)}
TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainSpec)}
_HINTS = {**typing.get_type_hints(LossSpec), **typing.get_type_hints(TrainSpec)}


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
