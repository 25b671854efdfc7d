#!/usr/bin/env bash
# The GPU check of hardneg's CUDA path, within one 8-minute GPU command; the sections, their time
# limits, the outputs and the exit status are described in benchmarks/gpu_check.py.
#
#   benchmarks/gpu_check.sh [OUT] [--budget 450] [--data-root DIR]   on a CUDA machine
#   benchmarks/gpu_check.sh --cpu-smoke [OUT]                        the same code paths on CPU, tiny
#   benchmarks/gpu_check.sh --pack-data DIR                          a CIFAR-10 subset to carry there
#
# OUT defaults to $OUT, else a new folder under the temporary directory. The interpreter is
# $PYTHON, else python3 (it needs torch; the check says exactly which modules are missing).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
    echo "gpu_check: no Python interpreter '$py'; set PYTHON=/path/to/python" >&2
    exit 2
fi
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# gpu_check.py keeps the budget itself (per-section limits, 450 s in all by default); this guard
# (8 minutes, GPU_CHECK_HARD_LIMIT to change it) only stops a hang in the orchestrator itself, and
# its TERM still makes it write the table of what finished
exec timeout --kill-after=10 "${GPU_CHECK_HARD_LIMIT:-480}" "$py" "$here/gpu_check.py" --python "$py" "$@"
