"""SentEval task files: the task table, reading SentEval's ``data/downstream`` layout
from ``<data_root>/senteval/downstream``, and capping examples per split for tests.

Every task is read into a :class:`TaskData` (sentences or sentence pairs with their labels
or gold scores, per split); :mod:`.protocols` scores them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ...errors import DataError, HardnegError

TASKS: tuple[str, ...] = ("MR", "CR", "SUBJ", "MPQA", "TREC", "MRPC", "SST2", "STSB")

_BINARY_FILES = {
    "MR": ("MR/rt-polarity.pos", "MR/rt-polarity.neg"),
    "CR": ("CR/custrev.pos", "CR/custrev.neg"),
    "SUBJ": ("SUBJ/subj.objective", "SUBJ/subj.subjective"),
    "MPQA": ("MPQA/mpqa.pos", "MPQA/mpqa.neg"),
}
_FILES = {
    **_BINARY_FILES,
    "TREC": ("TREC/train_5500.label", "TREC/TREC_10.label"),
    "MRPC": ("MRPC/msr_paraphrase_train.txt", "MRPC/msr_paraphrase_test.txt"),
    "SST2": ("SST/binary/sentiment-train", "SST/binary/sentiment-dev", "SST/binary/sentiment-test"),
    "STSB": ("STS/STSBenchmark/sts-test.csv",),
}


@dataclass
class TaskData:
    """Sentences and labels of one task. ``pairs`` tasks hold (s1, s2) per example."""

    name: str
    splits: dict[str, tuple[list, np.ndarray]]  # split -> (sentences or pairs, labels/scores)
    skipped: int = 0                             # empty lines dropped while reading


# ---- reading ------------------------------------------------------------------------
def downstream_root(data_root: str | os.PathLike) -> Path:
    """``<data_root>/senteval/downstream``."""
    return Path(data_root) / "senteval" / "downstream"


def check_files(data_root: str | os.PathLike, tasks: Iterable[str] = TASKS) -> list[Path]:
    """Paths of the requested tasks' files that are missing (empty list when all present)."""
    base = downstream_root(data_root)
    missing = []
    for t in tasks:
        _check_task_name(t)
        missing += [base / rel for rel in _FILES[t] if not (base / rel).is_file()]
    return missing


def _check_task_name(task: str) -> None:
    if task not in _FILES:
        raise HardnegError(f"unknown SentEval task {task!r}; allowed: {', '.join(TASKS)}")


def _read_lines(path: Path, encoding: str | None = None) -> list[str]:
    raw = path.read_bytes()
    if encoding is None:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            # SentEval reads these files as latin-1; every byte string is valid latin-1.
            text = raw.decode("latin-1")
    else:
        text = raw.decode(encoding)
    return text.splitlines()


def load_task(task: str, data_root: str | os.PathLike) -> TaskData:
    """Read one task from SentEval's layout; raises DataError naming missing files or bad lines."""
    _check_task_name(task)
    missing = check_files(data_root, [task])
    if missing:
        raise DataError(f"SentEval task {task}: missing file(s) {', '.join(map(str, missing))}; "
                        "expected SentEval's data/downstream layout under <data_root>/senteval/downstream "
                        f"(hardneg data fetch sentence/{task} downloads it)")
    base = downstream_root(data_root)
    skipped = 0
    if task in _BINARY_FILES:
        sents, labels = [], []
        for label, rel in zip((1, 0), _FILES[task]):
            for line in _read_lines(base / rel):
                line = line.strip()
                if not line:
                    skipped += 1
                    continue
                sents.append(line)
                labels.append(label)
        return TaskData(task, {"all": (sents, np.asarray(labels))}, skipped)
    if task == "TREC":
        splits = {}
        for split, rel in zip(("train", "test"), _FILES[task]):
            sents, labels = [], []
            for i, line in enumerate(_read_lines(base / rel, "latin-1"), 1):
                line = line.strip()
                if not line:
                    skipped += 1
                    continue
                coarse, sep, rest = line.partition(":")
                parts = rest.split(" ", 1)
                if not sep or len(parts) < 2:
                    raise DataError(f"{base / rel}:{i}: expected 'COARSE:fine question', got {line[:60]!r}")
                sents.append(parts[1].strip())
                labels.append(coarse)
            splits[split] = (sents, np.asarray(labels))
        return TaskData(task, splits, skipped)
    if task == "MRPC":
        splits = {}
        for split, rel in zip(("train", "test"), _FILES[task]):
            pairs, labels = [], []
            lines = _read_lines(base / rel)
            for i, line in enumerate(lines[1:], 2):  # first line is the header
                if not line.strip():
                    skipped += 1
                    continue
                cols = line.split("\t")
                if len(cols) != 5 or cols[0] not in ("0", "1"):
                    raise DataError(f"{base / rel}:{i}: expected 5 tab-separated columns "
                                    f"(Quality, #1 ID, #2 ID, #1 String, #2 String), got {len(cols)}")
                pairs.append((cols[3].strip(), cols[4].strip()))
                labels.append(int(cols[0]))
            splits[split] = (pairs, np.asarray(labels))
        return TaskData(task, splits, skipped)
    if task == "SST2":
        splits = {}
        for split, rel in zip(("train", "dev", "test"), _FILES[task]):
            sents, labels = [], []
            for i, line in enumerate(_read_lines(base / rel), 1):
                if not line.strip():
                    skipped += 1
                    continue
                sent, sep, lab = line.rstrip().rpartition("\t")
                if not sep or lab not in ("0", "1"):
                    raise DataError(f"{base / rel}:{i}: expected 'sentence<TAB>0|1', got {line[:60]!r}")
                sents.append(sent.strip())
                labels.append(int(lab))
            splits[split] = (sents, np.asarray(labels))
        return TaskData(task, splits, skipped)
    # STSB
    rel = _FILES[task][0]
    pairs, scores = [], []
    for i, line in enumerate(_read_lines(base / rel), 1):
        if not line.strip():
            skipped += 1
            continue
        cols = line.split("\t")
        try:
            score = float(cols[4])
            pairs.append((cols[5].strip(), cols[6].strip()))
        except (IndexError, ValueError):
            raise DataError(f"{base / rel}:{i}: expected genre, file, year, id, score, s1, s2 "
                            "(tab-separated)") from None
        scores.append(score)
    return TaskData(task, {"test": (pairs, np.asarray(scores, dtype=np.float64))}, skipped)


def _subsample(task: TaskData, cap: int, rng: np.random.Generator) -> TaskData:
    splits = {}
    for split, (xs, ys) in task.splits.items():
        if len(xs) > cap:
            idx = np.sort(rng.choice(len(xs), size=cap, replace=False))
            xs, ys = [xs[i] for i in idx], ys[idx]
        splits[split] = (xs, ys)
    return TaskData(task.name, splits, task.skipped)
