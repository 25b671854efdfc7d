"""SentEval-protocol evaluation of frozen sentence encoders (Conneau & Kiela, 2018).

Implemented in this project (no SentEval code is used); it reads SentEval's
``data/downstream`` layout from ``<data_root>/senteval/downstream`` and takes any
``encode(list[str]) -> np.ndarray`` callable, so it serves the quick-thought GRUs, a
sentence-transformers model or a bag of random word vectors alike.

- :mod:`.tasks`: the task table and reading the task files.
- :mod:`.encoding`: encoding each distinct sentence once, the on-disk encoding cache.
- :mod:`.protocols`: the classifiers, CV and scores per task (see its docstring), the
  trivial baselines.
- :mod:`.metrics`: results as ``Metric`` rows, with the core-five average.
"""

from .metrics import to_metrics, trivial_metrics
from .protocols import C_GRID, evaluate, nested_cv_accuracy, trivial_baselines
from .tasks import _FILES as _FILES  # read by tests/test_fetch.py
from .tasks import TASKS, check_files, downstream_root, load_task

__all__ = ["C_GRID", "TASKS", "check_files", "downstream_root", "evaluate", "load_task", "nested_cv_accuracy",
           "to_metrics", "trivial_baselines", "trivial_metrics"]
