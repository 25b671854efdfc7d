"""Image (SimCLR) training throughput: the whole step, data + augmentation + forward + backward.

Three modes, each side by side in one process on the same batch and data:

``python benchmarks/perf/image.py`` (default): the view pipelines on CPU, one model:

* ``cpu-w0``   per-image torchvision v2 views in the main process (the reference pipeline);
* ``cpu-wN``   the same in N DataLoader worker processes;
* ``batched``  views for the whole batch with tensor ops on the device (the default).

``--table``: the CPU throughput table that chooses an encoder for a CPU budget. For each
encoder x width (default resnet10/resnet18 at 1/8 and 1/4 width): images/s of the whole
training step at B = 256 with batched views on one thread (flush-to-zero on, as the trainer
trains), by the wall clock and per second of the process's CPU time, CPU-seconds per epoch of
50,000 images, and the epochs that fit ``--minutes`` CPU-minutes per run (training steps only;
evaluation comes on top). CPU time is the unit because the shared machine's other jobs stretch
the wall clock; the ``wall/CPU`` column says by how much.

``--paths``: the training paths on one device (default CUDA, ResNet-50 at B = 256, the
paper's setting), one process and one GPU, the authors' setting against hardneg's fast path:

* ``authors``       fp32 (PyTorch defaults, so cuDNN convolutions in TF32), NCHW, two encoder
                    passes, per-image CPU views in DataLoader workers (12 as in the authors' code,
                    pinned memory);
* ``fast``          bf16 autocast, channels-last, batched views on the device, two passes;
* ``fast-1pass``    the same with both views in one encoder pass (shared BatchNorm statistics:
                    a different training, listed for its speed only);
* ``fast-cudnn``    ``fast`` with ``torch.backends.cudnn.benchmark`` on (neither the authors' code
                    nor the trainer turns it on; every other row runs with it off);
* ``fast-compile``  ``fast`` with the encoder under ``torch.compile`` (as the adapter's
                    ``compile`` option does).

Every step is what ``hardneg.train`` does for an image run: next batch, both views (to the
device, channels-last when asked), two projections, the loss core's two-view hard-negative
loss (beta 1, tau+ 0.1, t 0.5), backward, Adam, and the trainer's one host sync per step
(``float(loss)``; the authors' code syncs likewise with ``loss.item()``). A row prints steps/s
and images/s of whole steps, the projected CIFAR-10 epoch (195 steps of 256), images/s of the
view pipeline alone (timed on a fresh epoch), and peak GPU memory
(``torch.cuda.max_memory_allocated``, reset per row). Steps are timed after ``--warmup`` steps
(cuDNN autotuning, compilation, worker start) for at most ``--path-steps`` steps or
``--path-seconds`` seconds, whichever comes first. The images are tiled to 50,000 so that
the CPU loader's epoch (and its worker restart) is CIFAR-10's. The authors' code measured
12.4 steps/s on one H200; the target for the fast path is >= 31. ``--json FILE`` appends one
JSON line per row as it finishes (``benchmarks/gpu_check.py`` reads them).

Usage (CPU, 1 thread, as the shared machine asks)::

    OMP_NUM_THREADS=1 python benchmarks/perf/image.py --encoder resnet18 --width 0.125 --batch 128 --steps 4
    nice -n 10 python benchmarks/perf/image.py --table [--minutes 55]
    python benchmarks/perf/image.py --paths                      # on a CUDA machine
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from hardneg.objective import Objective
from hardneg.spec import LossSpec, TrainSpec
from hardneg.record import processor_kind as device_description
from hardneg.train import training_numerics
from modalities.image.augment import AugmentSpec, BatchedViewLoader, CpuViewLoader
from modalities.image.models import SimCLRModel, build_encoder

CIFAR10_TRAIN = 50_000
TABLE_SETTINGS = (("resnet10", 0.125), ("resnet18", 0.125), ("resnet10", 0.25), ("resnet18", 0.25))
PATHS = {
    "authors": dict(label="authors: fp32, two passes, per-image CPU views", loader="cpu", amp=False, cl=False,
                    one_pass=False, compile=False),
    "fast": dict(label="fast: bf16 + channels-last, batched views", loader="batched", amp=True, cl=True,
                 one_pass=False, compile=False),
    "fast-1pass": dict(label="fast, one pass (shared BN; speed only)", loader="batched", amp=True, cl=True,
                       one_pass=True, compile=False),
    "fast-cudnn": dict(label="fast + cudnn.benchmark (not the trainer's default)", loader="batched", amp=True,
                       cl=True, one_pass=False, compile=False, cudnn_benchmark=True),
    "fast-compile": dict(label="fast + torch.compile", loader="batched", amp=True, cl=True, one_pass=False,
                         compile=True),
}


def load_images(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Up to n real CIFAR-10 training images (uint8; a stratified subset, only those decoded), all
    of them if the data root holds fewer, else n random-pixel images."""
    from hardneg.data import resolve_data_root
    from hardneg.errors import ConfigError
    from modalities.image.data import Subsets, load_dataset

    root = resolve_data_root()
    try:
        try:
            s = load_dataset("cifar10", root, subsets=Subsets(train_subset=n, test_subset=10), log=lambda m: None)
        except ConfigError:  # fewer than n images there (a packed subset): take them all
            s = load_dataset("cifar10", root, subsets=Subsets(test_subset=10), log=lambda m: None)
        return s.pretrain.images, s.pretrain.labels, f"CIFAR-10, {len(s.pretrain)} images ({s.source})"
    except Exception as exc:  # noqa: BLE001 - a benchmark still runs without data
        g = torch.Generator().manual_seed(0)
        return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10,
                f"random pixels ({type(exc).__name__}: no CIFAR-10 under {root})")


def tile(images: torch.Tensor, labels: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The images repeated to n rows (timing only: an epoch of the CPU loader as long as CIFAR-10's)."""
    reps = math.ceil(n / images.shape[0])
    return images.repeat(reps, 1, 1, 1)[:n], labels.repeat(reps)[:n]


def time_pipeline(loader, model, objective, device, steps: int, *, amp: bool = False, channels_last: bool = False,
                  one_pass: bool = False, warmup: int = 2, max_seconds: float = math.inf,
                  view_steps: int | None = None, view_skip: int = 0) -> dict[str, float]:
    """Time whole training steps, then the view pipeline alone.

    The views alone are timed on a fresh epoch after ``view_skip`` batches (a worker pool's
    start), so that batches queued up during the training steps do not count. Returns steps
    and seconds timed, img_s (images/s of whole steps, wall clock), img_cpu_s (images per second
    of this process's CPU time, all its threads), views_img_s (images/s of the loader alone) and
    warmup_s (seconds of the warm-up steps).
    """
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    model.train()
    gen = torch.Generator().manual_seed(0)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def batches():
        while True:
            yield from loader.epoch(gen)

    it = batches()

    def step(batch) -> float:
        v1, v2, _ = batch
        v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
        if channels_last:
            v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            z1, z2 = model(torch.cat([v1, v2])).chunk(2) if one_pass else (model(v1), model(v2))
            loss = objective.two_view(z1, z2).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())  # the trainer's one host sync per step

    t = time.perf_counter()
    for _ in range(warmup):
        step(next(it))
    sync()
    warm = time.perf_counter() - t

    def timed(fn, n_steps: int) -> tuple[int, int, float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        k = images = 0
        while k < n_steps:
            images += fn()
            k += 1
            if time.perf_counter() - t0 >= max_seconds:
                break
        sync()
        return k, images, time.perf_counter() - t0, time.process_time() - c0

    def train_step() -> int:
        b = next(it)
        step(b)
        return b[0].shape[0]

    k, n, secs, cpu = timed(train_step, steps)
    it.close()                    # ends a worker pool and its queue
    it = batches()
    for _ in range(view_skip):
        next(it)

    def view_step() -> int:
        return next(it)[0].shape[0]

    _, nv, vsecs, _ = timed(view_step, view_steps if view_steps is not None else steps)
    it.close()
    return {"steps": k, "seconds": secs, "cpu_seconds": cpu, "img_s": n / secs, "img_cpu_s": n / max(cpu, 1e-9),
            "views_img_s": nv / vsecs if nv else math.nan, "warmup_s": warm}


# ---------------------------------------------------------------------------------------
# default mode: the view pipelines on CPU
def cpu_section(args) -> None:
    torch.set_num_threads(args.threads)
    encoder, width, batch = args.encoder or "resnet18", args.width or 0.125, args.batch or 128
    images, labels, source = load_images(args.images or 2048)
    device = torch.device("cpu")
    objective = Objective(LossSpec(beta=1.0, tau_plus=0.1, temperature=0.5))
    spec = AugmentSpec()
    print(f"CPU: {encoder} width {width}, batch {batch}, {args.steps} timed steps, "
          f"torch threads {torch.get_num_threads()}, data: {source}")
    rows = []
    configs = [("cpu-w0", lambda: CpuViewLoader(images, labels, batch, spec, workers=0))]
    for w in args.workers:
        configs.append((f"cpu-w{w}", lambda w=w: CpuViewLoader(images, labels, batch, spec, workers=w)))
    configs.append(("batched", lambda: BatchedViewLoader(images, labels, batch, spec, device=device)))
    for name, make in configs:
        torch.manual_seed(0)
        model = SimCLRModel(build_encoder(encoder, width))
        r = time_pipeline(make(), model, objective, device, args.steps)
        rows.append((name, r["img_s"], r["views_img_s"]))
        print(f"  {name:8s}  step {r['img_s']:8.1f} img/s   views only {r['views_img_s']:8.1f} img/s", flush=True)
    print("  ratio batched / cpu-w0 (whole step): "
          f"{rows[-1][1] / rows[0][1]:.2f}x; views only: {rows[-1][2] / rows[0][2]:.2f}x")


# ---------------------------------------------------------------------------------------
# --table: choose an encoder for a CPU budget
def parse_setting(text: str) -> tuple[str, float]:
    """'resnet10x0.125' -> ('resnet10', 0.125)."""
    name, sep, width = text.partition("x")
    try:
        if not sep:
            raise ValueError
        return name, float(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"setting {text!r} is malformed; allowed: ENCODERxWIDTH, "
                                         "e.g. resnet10x0.125") from None


def throughput_table(args) -> list[dict[str, float]]:
    """Print (and return) the CPU throughput table; see the module docstring."""
    torch.set_num_threads(args.threads)
    batch = args.batch or 256
    device = torch.device("cpu")
    images, labels, source = load_images(max(args.images or 2048, 2 * batch))
    objective = Objective(LossSpec(beta=1.0, tau_plus=0.1, temperature=0.5))
    budget = args.minutes * 60.0
    print(f"CPU throughput table: whole training step (batched views, two encoder passes, hard loss, backward, "
          f"Adam), B = {batch}, {torch.get_num_threads()} thread(s), flush-to-zero as in training, "
          f"{args.table_steps} timed steps after {args.warmup} warm-up; {device_description(device)}; "
          f"data: {source}")
    head = (f"  {'encoder':<18} {'features':>8} {'img/s':>7} {'img/CPU-s':>9} {'CPU-s / epoch of 50k':>20} "
            f"{f'epochs in {args.minutes:g} CPU-min':>22} {'wall/CPU':>8}")
    print(head, flush=True)
    rows = []
    for name, width in args.settings or TABLE_SETTINGS:
        torch.manual_seed(0)
        model = SimCLRModel(build_encoder(name, width))
        loader = BatchedViewLoader(images, labels, batch, AugmentSpec(), device=device)
        with training_numerics(TrainSpec(), device):
            r = time_pipeline(loader, model, objective, device, args.table_steps, warmup=args.warmup,
                              view_steps=0)
        per_epoch = CIFAR10_TRAIN / r["img_cpu_s"]
        row = {"encoder": name, "width": width, "features": model.feature_dim, "img_s": r["img_s"],
               "img_cpu_s": r["img_cpu_s"], "cpu_s_per_epoch": per_epoch, "epochs": int(budget // per_epoch),
               "wall_per_cpu": r["seconds"] / max(r["cpu_seconds"], 1e-9)}
        rows.append(row)
        print(f"  {name + ' x ' + format(width, 'g'):<18} {row['features']:>8} {row['img_s']:>7.0f} "
              f"{row['img_cpu_s']:>9.0f} {per_epoch:>20.0f} {row['epochs']:>22} {row['wall_per_cpu']:>8.2f}",
              flush=True)
    print(f"  (CPU-s: this process's CPU time, so the figures hold for a core of one's own even on a shared "
          f"machine; wall/CPU above 1 means it waited for a core. Epochs: training steps only, "
          f"{CIFAR10_TRAIN:,} images an epoch; evaluation comes on top)")
    return rows


# ---------------------------------------------------------------------------------------
# --paths: the authors' setting against the fast path
def path_rows(args) -> list[dict]:
    """Time each of ``args.path_names`` (keys of PATHS); print a line and append a JSON row per path."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(args.threads)
    encoder, width, batch = args.encoder or "resnet50", args.width or 1.0, args.batch or 256
    images, labels, source = load_images(args.images or CIFAR10_TRAIN)
    images, labels = tile(images, labels, max(CIFAR10_TRAIN, 2 * batch) if args.tile else images.shape[0])
    objective = Objective(LossSpec(beta=1.0, tau_plus=0.1, temperature=0.5))
    spec = AugmentSpec()
    steps_per_epoch = CIFAR10_TRAIN // batch
    workers = args.path_workers if args.path_workers is not None else max(1, min(12, (os.cpu_count() or 2) - 1))
    print(f"paths on {device_description(device)}: {encoder} x {width:g}, B = {batch}, warm-up {args.warmup} steps, "
          f"then at most {args.path_steps} steps or {args.path_seconds:g} s; data: {source}; CPU views: {workers} "
          f"workers; epoch = {steps_per_epoch} steps", flush=True)
    rows = []
    for name in args.path_names:
        c = PATHS[name]
        label = c["label"] + (f" ({workers} workers)" if c["loader"] == "cpu" else "")
        row = {"path": name, "label": label, "device": device_description(device), "encoder": encoder,
               "width": width, "batch": batch, "status": "ok"}
        if c["compile"] and args.no_compile:
            row.update(status="skipped", error="--no-compile")
        else:
            try:
                row.update(_time_path(c, device, encoder, width, batch, images, labels, spec, objective, workers,
                                      args))
                sps = row["img_s"] / batch
                row.update(steps_per_s=sps, epoch_s=steps_per_epoch / sps)
            except Exception as exc:  # noqa: BLE001 - one path failing must not lose the others
                row.update(status="error", error=f"{type(exc).__name__}: {exc}"[:500])
            finally:
                if cuda:
                    torch.cuda.empty_cache()
        rows.append(row)
        _print_path(row)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    return rows


def _time_path(c: dict, device, encoder, width, batch, images, labels, spec, objective, workers, args) -> dict:
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = SimCLRModel(build_encoder(encoder, width)).to(device)
    if c["cl"]:
        model = model.to(memory_format=torch.channels_last)
    if c["compile"]:
        model.encoder.compile()
    if c["loader"] == "cpu":
        loader = CpuViewLoader(images, labels, batch, spec, workers=workers, pin_memory=cuda)
    else:
        loader = BatchedViewLoader(images, labels, batch, spec, device=device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    torch.backends.cudnn.benchmark = c.get("cudnn_benchmark", False)
    try:
        r = time_pipeline(loader, model, objective, device, args.path_steps, amp=c["amp"], channels_last=c["cl"],
                          one_pass=c["one_pass"], warmup=args.warmup + (2 if c["compile"] else 0),
                          max_seconds=args.path_seconds, view_steps=max(1, args.path_steps // 3),
                          view_skip=workers if c["loader"] == "cpu" else 0)
    finally:
        torch.backends.cudnn.benchmark = False
    r["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return r


def _print_path(row: dict) -> None:
    if row["status"] != "ok":
        print(f"  {row['label']:58s} {row['status']}: {row.get('error')}", flush=True)
        return
    peak = f"{row['peak_mb']:8.0f} MiB" if row.get("peak_mb") is not None else "     n/a"
    print(f"  {row['label']:58s} {row['steps_per_s']:7.2f} steps/s  {row['img_s']:8.0f} img/s  epoch "
          f"{row['epoch_s']:7.1f} s  peak {peak}  views only {row['views_img_s']:9.0f} img/s  "
          f"({row['steps']} steps in {row['seconds']:.1f} s after {row['warmup_s']:.1f} s warm-up)", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--table", action="store_true", help="the CPU throughput table (encoder choice)")
    mode.add_argument("--paths", action="store_true", help="the authors' setting against the fast path")
    p.add_argument("--encoder", help="default: resnet18 (CPU pipelines), resnet50 (--paths)")
    p.add_argument("--width", type=float, help="default: 0.125 (CPU pipelines), 1 (--paths)")
    p.add_argument("--batch", type=int, help="default: 128 (CPU pipelines), 256 (--table, --paths)")
    p.add_argument("--steps", type=int, default=4, help="timed steps (CPU pipelines)")
    p.add_argument("--images", type=int, help="images to load (default 2048; --paths: 50,000)")
    p.add_argument("--workers", type=int, nargs="*", default=[1], help="DataLoader workers (CPU pipelines)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--settings", type=parse_setting, nargs="*", metavar="ENCODERxWIDTH",
                   help="--table settings (default: resnet10x0.125 resnet18x0.125 resnet10x0.25 resnet18x0.25)")
    p.add_argument("--minutes", type=float, default=55.0, help="--table: CPU-minutes per run (default 55)")
    p.add_argument("--table-steps", type=int, default=6, help="--table: timed steps per setting")
    p.add_argument("--device", default="cuda", help="--paths: device (default cuda)")
    p.add_argument("--path-names", nargs="*", default=list(PATHS), choices=list(PATHS), metavar="PATH",
                   help=f"--paths: which paths, in order ({', '.join(PATHS)})")
    p.add_argument("--path-steps", type=int, default=150, help="--paths: at most this many timed steps a path")
    p.add_argument("--path-seconds", type=float, default=12.0, help="--paths: at most this long timed a path")
    p.add_argument("--path-workers", type=int, help="--paths: CPU-view workers (default 12, at most cores - 1)")
    p.add_argument("--no-tile", dest="tile", action="store_false", help="--paths: do not tile the images to 50k")
    p.add_argument("--no-compile", action="store_true", help="--paths: skip the torch.compile path")
    p.add_argument("--json", help="--paths: append one JSON line per path to this file")
    args = p.parse_args(argv)
    if args.table:
        throughput_table(args)
    elif args.paths:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        path_rows(args)
    else:
        cpu_section(args)
        if torch.cuda.is_available():
            args.device = "cuda"
            path_rows(args)
        else:
            print("GPU: CUDA not available here; the ResNet-50 B = 256 paths (--paths) were not run")


if __name__ == "__main__":
    main()
