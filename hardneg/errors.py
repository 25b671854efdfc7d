"""The one exception family a user of hardneg can cause.

Every error that bad input can trigger (arguments, configuration, data) is raised as
:class:`HardnegError` or one of its subclasses, with a message that names the offending
value and what is allowed. Internal failures (bugs) keep their native types.
"""

from __future__ import annotations

import math
from typing import Any, Iterator


class HardnegError(ValueError):
    """A problem caused by the caller's input: arguments, suite files or data."""


class ConfigError(HardnegError):
    """A suite file, override or run specification is invalid."""


class DataError(HardnegError):
    """Data are missing, malformed, or cannot be read or cached."""


def check_range(name: str, value: float, *, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Return ``value`` as float if it is finite and lies in the stated interval, else raise HardnegError.

    NaN and +-inf are refused whatever the interval. The message names ``name``, the value
    and the allowed interval, e.g. ``tau_plus=1.0 is out of range; allowed: 0 <= tau_plus < 1``.
    """
    if isinstance(value, bool):
        raise HardnegError(f"{name}={value!r} is a boolean; allowed: a real number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HardnegError(f"{name}={value!r} is not a number; allowed: a real number") from None
    if not math.isfinite(v):
        raise HardnegError(f"{name}={v} is not allowed; allowed: a finite number")
    ok = True
    if low is not None:
        ok &= v >= low if low_inclusive else v > low
    if high is not None:
        ok &= v <= high if high_inclusive else v < high
    if not ok:
        raise HardnegError(f"{name}={value!r} is out of range; allowed: "
                           f"{interval_text(name, low, high, low_inclusive, high_inclusive)}")
    return v


def interval_text(name: str, low: float | None, high: float | None, low_inclusive: bool = True,
                  high_inclusive: bool = True) -> str:
    """``0 < name <= 4``, ``name >= 1``, ``name < 2`` ... (the form every range message uses)."""
    lo = "" if low is None else f"{low:g} {'<=' if low_inclusive else '<'} "
    hi = "" if high is None else f" {'<=' if high_inclusive else '<'} {high:g}"
    if low is None and high is None:
        return f"any finite {name}"
    return f"{lo}{name}{hi}"


def non_finite(obj: Any, path: str = "") -> Iterator[str]:
    """Key paths (``options.lr``, ``grid[2]``) of the NaN / inf floats inside nested dicts and lists."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            yield f"{path}={obj}"
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from non_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from non_finite(v, f"{path}[{i}]")
