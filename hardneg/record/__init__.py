"""The run record: its one owner (layout, provenance, completion, reading and the atomic write).

One JSON file per run, ``results/<suite>/<run_id>.json``, written atomically
(:mod:`hardneg.atomic`; reading and writing: :mod:`hardneg.record.store`, provenance:
:mod:`hardneg.record.provenance`). Layout of ``schema_version`` :data:`SCHEMA_VERSION` = 2::

    schema_version     int    2 (1: written before adapter provenance; read, see below)
    run_id, suite      str    run_id = RunSpec.run_id (hash of the resolved settings)
    status             str    'ok' | 'failed'
    modality, dataset, seed   copies of the spec's
    method             str    ModalityAdapter.method_name(spec): 'hard-jsd', 'random-init', ...
    spec               dict   RunSpec.to_dict(): modality, dataset, seed, loss, train, options, suite
    options            dict   the adapter's resolved options (= spec.options)
    metrics            list   [{metric, value, split, protocol, selection, std}, ...] (long format)
    trivial_baselines  list   the same form: ModalityAdapter.trivial_baselines(run), selection 'trivial'
    headline_metrics   list   ModalityAdapter.headline_metrics
    curves             list   one dict per epoch: epoch, loss, steps, samples, seconds, samples_per_s,
                              diag_* (loss-core diagnostics), eval_* (train.eval_every)
    diagnostics        dict   the last epoch's diag_* without the prefix
    counters, details  dict   what the adapter counted / noted (RunContext.counters / details);
                              the trainer adds details.world_size under torchrun (not in the run id)
    timing             dict   wall_s, cpu_s (the process's CPU time: on a shared machine the
                              honest cost, wall_s stretches with the load), prepare_s, train_s,
                              eval_s, epochs, mid_training_eval_s, train_samples_per_s (measured by
                              the trainer; records before cpu_s have none); a run resumed from a
                              checkpoint also has resumed_at_epoch, processes, earlier_wall_s and
                              earlier_cpu_s (what the killed processes spent up to their last
                              checkpoint, included in wall_s and cpu_s) and earlier_basis
                              ('checkpoint', or 'curves': those epochs' own seconds, a lower bound)
    memory             dict   peak_mb, kind ('process_max_rss' | 'cuda_max_allocated')
    wall_time_s        float  the whole run as the runner timed it (seconds), the earlier processes
                              of a resumed run included (:func:`run_wall_s` reads records made
                              before they were)
    device             str    the processor kind (:func:`processor_kind`): runs are bit-identical
                              on the same kind only
    versions           dict   python and the version of every distribution the process imported
                              (collected once per process)
    adapter            dict   name, class ('module:Class'), distribution and version of the
                              package providing the adapter (built-ins: hardneg)
    git_commit, git_dirty, host   the hardneg checkout (null outside git) and the machine
    data_checksums     dict   what prepare() recorded of the data it read (SHA-256s)
    started_at, finished_at   ISO-8601 UTC, 'YYYY-MM-DDTHH:MM:SSZ'
    error              null | {type, message, traceback} (status 'failed')

Schema 1 records (every record before this layout) have the same fields less ``adapter``
(and with ``runner_wall_time_s``, a copy of ``wall_time_s``); :func:`upgrade` adds it when
they are read: for a built-in modality the adapter was hardneg's own, so its version is the
record's ``versions.hardneg`` (``adapter.inferred`` says so); for any other its version is
unknown (null), and the runner reuses such records and says that it cannot check them.
Readers refuse records of a newer schema.

A record whose spec holds NaN or inf is never written (:func:`write_record` refuses it).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import HardnegError
from ..spec import RunSpec

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
RECORD_SUFFIX = ".json"


#: the top-level fields of a schema-2 record, in the order of the layout above (ok and failed alike)
FIELDS = ("schema_version", "run_id", "suite", "status", "modality", "dataset", "seed", "method", "spec",
          "options", "metrics", "trivial_baselines", "headline_metrics", "curves", "diagnostics", "counters",
          "details", "timing", "memory", "wall_time_s", "device", "versions", "adapter", "git_commit",
          "git_dirty", "host", "data_checksums", "started_at", "finished_at", "error")


class ResultsError(HardnegError):
    """The results folder cannot be read or written (schema, disk full, permissions, corruption)."""


class UnreadableRecord(ResultsError):
    """A file in a results folder that is not a readable run record (its message names the path)."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else Path()


class NewerRecord(UnreadableRecord):
    """A record written by a newer hardneg (a newer schema): whole, but not readable here."""



__all__ = ["SCHEMA_VERSION", "READABLE_SCHEMAS", "RECORD_SUFFIX", "FIELDS", "ResultsError", "UnreadableRecord",
           "NewerRecord", "Measured", "build", "CORE_PACKAGES", "adapter_provenance", "git_info",
           "invocation_provenance", "peak_memory", "processor_kind", "utc_now", "versions", "TMP_PREFIX",
           "atomic_write_text", "clean_stale", "dumps_record", "ensure_writable", "explain_oserror", "iter_records",
           "load_records", "probe_writable", "read_record", "record_files", "record_path", "scan", "set_aside",
           "upgrade", "write_record", "run_wall_s", "curves_seconds"]

# (after the names above: the submodules import them)
from .provenance import (CORE_PACKAGES, adapter_provenance, git_info, invocation_provenance,  # noqa: E402
                         peak_memory, processor_kind, utc_now, versions)
from .store import (TMP_PREFIX, atomic_write_text, clean_stale, dumps_record, ensure_writable,  # noqa: E402
                    explain_oserror, iter_records, load_records, probe_writable, read_record, record_files,
                    record_path, scan, set_aside, upgrade, write_record)


# ---- completion --------------------------------------------------------------------------------

@dataclass
class Measured:
    """What the trainer measured in one finished run (the record's results and cost fields)."""

    method: str
    adapter: dict[str, Any]
    options: dict[str, Any]
    metrics: list[dict[str, Any]]
    trivial_baselines: list[dict[str, Any]]
    headline_metrics: list[str]
    curves: list[dict[str, Any]]
    timing: dict[str, Any]
    memory: dict[str, Any]
    device: str
    data_checksums: dict[str, str] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def build(spec: RunSpec, outcome: Measured | BaseException, *, started_at: str, finished_at: str,
          wall_time_s: float, provenance: Mapping[str, Any] | None = None,
          method: str | None = None, adapter: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole record of one run: ``outcome`` is what the trainer measured, or the exception
    that ended the run (a failure record: error type, message and traceback, no metrics).
    ``method`` and ``adapter`` name the run when the trainer did not get far enough to."""
    ok = isinstance(outcome, Measured)
    m = outcome if ok else None
    curves = m.curves if m else []
    rec: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "suite": spec.suite,
        "status": "ok" if ok else "failed",
        "modality": spec.modality, "dataset": spec.dataset, "seed": spec.seed,
        "method": m.method if m else (method or spec.method),
        "spec": spec.to_dict(), "options": m.options if m else dict(spec.options),
        "metrics": m.metrics if m else [], "trivial_baselines": m.trivial_baselines if m else [],
        "headline_metrics": m.headline_metrics if m else [],
        "curves": curves,
        "diagnostics": {k[5:]: v for k, v in (curves[-1] if curves else {}).items() if k.startswith("diag_")},
        "counters": m.counters if m else {}, "details": m.details if m else {},
        "timing": m.timing if m else {}, "memory": m.memory if m else {},
        "wall_time_s": round(wall_time_s + float((m.timing if m else {}).get("earlier_wall_s") or 0.0), 3),
        "device": m.device if m else None,
        "versions": versions(),
        "adapter": dict(m.adapter if m else (adapter or {"name": spec.modality, "class": None,
                                                          "distribution": None, "version": None})),
        "git_commit": None, "git_dirty": None, "host": None,
        "data_checksums": m.data_checksums if m else {},
        "started_at": started_at, "finished_at": finished_at,
        "error": None,
    }
    rec.update({k: v for k, v in (provenance or {}).items() if k in ("git_commit", "git_dirty", "host")})
    if not ok:
        exc = outcome
        rec["error"] = {"type": type(exc).__name__, "message": str(exc),
                        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
    return rec


def run_wall_s(rec: Mapping[str, Any]) -> float | None:
    """The wall time a finished run cost, all its processes together: ``wall_time_s``, except in a
    record of a resumed run made before records counted the killed processes (no
    ``timing.resumed_at_epoch``, yet its epochs' and evaluations' own seconds exceed it): then
    those seconds plus its preparation, a lower bound. None without a wall time."""
    wall = rec.get("wall_time_s")
    if not isinstance(wall, (int, float)):
        return None
    timing = rec.get("timing") or {}
    if "resumed_at_epoch" in timing:
        return float(wall)
    own = curves_seconds(rec.get("curves") or []) + sum(
        float(x) for x in (timing.get("prepare_s"), timing.get("eval_s")) if isinstance(x, (int, float)))
    return max(float(wall), own)


def curves_seconds(curves: Sequence[Mapping[str, Any]]) -> float:
    """The seconds a run's epochs took by their own clocks: each epoch's training and evaluation."""
    return sum(float(x) for c in curves for x in (c.get("seconds"), c.get("eval_seconds"))
               if isinstance(x, (int, float)))

