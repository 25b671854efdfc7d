"""Tables, plots and the report page, regenerated from run records alone (never retrains).

:func:`write_report` reads every record of a results folder and writes::

    OUT/report.md                    the page: Verdict first, provenance, protocol, curves, tables, figures
    OUT/tables/summary.{md,csv,tex}  mean +- std and n over seeds, per setting
    OUT/tables/gains.{md,csv,tex}    each variant minus its beta=0, tau+=0 baseline: CI, test, p, p adj, MDE
    OUT/tables/overall.{md,csv}      each variant's mean gain across the data sets it ran on, tested
    OUT/tables/floors.{md,csv}       each trained cell minus its untrained floor (what pretraining added)
    OUT/tables/runs.csv              the tidy table of hardneg.results.load (one row per run and metric)
    OUT/figures/*.png                metric vs beta (with floors and trivial baselines), beta x tau+
                                     heatmaps, metric vs achieved ESS, training and diagnostics curves,
                                     learning curves of every cell against samples seen

The package, one concern a module: :mod:`.stats` (t-tests, CIs, MDE, Holm / BH, formulas in
its docstring), :mod:`.cells` (the prepared frame, setting strings, per-cell summaries),
:mod:`.compare` (which runs are compared and how: pairing by processor kind and clean commit,
the adjusted family), :mod:`.overall` (the mean gain across data sets), :mod:`.tables`, :mod:`.figures`, :mod:`.verdict` (the first section and
its sentences), :mod:`.published` (published and parity numbers beside ours), :mod:`.selection`
(best-epoch numbers against the last epoch), :mod:`.companion` (another suite's best-epoch numbers on
this page, ``--companion``), :mod:`.page`.

Statistics. ``std`` is the sample standard deviation (ddof = 1) over seeds and ``n`` the
number of seeds with a finite value. Gains, tests and adjustment: :mod:`.compare` and
:mod:`.stats`.

Determinism: rows are sorted, floats have fixed formats, PNGs are written by the Agg
backend with default style and no 'Software' metadata, and the page holds no generation
time, so the same records give byte-identical output.
"""

from __future__ import annotations

from . import figures, stats, tables
from .cells import (
           INERT_AT_BASELINE,
           KEY,
           _prepare,
           headline_metrics,
           load_frame,
           summary_table,
)
from .compare import floors_table, gains_table
from .figures import plot_all
from .page import render_page, write_report
from .tables import dataset_table, write_tables

__all__ = ["INERT_AT_BASELINE", "KEY", "_prepare", "dataset_table", "figures", "floors_table", "gains_table",
           "headline_metrics", "load_frame", "plot_all", "render_page", "stats", "summary_table", "tables",
           "write_report", "write_tables"]
