"""Encoding for the SentEval protocols: every distinct sentence of the requested tasks is
encoded once per call, optionally cached on disk (an ``.npz`` keyed by the sentence set),
and looked up as float64 feature rows.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ...atomic import atomic_write
from ...errors import HardnegError
from .tasks import TaskData


def _sentences_of(task: TaskData) -> list[str]:
    out = []
    for xs, _ in task.splits.values():
        for x in xs:
            out.extend(x if isinstance(x, tuple) else (x,))
    return out


def _encode_all(encode: Callable[[list[str]], np.ndarray], sentences: list[str], cache_file: Path | None,
                log: Callable[[str], None] | None) -> dict[str, np.ndarray]:
    uniq = sorted(set(sentences))
    key = hashlib.sha256("\n".join(uniq).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    if cache_file is not None and Path(cache_file).is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return dict(zip(uniq, z["emb"]))
    t0 = time.perf_counter()
    emb = np.asarray(encode(uniq), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(uniq):
        raise HardnegError(f"encode() returned shape {emb.shape}; expected ({len(uniq)}, dim)")
    if not np.isfinite(emb).all():
        raise HardnegError("encode() returned non-finite values (NaN or inf)")
    if log:
        log(f"senteval: encoded {len(uniq)} distinct sentences in {time.perf_counter() - t0:.1f}s "
            f"(dim {emb.shape[1]})")
    if cache_file is not None:
        cache_file = Path(cache_file)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(cache_file, binary=True) as fh:
            np.savez(fh, key=np.asarray(key), emb=emb)
    return dict(zip(uniq, emb))


def _vecs(table: dict[str, np.ndarray], xs: list[str]) -> np.ndarray:
    return np.stack([table[x] for x in xs]).astype(np.float64)
