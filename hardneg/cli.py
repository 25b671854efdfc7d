"""Command line: ``hardneg run | report | list | data check | data fetch``.

Exit status: 0 success; 1 the suite finished but some runs failed (their failure records
are written; rerun to retry them); 2 bad input (suite file, arguments, data, results
folder), with a one-line message; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import HardnegError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hardneg", description="Hard-negative contrastive learning benchmark.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a suite (resumes: finished runs are skipped)",
                       description="Expand a suite file into runs, run those without an ok record, "
                                   "write one record per run and, at the end, the report.")
    r.add_argument("suite", help="a suite file (benchmarks/quick.toml) or a name in benchmarks/ (quick)")
    r.add_argument("--data-root", help="data folder (default: $HARDNEG_DATA, else ~/.cache/hardneg/data)")
    r.add_argument("--results", default="results", metavar="DIR",
                   help="base folder of records; they go to DIR/<suite>/ (default: results)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a suite setting, e.g. graph.train.epochs=5 or graph.grid.beta=[0,1] "
                        "(repeatable)")
    r.add_argument("--only", action="append", default=[], metavar="MODALITY[/DATASET]",
                   help="run only these modalities / data sets, e.g. graph/MUTAG (repeatable; glob allowed)")
    r.add_argument("--jobs", type=int, default=1, metavar="N", help="parallel runs (processes; default 1)")
    r.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="where runs execute: local (this machine: sequential, or --jobs N processes; the "
                        "default) or ray (one Ray task a run, with the CPUs / GPUs its train.threads and "
                        "train.device state; needs pip install \"hardneg[ray]\")")
    r.add_argument("--address", metavar="HOST:PORT",
                   help="with --executor ray: the head node of a running Ray cluster (default: $RAY_ADDRESS, "
                        "else a Ray instance started on this machine)")
    r.add_argument("--rerun-changed", action="store_true",
                   help="rerun finished runs whose data checksums or adapter version differ from what a rerun "
                        "would use (default: refuse to start; old records are kept in .superseded/)")
    r.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    r.add_argument("--reports", default="reports", metavar="DIR",
                   help="base folder of the report; it goes to DIR/<suite>/ (default: reports)")
    r.add_argument("--dry-run", action="store_true",
                   help="list the pending runs with their estimated time, the total in CPU-hours against the "
                        "suite's budget, and stop (writes nothing)")
    r.add_argument("--calibrate", action="store_true",
                   help="with --dry-run: time a few training steps and one evaluation of each configuration "
                        "that has no finished runs, on this machine")
    r.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    r.add_argument("--download", action="store_true",
                   help="fetch missing data sets (same as HARDNEG_ALLOW_DOWNLOAD=1); off by default")

    rp = sub.add_parser("report", help="tables, plots and the report page from records (never retrains)")
    rp.add_argument("results_dir", help="a suite's records folder, e.g. results/quick")
    rp.add_argument("--out", help="output folder (default: reports/<suite>)")
    rp.add_argument("--adjust", choices=("holm", "bh"), default="holm",
                    help="p adjustment across the verdict's comparisons: holm (family-wise error, default) "
                         "or bh (Benjamini-Hochberg, false discovery rate)")
    rp.add_argument("--companion", action="append", metavar="DIR",
                    help="another suite's results folder whose best-epoch numbers (train.eval_every) the page "
                         "sets beside this suite's, e.g. results/graph-best-epoch (repeatable; default: those "
                         "the existing report was made with)")
    rp.add_argument("--no-companions", action="store_true", help="drop the existing report's companions")

    sub.add_parser("list", help="modalities, their data sets, and the suites in benchmarks/")

    d = sub.add_parser("data", help="data utilities")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    dc = dsub.add_parser("check", help="which data sets are present under the data root")
    dc.add_argument("--data-root", help="data folder (default: $HARDNEG_DATA, else ~/.cache/hardneg/data)")
    dc.add_argument("--modality", action="append", default=[], help="check only this modality (repeatable)")
    df = dsub.add_parser("fetch", help="download data sets into the data root (what a suite needs)",
                         description="Download what the targets read into the data root, skipping what is "
                                     "present. A target is a suite (quick, benchmarks/quick.toml), a modality "
                                     "(graph: all its data sets) or MODALITY/DATASET (graph/MUTAG, image/cifar10, "
                                     "sentence/books = the corpus and the SentEval tasks, sentence/MRPC). "
                                     "HARDNEG_MIRROR=URL fetches https://HOST/PATH from URL/HOST/PATH instead.")
    df.add_argument("targets", nargs="+", metavar="TARGET", help="SUITE, MODALITY or MODALITY/DATASET")
    df.add_argument("--data-root", help="data folder (default: $HARDNEG_DATA, else ~/.cache/hardneg/data)")
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from . import config, runner

    path = config.find_suite(args.suite)
    suite = config.load_suite(path, overrides=args.overrides, only=args.only)
    for warning in suite.warnings:
        print(f"hardneg: warning: {warning}", file=sys.stderr)
    folder = Path(args.results) / suite.name
    on_changed = "rerun" if args.rerun_changed else "refuse"
    if args.calibrate and not args.dry_run:
        raise HardnegError("--calibrate works with --dry-run only")
    if args.dry_run:
        from .dryrun import dry_run
        for line in dry_run(suite, folder, data_root=args.data_root, calibrate=args.calibrate,
                            on_changed=on_changed, log=lambda m: print(m, file=sys.stderr)):
            print(line)
        return 0
    if args.download:
        from .data import ENV_ALLOW_DOWNLOAD, resolve_data_root
        os.environ[ENV_ALLOW_DOWNLOAD] = "1"           # spawned workers inherit it (and fetch on demand)
        failed = _fetch(_spec_targets(suite.specs), resolve_data_root(args.data_root))
        for line in failed:                            # the runs that need it fail with their own record
            print(f"hardneg: warning: {line}", file=sys.stderr)
    from .distributed import launch_env
    progress = False if args.no_progress else None
    if launch_env()[1] > 1:                            # under torchrun: one process per rank
        if args.executor != "local" or args.jobs != 1 or args.address:
            raise HardnegError("under torchrun every rank is one process of the same run; allowed: no --jobs, "
                               "--executor or --address")
        from .torchrun import run_ranks
        summary = run_ranks(suite, results_dir=folder, data_root=args.data_root, on_changed=on_changed,
                            progress=progress)
        if summary is None:                            # rank > 0: rank 0 prints, records and reports
            return 0
    else:
        from .executors import make_executor
        executor = make_executor(args.executor, jobs=args.jobs, address=args.address)
        summary = runner.run_suite(suite, results_dir=folder, data_root=args.data_root, executor=executor,
                                   progress=progress, on_changed=on_changed)
    for line in summary.lines():
        print(line)
    if summary.interrupted:
        return 130
    if not args.no_report and (summary.ok or summary.skipped or summary.failed):
        from . import report
        out = Path(args.reports) / suite.name
        page = report.write_report(folder, out, if_changed=True)
        print(f"report: {page}")
    return 1 if summary.failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from . import report
    from .errors import ConfigError

    folder = Path(args.results_dir)
    out = Path(args.out) if args.out else None
    if args.no_companions and args.companion:
        raise ConfigError(f"--no-companions and --companion {' '.join(args.companion)} contradict each other; "
                          "give one")
    companions = [] if args.no_companions else args.companion
    page = report.write_report(folder, out, adjust=args.adjust, companions=companions)
    print(f"report: {page}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from . import adapters, config

    print("modalities:")
    for name in adapters.available():
        try:
            ad = adapters.get(name)
            print(f"  {name:10s} data sets: {', '.join(ad.datasets())}")
            if ad.options:
                names = [k + ("*" if o.training_only else "") for k, o in sorted(ad.options.items())]
                print(f"  {'':10s} options: {', '.join(names)}"
                      + ("  (* training only)" if any(o.training_only for o in ad.options.values()) else ""))
        except HardnegError as exc:
            print(f"  {name:10s} (cannot be loaded: {exc})")
    print("suites:")
    seen = set()
    for d in config.suite_dirs():
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.toml")):
            if f.stem in seen:
                continue
            seen.add(f.stem)
            try:
                s = config.load_suite(f)
                desc = f"{len(s.specs)} runs over {', '.join(s.modalities)}" + (
                    f"; {s.description}" if s.description else "")
            except HardnegError as exc:
                desc = f"INVALID: {exc}"
            print(f"  {f.stem:14s} {os.path.relpath(f)}  {desc}")
    if not seen:
        print("  (none found in ./benchmarks)")
    return 0


def _spec_targets(specs) -> list[tuple[str, str, dict | None]]:
    """Distinct (modality, dataset, options) of run specs, in suite order."""
    import json
    seen, out = set(), []
    for s in specs:
        key = (s.modality, s.dataset, json.dumps(s.options, sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            out.append((s.modality, s.dataset, dict(s.options)))
    return out


def _resolve_fetch_targets(targets: Sequence[str]) -> list[tuple[str, str, dict | None]]:
    from . import adapters, config
    from .errors import ConfigError

    mods = adapters.available()
    out: list[tuple[str, str, dict | None]] = []
    for t in targets:
        mod, sep, ds = t.partition("/")
        if sep and mod in mods:
            out.append((mod, ds, None))
        elif t in mods:
            out += [(t, d, None) for d in adapters.get(t).datasets()]
        else:
            owners = [m for m in mods if t in adapters.get(m).datasets()]
            if len(owners) == 1:
                out.append((owners[0], t, None))
                continue
            try:
                path = config.find_suite(t)
            except HardnegError:
                raise ConfigError(f"fetch target {t!r} is not a suite, a modality or MODALITY/DATASET; allowed: a "
                                  f"suite name or file, one of {', '.join(mods)}, or e.g. graph/MUTAG") from None
            out += _spec_targets(config.load_suite(path).specs)
    return out


def _fetch(targets: Sequence[tuple[str, str, dict | None]], root: Path) -> list[str]:
    """Fetch every (modality, dataset, options) into ``root``; returns one line per failure."""
    from . import adapters

    failed = []
    for mod, ds, options in targets:
        print(f"{mod}/{ds}: fetching what is missing into {root}")
        try:
            adapters.get(mod).fetch_data(root, ds, options, allow=True, log=print)
        except HardnegError as exc:
            failed.append(f"{mod}/{ds}: {exc}")
    return failed


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data import resolve_data_root

    root = resolve_data_root(args.data_root)
    failed = _fetch(_resolve_fetch_targets(args.targets), root)
    for line in failed:
        print(f"hardneg: error: {line}", file=sys.stderr)
    if not failed:
        print(f"done: the data are under {root}")
    return 2 if failed else 0


def _fetch_command(ad, dataset: str, data_root: str | None) -> str:
    """The command that fetches ``dataset``, or how to place it by hand."""
    from .adapters import ModalityAdapter
    if type(ad).fetch_data is ModalityAdapter.fetch_data:
        return "no downloader: place it by hand (see the README's Data section)"
    root = f" --data-root {data_root}" if data_root else ""
    return f"get it with: hardneg data fetch {ad.name}/{dataset}{root}"


def _cmd_data_check(args: argparse.Namespace) -> int:
    from . import adapters
    from .data import resolve_data_root

    root = resolve_data_root(args.data_root)
    print(f"data root: {root}" + ("" if root.is_dir() else "  (does not exist)"))
    mods = args.modality or adapters.available()
    missing = 0
    for name in mods:
        try:
            ad = adapters.get(name)
            statuses = ad.check_data(root)
        except HardnegError as exc:
            print(f"{name}: cannot be checked: {exc}")
            missing += 1
            continue
        print(f"{name}:")
        for st in statuses:
            mark = "present" if st.present else "MISSING"
            print(f"  {mark:8s} {st.dataset:14s} {st.path}" + (f"  {st.detail}" if st.detail else ""))
            if not st.present:
                print(f"  {'':8s} {'':14s} {_fetch_command(ad, st.dataset, args.data_root)}")
            missing += not st.present
    print("all present" if not missing else f"{missing} missing")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hardneg`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "data" and args.data_command == "check":
            return _cmd_data_check(args)
        if args.command == "data" and args.data_command == "fetch":
            return _cmd_data_fetch(args)
    except HardnegError as exc:
        print(f"hardneg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hardneg: interrupted", file=sys.stderr)
        return 130
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
