"""Tables, plots and the report page, regenerated from run records alone (never retrains).

:func:`write_report` reads every record of a results folder and writes::

    OUT/report.md                  the page: provenance, protocol of every number, tables, figures
    OUT/tables/summary.{md,csv,tex}  mean +- std and n over seeds, per setting
    OUT/tables/gains.{md,csv,tex}    each variant minus the beta=0, tau+=0 baseline, paired by seed
    OUT/tables/runs.csv              the tidy table of hardneg.results.load (one row per run and metric)
    OUT/figures/*.png              metric vs beta, beta x tau+ heatmaps, training and diagnostics curves

Statistics. ``std`` is the sample standard deviation (ddof = 1) over seeds and ``n`` the
number of seeds with a finite value. A variant's gain over its baseline (same modality,
data set, metric and every other setting; trained, beta = 0, tau+ = 0) is computed on the
seeds both have: ``d_s = variant_s - baseline_s``, reported as mean(d), std(d) (ddof = 1),
the number of pairs and, for n >= 2, the two-sided paired t-test p-value
(``scipy.stats.ttest_rel``), uncorrected for multiple comparisons.

Determinism: rows are sorted, floats have fixed formats, PNGs are written by the Agg
backend with default style and no 'Software' metadata, and the page holds no generation
time, so the same records give byte-identical output.
"""

from __future__ import annotations

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

__all__ = ["INERT_AT_BASELINE", "KEY", "_prepare", "dataset_table", "floors_table", "gains_table", "headline_metrics", "load_frame", "plot_all", "render_page",
           "summary_table", "write_report", "write_tables"]
