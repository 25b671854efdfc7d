"""``hardneg run`` under ``torchrun --nproc-per-node N``: rank 0 runs the suite, the others follow.

Every rank loads the same suite and joins the process group
(:func:`hardneg.distributed.init_from_env`). Rank 0 is the runner as without torchrun (the
results-folder lock, which runs are pending, progress and ETA, the records, the report)
with the :class:`RankLeader` executor: it sends the other ranks the ids of the pending runs,
then trains each run with them (:mod:`hardneg.train` does the multi-process part),
evaluates alone and writes the one record; the other ranks (:func:`follow`) train the same
runs in the same order and write nothing. All ranks meet at a barrier after every run.

A rank that dies or hangs: rank 0's next collective fails (gloo and nccl notice a closed
peer at once; a silent one after the process-group timeout), so the run it was in gets a
failure record, and the suite stops there ("start torchrun again to resume"): the process
group is unusable. torchrun stops the remaining ranks with SIGTERM when one fails; rank 0
takes the first SIGTERM as "stop after this record", so the failure record is still written.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import distributed
from .config import Suite
from .errors import HardnegError
from .executors import Executor


class RankLost(HardnegError):
    """Another rank of the torchrun job is gone; the suite cannot go on in this job."""


class _StopFlag:
    """SIGTERM on rank 0: note it and finish the current record (a second one ends the process)."""

    def __init__(self) -> None:
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class RankLeader(Executor):
    """Rank 0's executor: the pending run ids to the other ranks, then each run in turn, a barrier after each."""

    name = "torchrun"

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.sent = False
        self.stop = _StopFlag()

    def send(self, run_ids: list[str]) -> None:
        self.sent = True
        distributed.broadcast_object(run_ids)

    def run(self, jobs, task, *, started, finished, log_for) -> None:
        self.send([j.spec.run_id for j in jobs])
        for job in jobs:
            started(job)
            finished(job, task(job, log_for(job)))
            if self.stop.requested or not distributed.barrier():
                raise RankLost(f"a rank of this torchrun job (world size {self.world_size}) was lost during run "
                               f"{job.spec.run_id} ({job.label}); its record is written. Start torchrun again to "
                               "resume the suite")

    def close(self) -> None:
        """Release the other ranks if no run list went out (nothing pending, or an error before)."""
        if not self.sent:
            try:
                self.send([])
            except (RuntimeError, distributed.dist.DistError):   # the other ranks are gone already
                pass


def follow(suite: Suite, data_root: str | None, rank: int) -> None:
    """A rank > 0: train the runs rank 0 names, in its order; write nothing."""
    from .runner import plan
    from .train import run_spec

    jobs = {j.spec.run_id: j for j in plan(suite.specs)}
    for rid in distributed.broadcast_object(None):
        job = jobs[rid]
        try:
            run_spec(job.spec, adapter=job.adapter, data_root=data_root, log=lambda msg: None)
        except Exception as exc:  # noqa: BLE001 - rank 0 records the run's failure
            print(f"[rank {rank}] {job.label}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if not distributed.barrier():
            raise RankLost(f"rank {rank}: another rank of this torchrun job was lost during run {rid}")


def run_ranks(suite: Suite, *, results_dir: Path, data_root: str | None, on_changed: str,
              progress: bool | None) -> Any:
    """The suite under torchrun; returns rank 0's :class:`~hardneg.runner.SuiteSummary`, None elsewhere."""
    import torch.distributed as dist

    from .runner import run_suite

    rank, size = distributed.init_from_env()
    try:
        if rank != 0:
            follow(suite, data_root, rank)
            return None
        leader = RankLeader(size)
        try:
            return run_suite(suite, results_dir=results_dir, data_root=data_root, executor=leader,
                             progress=progress, on_changed=on_changed)
        finally:
            if not leader.stop.requested:
                leader.close()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
