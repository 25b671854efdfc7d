"""Test configuration: offline Hugging Face, the shared data root, a private cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/toy_adapter.py and friends

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("HARDNEG_DATA", str(_DEFAULT_DATA))
# tests change the working folder (monkeypatch.chdir), so a relative HARDNEG_DATA=../shared/data
# or HARDNEG_CACHE is pinned to where pytest started
for _var in ("HARDNEG_DATA", "HARDNEG_CACHE"):
    if os.environ.get(_var):
        os.environ[_var] = str(Path(os.environ[_var]).expanduser().absolute())


@pytest.fixture(autouse=True)
def _downloads_off():
    """Every test starts with downloads off (tests never reach the network; the download tests
    serve 127.0.0.1), even after one that ran ``hardneg run --download``: the CLI sets the
    variable in ``os.environ`` itself, which monkeypatch cannot undo."""
    os.environ.pop("HARDNEG_ALLOW_DOWNLOAD", None)
    yield
    os.environ.pop("HARDNEG_ALLOW_DOWNLOAD", None)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real shared data (read-only); tests needing it skip with a reason when absent."""
    root = Path(os.environ["HARDNEG_DATA"])
    if not root.exists():
        if os.environ.get("CI"):
            pytest.fail(f"real data not found at {root}; CI must set HARDNEG_DATA")
        pytest.skip(f"real data not found at {root}; set HARDNEG_DATA")
    return root
