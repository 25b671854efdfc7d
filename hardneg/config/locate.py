"""Finding suite files: a path, or a bare name looked up in the benchmarks folders."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import ConfigError


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
    src = Path(__file__).resolve().parents[2] / "benchmarks"   # hardneg/config/ -> the source tree
    out = [here]
    if src.resolve() != here.resolve():
        out.append(src)
    return out
