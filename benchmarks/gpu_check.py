"""The GPU check: hardneg's CUDA path proven in one command of at most 8 minutes.

Sections, each a subprocess with its own time limit (seconds, scaled by ``--budget``; a
section that runs out is killed with its whole process group and reported as timed out,
and the sections after it still run while the total budget lasts):

0. ``preflight`` (45)  imports everything the sections need and names each missing module
                       (and the module that wanted it); CUDA, bf16, Triton, the data root.
a. ``tests``     (90)  ``pytest -m cuda tests/test_cuda.py``: the loss core in bf16 on CUDA
                       against float64 on CPU, the batched views on the device against their
                       CPU results and distribution, an image step under bf16 autocast +
                       channels-last, the trainer's device handling.
b. ``bench``    (240)  ``benchmarks/perf/image.py --paths``: ResNet-50 (CIFAR stem), B = 256,
                       one process, side by side: the authors' setting (fp32, two passes,
                       per-image CPU views in DataLoader workers) and hardneg's fast path (bf16
                       autocast, channels-last, batched views on the GPU) with and without
                       ``torch.compile`` (plus, for information, one encoder pass and
                       cudnn.benchmark): steps/s and peak GPU memory. Target: >= 31 steps/s
                       for the fast path (the authors' code: 12.4 on one H200).
c. ``epoch``     (75)  ``hardneg run benchmarks/gpu-check.toml``: three short real epochs of
                       ResNet-50 on CIFAR-10 through the runner, the probes, the record; the
                       check is that the last epoch's mean loss is below the first's.

Then one table (Markdown) on stdout and in ``OUT/table.md``; ``OUT/summary.json`` holds
every number, ``OUT/{preflight,tests,bench,epoch}.log`` the sections' output and
``OUT/epoch-record.json`` the run record of (c). Nothing needs the network.

Usage::

    benchmarks/gpu_check.sh [OUT] [--budget 450] [--data-root DIR]   # on a CUDA machine
    benchmarks/gpu_check.sh --cpu-smoke [OUT]                        # the same code paths on CPU, tiny
    benchmarks/gpu_check.sh --pack-data DIR [--pack-train 5120 --pack-test 1000]

``OUT`` defaults to ``$OUT``, else a new folder under the temporary directory. ``--pack-data``
copies a class-balanced subset of the CIFAR-10 JPEG tree under the data root (byte for byte,
5.4 MiB at the defaults) to ``DIR/cifar10/``, for a GPU machine that cannot see the data.

Exit status: 0 all checks passed (and, on CUDA, the target met); 1 a check failed or timed
out; 2 a required module is missing; 3 no CUDA (without ``--cpu-smoke``); 4 every check
passed but the fast path missed the target.

This file imports only the standard library, so that it can say what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "gpu-check.toml"
TARGET_STEPS_PER_S = 31.0
#: the rows that count for the target: training as a hardneg run does it (two passes), without and with
#: the adapter's ``compile`` option (cudnn.benchmark is no option of a run, so its row is information only)
FAST_PATHS = ("fast", "fast-compile")
AUTHORS_H200_STEPS_PER_S = 12.4
LIMITS = {"preflight": 45.0, "tests": 90.0, "bench": 240.0, "epoch": 75.0}   # 450 s: the default budget
SMOKE_LIMITS = {"preflight": 45.0, "tests": 90.0, "bench": 90.0, "epoch": 90.0}   # caps, far above the need
#: (module, what needs it, sections that cannot run without it)
REQUIRED = (
    ("torch", "everything", ("tests", "bench", "epoch")),
    ("torchvision", "the ResNet blocks and the per-image reference views", ("tests", "bench", "epoch")),
    ("torchvision.transforms.v2", "the per-image reference views", ("tests", "bench", "epoch")),
    ("numpy", "the trainer", ("tests", "bench", "epoch")),
    ("PIL", "decoding the CIFAR-10 JPEG tree", ("tests", "bench", "epoch")),
    ("pytest", "section (a)", ("tests",)),
    ("hardneg.train", "the trainer", ("tests", "bench", "epoch")),
    ("hardneg.cli", "the runner's command line", ("epoch",)),
    ("modalities.image", "the image adapter", ("tests", "bench", "epoch")),
)
OPTIONAL = (("triton", "torch.compile on CUDA (the fast + compile row)"),)
PIP_NAMES = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml", "torch_geometric": "torch-geometric",
             "sentence_transformers": "sentence-transformers"}
BENCH_GPU = ["--device", "cuda", "--encoder", "resnet50", "--width", "1", "--batch", "256", "--warmup", "3",
             "--path-steps", "150", "--path-seconds", "12", "--path-names", "fast", "authors", "fast-1pass",
             "fast-cudnn", "fast-compile"]
BENCH_SMOKE = ["--device", "cpu", "--encoder", "resnet10", "--width", "0.03125", "--batch", "16", "--images", "64",
               "--no-tile", "--warmup", "1", "--path-steps", "2", "--path-seconds", "5", "--path-workers", "1",
               "--no-compile", "--threads", "1"]
#: the smoke's run: a learning rate and size at which three epochs of 8 steps lower the loss clearly
EPOCH_SMOKE = ["image.train.device=cpu", "image.train.threads=1", "image.train.batch_size=32", "image.train.lr=0.003",
               "image.options.encoder=resnet10", "image.options.width=0.125", "image.options.train_subset=256",
               "image.options.test_subset=40", "image.options.probe_epochs=2", "image.options.knn_k=10"]


class Budget(Exception):
    """SIGTERM or SIGINT arrived (the wrapper's last guard): stop, keep what is done."""


def _on_signal(signum, frame):
    raise Budget(f"stopped by signal {signum}")


# ---- sections -------------------------------------------------------------------------------------
def run_section(name: str, cmd: list[str], limit: float, log_path: Path, env: dict[str, str],
                show: str | None = None) -> dict:
    """Run ``cmd`` in its own process group, output to ``log_path`` and (prefixed) stdout.

    After ``limit`` seconds the whole group is killed (TERM, then KILL after 5 s). Returns
    {name, status: ok | failed | timeout, rc, seconds, limit}.
    """
    tic = time.monotonic()
    print(f"== {name} (limit {limit:.0f} s): {show or shlex.join(cmd)}", flush=True)
    status, rc = "timeout", None
    with open(log_path, "w") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True, text=True, errors="replace")

        def pump():
            for line in proc.stdout:
                log.write(line)
                log.flush()
                print(f"  | {line}", end="", flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=max(limit, 0.1))
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            log.write(f"\n[gpu_check] {name}: killed after its limit of {limit:.0f} s\n")
        finally:
            _kill_group(proc)
            reader.join(timeout=5)
    secs = time.monotonic() - tic
    print(f"== {name}: {status} in {secs:.0f} s", flush=True)
    return {"name": name, "status": status, "rc": rc, "seconds": secs, "limit": limit}


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:                       # the leader is gone; a worker may still hold the group
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return


PREFLIGHT = r"""
import importlib, json, os, platform, sys
required, optional = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {"python": platform.python_version(), "executable": sys.executable, "missing": [], "broken": [],
       "optional_missing": []}
for key, mods in (("missing", required), ("optional_missing", optional)):
    for mod, why in mods:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            out[key].append({"module": exc.name or mod, "wanted_by": mod, "for": why})
        except Exception as exc:
            out["broken"].append({"module": mod, "wanted_by": mod, "for": why,
                                  "error": f"{type(exc).__name__}: {exc}"[:300]})
if "torch" in sys.modules:
    import torch
    out.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda=torch.cuda.is_available(),
               cpus=os.cpu_count())
    if out["cuda"]:
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_mib=p.total_memory // 2**20, capability=f"{p.major}.{p.minor}",
                   bf16=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version())
    if "triton" in sys.modules:
        out["triton"] = sys.modules["triton"].__version__
try:
    from hardneg.data import resolve_data_root
    from modalities.image.data import data_present
    root = resolve_data_root()
    ok, path, detail = data_present("cifar10", root)
    def count(split):
        d = os.path.join(path, split)
        return sum(len(os.listdir(os.path.join(d, c))) for c in os.listdir(d))
    out["data"] = {"root": str(root), "cifar10": ok, "detail": detail,
                   "files": {s: count(s) for s in ("train", "test") if os.path.isdir(os.path.join(path, s))}}
except Exception as exc:
    out["data"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
print("PREFLIGHT " + json.dumps(out))
"""


def preflight(py: str, limit: float, log: Path, env: dict[str, str]) -> tuple[dict, dict]:
    """Run the import and device check; returns (section result, facts)."""
    cmd = [py, "-c", PREFLIGHT, json.dumps([list(r[:2]) for r in REQUIRED]), json.dumps([list(o) for o in OPTIONAL])]
    res = run_section("preflight", cmd, limit, log, env, show=f"{py} -c <import, CUDA and data check>")
    facts: dict = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("PREFLIGHT "):
            facts = json.loads(line[len("PREFLIGHT "):])
    return res, facts


def missing_message(facts: dict) -> str:
    """One line per missing or broken required module, with the pip name to carry."""
    lines = []
    for m in facts.get("missing", []):
        top = m["module"].split(".")[0]
        hint = PIP_NAMES.get(top, top)
        lines.append(f"missing Python module {m['module']!r} (imported by {m['wanted_by']}, needed for "
                     f"{m['for']}): install or carry the package {hint!r}")
    for m in facts.get("broken", []):
        lines.append(f"module {m['module']!r} (needed for {m['for']}) fails to import: {m['error']}")
    return "\n".join(lines)


def junit_counts(path: Path) -> dict:
    """passed / failed / errors / skipped / xfailed (with the skip reasons) from pytest's JUnit XML."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):      # not written (killed before the end) or cut off
        return {}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    c = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    skips = list(root.iter("skipped"))
    xfailed = sum(sk.get("type") == "pytest.xfail" for sk in skips)
    reasons = sorted({(sk.get("message") or "").strip() for sk in skips if sk.get("type") != "pytest.xfail"})
    failed = [f"{tc.get('classname')}.{tc.get('name')}" for tc in root.iter("testcase")
              if tc.find("failure") is not None or tc.find("error") is not None]
    return {"passed": c["tests"] - c["failures"] - c["errors"] - c["skipped"], "failed": c["failures"],
            "errors": c["errors"], "skipped": c["skipped"] - xfailed, "xfailed": xfailed, "skip_reasons": reasons,
            "failed_tests": failed}


def epoch_result(results: Path, smoke: bool) -> dict:
    """The record of section (c) and its checks: status ok, loss falls, on CUDA (unless smoke)."""
    recs = sorted((results / "gpu-check").glob("*.json"))
    if not recs:
        return {"ok": False, "why": "no run record was written"}
    rec = json.loads(recs[0].read_text())
    out = {"record": rec, "status": rec.get("status"), "device": rec.get("device")}
    if rec.get("status") != "ok":
        err = rec.get("error") or {}
        return {**out, "ok": False, "why": f"run failed: {err.get('type')}: {err.get('message')}"}
    curves = rec.get("curves") or []
    losses = [c["loss"] for c in curves]
    metrics = {m["metric"]: m["value"] for m in rec.get("metrics", [])}
    timing = rec.get("timing", {})
    batch = rec["spec"]["train"]["batch_size"]
    out.update(losses=losses, steps=[c["steps"] for c in curves], metrics=metrics,
               peak_mb=(rec.get("memory") or {}).get("peak_mb"),
               img_s=timing.get("train_samples_per_s"), batch=batch)
    out["steps_per_s"] = out["img_s"] / batch if out["img_s"] else None
    why = []
    if len(losses) < 2 or not losses[-1] < losses[0]:
        why.append(f"the loss did not fall: {losses}")
    if not smoke and not str(rec.get("device", "")).startswith("cuda"):
        why.append(f"the run trained on {rec.get('device')}, not CUDA")
    return {**out, "ok": not why, "why": "; ".join(why)}


# ---- the table ------------------------------------------------------------------------------------
def _f(x, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def render_table(s: dict) -> str:
    """The one table of the check (Markdown), from the summary."""
    smoke = s["smoke"]
    pf = s.get("facts", {})
    rows = [("section", "check", "steps/s", "img/s", "epoch s", "peak MiB", "result")]
    dev = (f"{pf.get('gpu')}, {pf.get('gpu_mib')} MiB, cc {pf.get('capability')}, bf16 {pf.get('bf16')}"
           if pf.get("cuda") else "no CUDA")
    data = pf.get("data", {})
    files = data.get("files") or {}
    where = (f"CIFAR-10 {files.get('train', 0)} train / {files.get('test', 0)} test images under {data.get('root')}"
             if data.get("cifar10") else f"no CIFAR-10 under {data.get('root')}")
    rows.append(("preflight", (f"python {pf.get('python')}, torch {pf.get('torch')} (CUDA {pf.get('torch_cuda')}), "
                               f"{dev}, triton {pf.get('triton', 'absent')}; {where}"),
                 "", "", "", "", s["sections"]["preflight"]["verdict"]))
    t = s["sections"].get("tests", {})
    tc = t.get("counts", {})
    rows.append(("(a) tests", "pytest -m cuda tests/test_cuda.py" + (" (HARDNEG_TEST_DEVICE=cpu)" if smoke else ""),
                 "", "", "", "",
                 (f"{tc['passed']} passed, {tc['failed'] + tc['errors']} failed, {tc['skipped']} skipped, "
                  f"{tc['xfailed']} xfailed (known) in {t.get('seconds', 0):.0f} s; " if tc else "")
                 + t.get("verdict", "")))
    bench = s["sections"].get("bench", {})
    ref = next((r for r in bench.get("rows", []) if r["path"] == "authors" and r["status"] == "ok"), None)
    for r in bench.get("rows", []):
        ok = r["status"] == "ok"
        ratio = f"x{r['steps_per_s'] / ref['steps_per_s']:.2f} of authors" if ok and ref else ""
        rows.append((f"(b) {r['path']}", r["label"], _f(r.get("steps_per_s"), ".2f"), _f(r.get("img_s"), ".0f"),
                     _f(r.get("epoch_s"), ".1f"), _f(r.get("peak_mb"), ".0f"),
                     ratio if ok else f"{r['status']}: {r.get('error', '')}"))
    if not bench.get("rows") or bench.get("verdict") != "ok":
        rows.append(("(b) bench", s["bench_setting"], "", "", "", "", bench.get("verdict", "")))
    if not smoke:
        rows.append(("(b) target", (f"fast path >= {TARGET_STEPS_PER_S:g} steps/s (authors' code: "
                                    f"{AUTHORS_H200_STEPS_PER_S} on an H200)"),
                     _f(bench.get("best_fast"), ".2f"), "", "", "",
                     bench.get("target", "not measured") + (f" (best: {bench['best_fast_path']})"
                                                            if bench.get("best_fast_path") else "")))
    e = s["sections"].get("epoch", {})
    ev = e.get("result", {})
    losses = ev.get("losses") or []
    m = ev.get("metrics") or {}
    rows.append(("(c) epoch", f"hardneg run benchmarks/gpu-check.toml ({s['epoch_setting']})",
                 _f(ev.get("steps_per_s"), ".2f"), _f(ev.get("img_s"), ".0f"), "", _f(ev.get("peak_mb"), ".0f"),
                 (("loss " + " -> ".join(f"{x:.3f}" for x in losses) + "; "
                   + ", ".join(f"{k} {v:.1f}" for k, v in m.items() if not k.endswith("_best")) + "; ")
                  if losses else "") + e.get("verdict", "")))
    rows.append(("overall", "", "", "", "", "", s["overall"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# ---- pack-data ------------------------------------------------------------------------------------
def pack_data(dest: Path, data_root: Path, n_train: int, n_test: int) -> int:
    """Copy a class-balanced subset of ``data_root/cifar10/{train,test}`` (first files by name) to
    ``dest/cifar10``; returns the bytes copied."""
    src = data_root / "cifar10"
    total = 0
    for split, n in (("train", n_train), ("test", n_test)):
        if not (src / split).is_dir():
            raise SystemExit(f"gpu_check --pack-data: {src / split} is missing; it copies a CIFAR-10 ImageFolder "
                             "tree <root>/cifar10/{train,test}/<class>/*.jpg (set HARDNEG_DATA or --data-root)")
        classes = sorted(d.name for d in os.scandir(src / split) if d.is_dir())
        for i, c in enumerate(classes):
            k = n // len(classes) + (1 if i < n % len(classes) else 0)
            files = sorted(f.name for f in os.scandir(src / split / c) if f.is_file())
            if k > len(files):
                raise SystemExit(f"gpu_check --pack-data: {src / split / c} holds {len(files)} images; "
                                 f"asked for {k} (allowed: --pack-{split} <= {len(files) * len(classes)})")
            out = dest / "cifar10" / split / c
            out.mkdir(parents=True, exist_ok=True)
            for f in files[:k]:
                shutil.copyfile(src / split / c / f, out / f)
                total += (out / f).stat().st_size
    return total


# ---- main -----------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", help="folder for the table and logs (default: $OUT, else a new temp folder)")
    p.add_argument("--cpu-smoke", action="store_true", help="the same code paths on CPU at a tiny size")
    p.add_argument("--budget", type=float,
                   help="total seconds (default 450; --cpu-smoke 315); the section limits scale with it")
    p.add_argument("--data-root", help="data root for every section (default: $HARDNEG_DATA)")
    p.add_argument("--python", default=sys.executable, help="interpreter for the sections (default: this one)")
    p.add_argument("--pack-data", metavar="DIR", help="copy a CIFAR-10 subset to DIR/cifar10 and stop")
    p.add_argument("--pack-train", type=int, default=5120, help="--pack-data: training images (default 5120)")
    p.add_argument("--pack-test", type=int, default=1000, help="--pack-data: test images (default 1000)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.data_root:
        os.environ["HARDNEG_DATA"] = str(Path(args.data_root).expanduser().absolute())
    elif os.environ.get("HARDNEG_DATA"):
        os.environ["HARDNEG_DATA"] = str(Path(os.environ["HARDNEG_DATA"]).expanduser().absolute())
    if args.pack_data:
        root = Path(os.environ.get("HARDNEG_DATA") or REPO.parent / "shared" / "data")
        size = pack_data(Path(args.pack_data), root, args.pack_train, args.pack_test)
        print(f"packed {args.pack_train} train + {args.pack_test} test CIFAR-10 images ({size / 2**20:.1f} MiB) from "
              f"{root} into {Path(args.pack_data) / 'cifar10'}; on the GPU machine: "
              f"HARDNEG_DATA={args.pack_data} benchmarks/gpu_check.sh \"$OUT\" (carry the folder)")
        return 0
    previous = signal.signal(signal.SIGTERM, _on_signal)
    smoke = args.cpu_smoke
    out = Path(args.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="hardneg-gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hardneg-gpu-check-work-"))
    base = SMOKE_LIMITS if smoke else LIMITS
    budget = args.budget or sum(base.values())
    scale = budget / sum(base.values())
    limits = {k: v * scale for k, v in base.items()}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("HARDNEG_CACHE", str(work / "cache"))
    if smoke:
        env["OMP_NUM_THREADS"] = "1"
    summary: dict = {"smoke": smoke, "out": str(out), "budget_s": budget, "sections": {},
                     "bench_setting": "resnet10 x 1/32, B=16, CPU" if smoke else "resnet50, B=256, CUDA",
                     "epoch_setting": ("CPU smoke: resnet10 x 1/8, B=32, lr 3e-3, 3 epochs x 8 steps" if smoke else
                                       "resnet50, B=256, 3 epochs x 20 steps, CUDA")}
    deadline = time.monotonic() + budget
    rc = 1
    try:
        rc = _run(summary, args.python, smoke, limits, deadline, out, work, env)
    except Budget as exc:
        summary["overall"] = f"FAIL ({exc})"
    finally:
        summary.setdefault("overall", "FAIL")
        for name in ("preflight", "tests", "bench", "epoch"):
            summary["sections"].setdefault(name, {"verdict": "not run"})
        summary["seconds"] = round(time.monotonic() - (deadline - budget), 1)
        table = render_table(summary)
        (out / "table.md").write_text(table + "\n")
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        print("\n" + table, flush=True)
        print(f"\ntable, summary and logs: {out}", flush=True)
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    return rc


def _run(summary: dict, py: str, smoke: bool, limits: dict, deadline: float, out: Path, work: Path,
         env: dict) -> int:
    """Preflight, then sections (a) to (c) while the budget lasts; returns the exit status."""
    sec = summary["sections"]

    def left(name: str) -> float:
        return min(limits[name], deadline - time.monotonic())

    res, facts = preflight(py, left("preflight"), out / "preflight.log", env)
    summary["facts"] = facts
    msg = missing_message(facts)
    if msg:
        print(msg, file=sys.stderr, flush=True)
    res["verdict"] = ("FAIL: the interpreter did not report (see preflight.log)" if not facts else
                      "FAIL: " + msg.replace("\n", "; ") if msg else
                      f"FAIL: CUDA is not available (torch {facts.get('torch')}, built for CUDA "
                      f"{facts.get('torch_cuda')}); without a GPU run benchmarks/gpu_check.sh --cpu-smoke"
                      if not smoke and not facts.get("cuda") else "ok")
    sec["preflight"] = res
    if not facts or "torch" in {m["wanted_by"] for m in facts.get("missing", [])}:
        summary["overall"] = "FAIL (missing modules)" if facts else "FAIL (preflight)"
        return 2
    if not smoke and not facts.get("cuda"):
        summary["overall"] = "FAIL (no CUDA)"
        print(res["verdict"], file=sys.stderr, flush=True)
        return 3
    blocked = {s for m in facts.get("missing", []) + facts.get("broken", [])
               for r in REQUIRED if r[0] == m["wanted_by"] for s in r[2]}
    sections = (("tests", _tests), ("bench", _bench), ("epoch", _epoch))
    for name, fn in sections:
        if name in blocked:
            sec[name] = {"verdict": "FAIL: skipped, a module it needs is missing (preflight)"}
        elif deadline - time.monotonic() < 5:
            sec[name] = {"verdict": "FAIL: skipped, the total budget is spent"}
        else:
            sec[name] = fn(py, smoke, left(name), out, work, env, facts)
    passed = all(sec[n]["verdict"] == "ok" for n in ("preflight", "tests", "bench", "epoch"))
    missed = not smoke and sec["bench"].get("target") != "met"
    summary["overall"] = ("FAIL (missing modules)" if msg else "FAIL" if not passed else
                          "PASS, but the fast path missed the target" if missed else "PASS")
    return 2 if msg else 1 if not passed else 4 if missed else 0


def _tests(py: str, smoke: bool, limit: float, out: Path, work: Path, env: dict, facts: dict) -> dict:
    """(a) the CUDA-marked tests (on the CPU in the smoke)."""
    xml = work / "tests.xml"
    r = run_section("tests", [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", f"--junitxml={xml}",
                              "tests/test_cuda.py"], limit, out / "tests.log",
                    dict(env, HARDNEG_TEST_DEVICE="cpu" if smoke else "cuda"))
    r["counts"] = c = junit_counts(xml)
    good = r["status"] == "ok" and c and not c["failed"] and not c["errors"] and c["passed"] > 0
    r["verdict"] = "ok" if good else f"FAIL ({r['status']}{'; ' + ', '.join(c['failed_tests']) if c else ''})"
    return r


def _bench(py: str, smoke: bool, limit: float, out: Path, work: Path, env: dict, facts: dict) -> dict:
    """(b) the training paths side by side; rows arrive one JSON line each."""
    jsonl = work / "bench.jsonl"
    cmd = [py, "benchmarks/perf/image.py", "--paths", "--json", str(jsonl)] + (BENCH_SMOKE if smoke else BENCH_GPU)
    r = run_section("bench", cmd, limit, out / "bench.log", env)
    rows = []
    for line in jsonl.read_text().splitlines() if jsonl.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:     # a line cut off by the time limit
            pass
    r["rows"] = rows
    fast = [(x["steps_per_s"], x["path"]) for x in rows if x["path"] in FAST_PATHS and x["status"] == "ok"]
    r["best_fast"], r["best_fast_path"] = max(fast) if fast else (None, None)
    errors = [x["path"] for x in rows if x["status"] == "error"]
    good = r["status"] == "ok" and rows and not errors
    why = r["status"] + (f"; errors in {', '.join(errors)}" if errors else "")
    r["verdict"] = "ok" if good else f"FAIL ({why})"
    if not smoke:
        r["target"] = ("not measured" if r["best_fast"] is None else
                       "met" if r["best_fast"] >= TARGET_STEPS_PER_S else "NOT met")
    return r


def _epoch(py: str, smoke: bool, limit: float, out: Path, work: Path, env: dict, facts: dict) -> dict:
    """(c) the suite benchmarks/gpu-check.toml through the runner, then its record's checks."""
    data = facts.get("data", {})
    if not data.get("cifar10"):
        return {"verdict": f"FAIL: no CIFAR-10 under {data.get('root')}; copy a subset with benchmarks/gpu_check.sh "
                           "--pack-data DIR where the data is, carry DIR, and set HARDNEG_DATA=DIR (or --data-root)"}
    results = work / "results"
    cmd = [py, "-m", "hardneg.cli", "run", str(SUITE), "--results", str(results), "--no-report", "--no-progress"]
    for o in EPOCH_SMOKE if smoke else []:
        cmd += ["--set", o]
    r = run_section("epoch", cmd, limit, out / "epoch.log", env)
    ev = epoch_result(results, smoke)
    if "record" in ev:
        (out / "epoch-record.json").write_text(json.dumps(ev.pop("record"), indent=1) + "\n")
    r["result"] = ev
    r["verdict"] = "ok" if r["status"] == "ok" and ev["ok"] else f"FAIL ({r['status']}; {ev.get('why')})"
    return r


if __name__ == "__main__":
    sys.exit(main())
