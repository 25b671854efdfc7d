"""The run context: everything an adapter may use during one run, and its one factory.

:func:`open_run` is the only place a :class:`RunContext` is made (the trainer, the
conformance kit, the dry run's calibration, benchmarks and tests all call it), so every run
is seeded, placed on its device and given its resolved options the same way.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch

from .errors import ConfigError
from .spec import RunSpec

if TYPE_CHECKING:  # pragma: no cover
    from .adapters import ModalityAdapter


@dataclass
class RunContext:
    """Everything an adapter may use during one run.

    spec: the run's settings; options: the adapter's resolved options (defaults filled);
    data_root: read-only data; cache_dir: writable, per modality; device: where the model
    and every batch must live; generator: a CPU generator seeded from ``spec.seed``, for
    the adapter's own sampling; log: one-line progress messages. ``counters``,
    ``data_checksums`` and ``details`` are kept in the record; ``extra`` is the adapter's
    free space (not recorded). ``scramble_test`` is set only by the conformance kit: ``prepare``
    then replaces the held-out test rows of the data it loads (see
    :class:`hardneg.adapters.ModalityAdapter`).
    """

    spec: RunSpec
    options: Mapping[str, Any]
    data_root: Path
    cache_dir: Path
    device: torch.device
    generator: torch.Generator
    log: Callable[[str], None] = print
    counters: dict[str, float] = field(default_factory=dict)
    data_checksums: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    scramble_test: bool = False

    def count(self, key: str, n: float = 1) -> None:
        """Add ``n`` to the counter ``key`` (kept in the record)."""
        self.counters[key] = self.counters.get(key, 0) + n


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name!r} is not a device; allowed: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available here; allowed: auto, cpu")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for the adapter's own sampling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def open_run(adapter: "ModalityAdapter", spec: RunSpec, *, data_root: str | os.PathLike | None = None,
             log: Callable[[str], None] = print, cache_dir: str | os.PathLike | None = None,
             device: str | torch.device | None = None) -> RunContext:
    """Validate ``spec`` for ``adapter`` and return its seeded context (before ``prepare``).

    Checks the data set and options (messages name ``MODALITY.options.KEY``), validates the
    spec (NaN / inf refused), resolves the device (``device`` overrides ``spec.train.device``),
    applies ``train.threads``, seeds Python / NumPy / torch from ``spec.seed``. ``data_root``
    defaults to :func:`hardneg.data.resolve_data_root`, ``cache_dir`` to the modality's cache.
    """
    from .data import cache_dir as default_cache, resolve_data_root

    adapter.check_dataset(spec.dataset)
    options = adapter.resolve_options(spec.options, where=f"{spec.modality}.options.")
    spec.validate()
    dev = device if isinstance(device, torch.device) else resolve_device(device or spec.train.device)
    if spec.train.threads > 0:
        torch.set_num_threads(spec.train.threads)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    generator = seed_everything(spec.seed)
    return RunContext(spec=spec, options=options, data_root=resolve_data_root(data_root),
                      cache_dir=Path(cache_dir) if cache_dir is not None else default_cache(spec.modality),
                      device=dev, generator=generator, log=log)
