"""Suite files (TOML) -> validated run specs: the package's public API and the suite grammar.

A suite file names the modalities and data sets to run, the training and loss settings,
the adapter options and a grid; :func:`load_suite` validates all of it before anything runs
and expands the grid into :class:`~hardneg.spec.RunSpec` objects with stable ids.

Layout (every table optional except at least one modality table)::

    [suite]            name = "quick", description = "...",
                       budget_cpu_hours = 15, budget_cpu_minutes_per_run = 60 (optional; the
                       dry run's estimate is checked against them)
    [defaults.train]   TrainSpec fields for every modality
    [defaults.loss]    LossSpec fields for every modality
    [grid]             swept settings for every modality: lists of values (seeds included:
                       ``seed = [0, 1, 2]``; without one, every run has seed 0)
    [MODALITY]         datasets = [...], random_init = true|false
    [MODALITY.train]   TrainSpec overrides
    [MODALITY.loss]    LossSpec overrides
    [MODALITY.options] adapter options (checked by the adapter's ``options`` schema)
    [MODALITY.grid]    grid keys that replace the suite-wide grid's keys for this modality
    [[MODALITY.extra]] extra configurations beside the grid (baselines such as a frozen
                       floor or a pretrained model): each may hold train, loss, options,
                       grid and random_init, and datasets (a subset of the modality's, e.g.
                       a setting that depends on the data set); it inherits the modality's
                       fixed settings (except those its own grid sweeps) and the grid's
                       seeds, but not the rest of the grid, so it adds one run per data set
                       and seed unless it sweeps a grid of its own

Precedence of a loss setting, lowest first: LossSpec default < the adapter's
``default_loss`` < ``[defaults.loss]`` < ``[MODALITY.loss]`` < the grid. A setting that is
both fixed (``[defaults.*]``/``[MODALITY.*]``) and swept by the grid is rejected, because one
of the two would be silently ignored.

Grid keys: ``seed``, a bare LossSpec field (``beta``, ``tau_plus``, ``temperature``, ...),
or a dotted path ``loss.FIELD``, ``train.FIELD``, ``options.NAME``. The product of the
value lists is taken per modality and data set. ``random_init = true`` adds one untrained
run (``train.epochs = 0``) per data set, seed and swept adapter option: the loss and
training grids do not matter without training, so they are collapsed
(beta = tau_plus = 0, other settings at their un-swept value), and so are swept options
declared ``training_only`` (:class:`~hardneg.adapters.Option`).

Numbers: NaN and inf are refused everywhere (files, ``--set``, options). Loss settings
outside the range where the loss is known to stay finite (temperature >= 0.05,
beta <= 20) are accepted with a warning (:attr:`Suite.warnings`, printed by ``hardneg run``).

Overrides (``--set``) use the same paths as the file: ``graph.train.epochs=5``,
``defaults.loss.temperature=0.2``, ``graph.grid.beta=[0, 1]``; shorthands
``graph.epochs=5`` (a TrainSpec or LossSpec field under a modality) and ``train.epochs=5``
(under ``[defaults]``). Values are parsed as TOML (``5``, ``0.5``, ``true``, ``[0, 1]``,
``"text"``); a value that is not valid TOML is taken as a string.

Modules, each with one job (data flows down this list, never up): ``fields`` (coercing and
validating TrainSpec/LossSpec fields, error locations), ``grid`` (grid keys and values),
``overrides`` (``--set``), ``expand`` (one modality table -> run specs, ``--only``),
``suite`` (reading, validating and expanding a whole suite file), ``locate`` (finding suite
files by name).
"""

from .locate import find_suite, suite_dirs
from .overrides import apply_overrides
from .suite import Suite, load_suite, parse_suite, read_toml

__all__ = ["Suite", "apply_overrides", "find_suite", "load_suite", "parse_suite", "read_toml", "suite_dirs"]
