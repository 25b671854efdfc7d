"""The one exception family a user of hardneg can cause.

Every error that bad input can trigger (arguments, configuration, data) is raised as
:class:`HardnegError` or one of its subclasses, with a message that names the offending
value and what is allowed. Internal failures (bugs) keep their native types.
"""

from __future__ import annotations


class HardnegError(ValueError):
    """A problem caused by the caller's input: arguments, suite files or data."""


class ConfigError(HardnegError):
    """A suite file, override or run specification is invalid."""


class DataError(HardnegError):
    """Data are missing, malformed, or cannot be read or cached."""


def check_range(name: str, value: float, *, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Return ``value`` as float if it lies in the stated interval, else raise HardnegError.

    The message names ``name``, the value and the allowed interval, e.g.
    ``tau_plus=1.0 is out of range; allowed: 0 <= tau_plus < 1``.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HardnegError(f"{name}={value!r} is not a number; allowed: a real number") from None
    if v != v:  # NaN
        raise HardnegError(f"{name}=nan is not allowed; allowed: a finite number")
    ok = True
    if low is not None:
        ok &= v >= low if low_inclusive else v > low
    if high is not None:
        ok &= v <= high if high_inclusive else v < high
    if not ok:
        lo = "" if low is None else f"{low:g} {'<=' if low_inclusive else '<'} "
        hi = "" if high is None else f" {'<=' if high_inclusive else '<'} {high:g}"
        raise HardnegError(f"{name}={value!r} is out of range; allowed: {lo}{name}{hi}")
    return v
