"""The toy modality with one more option, ``block``: a run that waits on a file flag.

With ``block = PATH`` the run writes its process id to ``PATH.pid`` in ``prepare`` and then
waits until ``PATH`` exists (at most ``BLOCK_LIMIT_S``; then it fails), so a test can kill the
very process that executes it, wherever an executor put it. Registered as ``toyflag``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import ClassVar

from toy_adapter import ToyAdapter

from hardneg import adapters
from hardneg.adapters import Option

BLOCK_LIMIT_S = 120.0


class FlagToyAdapter(ToyAdapter):
    name = "toyflag"
    options: ClassVar[dict[str, Option]] = {**ToyAdapter.options,
               "block": Option("", "wait in prepare until this file exists (its pid goes to PATH.pid)", type=str)}

    def prepare(self, run) -> None:
        super().prepare(run)
        flag = run.options["block"]
        if not flag:
            return
        Path(f"{flag}.pid.tmp").write_text(str(os.getpid()))
        os.replace(f"{flag}.pid.tmp", f"{flag}.pid")
        deadline = time.monotonic() + BLOCK_LIMIT_S
        while not Path(flag).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"flag {flag} did not appear within {BLOCK_LIMIT_S:g}s")
            time.sleep(0.05)


adapters.register("toyflag", FlagToyAdapter, replace=True)
