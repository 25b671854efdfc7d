"""Provenance of a record: package versions, the adapter's distribution, git, processor, memory."""

from __future__ import annotations

import functools
import platform
import resource
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

#: packages named in every record, installed or not (None)
CORE_PACKAGES = ("torch", "torchvision", "torch-geometric", "sentence-transformers", "transformers",
                 "datasets", "numpy", "scikit-learn", "pandas", "hardneg")
_BUILTIN_TOPS = ("hardneg", "modalities")

def utc_now() -> str:
    """ISO-8601 UTC timestamp with seconds, e.g. 2025-01-31T12:00:00Z (every record time)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache
def _dist_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    try:
        return dict(metadata.packages_distributions())
    except Exception:  # noqa: BLE001 - broken metadata of some installed package
        return {}


def versions() -> dict[str, str | None]:
    """Python, :data:`CORE_PACKAGES`, and every distribution providing a module imported now.

    Each distribution's version is looked up once per process."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in CORE_PACKAGES:
        out[pkg] = _dist_version(pkg)
    mapping = _module_distributions()
    for top in sorted({m.partition(".")[0] for m in list(sys.modules)}):
        for dist in mapping.get(top, ()):
            key = dist.lower().replace("_", "-")
            if key not in out:
                out[key] = _dist_version(dist)
    return out


@functools.cache
def adapter_provenance(cls: type) -> dict[str, Any]:
    """``{name, class, distribution, version}`` of an adapter class.

    The distribution is the installed package whose files provide the class's top-level
    module (importlib.metadata); built-ins (hardneg, modalities) are hardneg's. A class
    outside any installed distribution (a script, a test) has distribution and version null:
    its edits cannot be told apart from the version alone."""
    module = cls.__module__
    top = module.partition(".")[0]
    if top in _BUILTIN_TOPS:
        from .. import __version__
        dist, version = "hardneg", _dist_version("hardneg") or __version__
    else:
        dists = _module_distributions().get(top) or []
        dist = dists[0] if dists else None
        version = _dist_version(dist) if dist else None
    return {"name": getattr(cls, "name", None), "class": f"{module}:{cls.__qualname__}",
            "distribution": dist, "version": version}


def git_info(path: Path | None = None) -> dict[str, Any]:
    """Commit of the hardneg source checkout (null outside git) and whether it had local changes."""
    where = path or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        commit = head.stdout.strip() if head.returncode == 0 else None
        dirty = None
        if commit:
            st = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
            dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"git_commit": commit, "git_dirty": dirty}


def invocation_provenance() -> dict[str, Any]:
    """What one ``hardneg run`` stamps on every record it writes: git commit, dirty flag, host."""
    return {**git_info(), "host": socket.gethostname()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def processor_kind(device: Any) -> str:
    """The device as a record states it. On CPU: the processor and the vector instruction set
    torch dispatches to. Runs are bit-reproducible on the same kind of processor; another one
    (AVX2 vs AVX-512, Intel vs AMD math libraries) rounds differently, and over hundreds of
    epochs that grows into differences of the size of a seed's."""
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - very old torch
        isa = "?"
    return f"cpu:{platform.machine()} {_cpu_model()} ({isa}) x{torch.get_num_threads()} threads"


def peak_memory(device: Any) -> dict[str, Any]:
    """``{peak_mb, kind}``: CUDA's max allocated, else this process's max RSS."""
    import torch

    if device.type == "cuda":
        return {"peak_mb": torch.cuda.max_memory_allocated(device) / 2**20, "kind": "cuda_max_allocated"}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10
    return {"peak_mb": rss_kb * scale, "kind": "process_max_rss"}


