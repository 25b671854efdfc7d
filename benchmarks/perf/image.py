"""Image (SimCLR) training throughput: the whole step, data + augmentation + forward + backward.

Side by side in one process, on the same model, batch and data:

* ``cpu-w0``   per-image torchvision v2 views in the main process (the reference pipeline);
* ``cpu-wN``   the same in N DataLoader worker processes;
* ``batched``  views for the whole batch with tensor ops on the device (the default).

Each line prints images/s of the full training step (next batch, both views, forward of both
views, the shared loss core's two-view hard-negative loss, backward, Adam step) and, for
reference, images/s of the view pipeline alone. With CUDA present it also times ResNet-50 at
B = 256 on CIFAR-10 (195 steps per epoch): fp32 with CPU-worker views (authors-like), then
batched views with bf16 autocast + channels-last, then the same under torch.compile, and
prints steps/s and the projected epoch time (the authors' code: 12.4 steps/s on one H200;
target >= 2x).

Usage (CPU, 1 thread, as the shared machine asks)::

    OMP_NUM_THREADS=1 python benchmarks/perf/image.py --encoder resnet18 --width 0.125 --batch 128 --steps 4
    python benchmarks/perf/image.py --gpu-only            # on a CUDA machine
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from hardneg.losses import Objective
from hardneg.spec import LossSpec
from modalities.image.augment import AugmentSpec, BatchedViewLoader, CpuViewLoader
from modalities.image.models import SimCLRModel, build_encoder


def load_images(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """n real CIFAR-10 training images (uint8) if the data root has them, else random pixels."""
    from hardneg.data import resolve_data_root
    from modalities.image.data import load_dataset, stratified_subset

    root = resolve_data_root()
    try:
        s = load_dataset("cifar10", root, log=lambda m: print(m, flush=True))
        idx = stratified_subset(s.pretrain.labels, min(n, len(s.pretrain)))
        return s.pretrain.images[idx], s.pretrain.labels[idx], f"CIFAR-10 ({root})"
    except Exception as exc:  # noqa: BLE001 - a benchmark still runs without data
        g = torch.Generator().manual_seed(0)
        return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10,
                f"random pixels ({type(exc).__name__}: data not found)")


def time_pipeline(loader, model, objective, device, steps: int, *, amp: bool = False,
                  channels_last: bool = False, sync=lambda: None) -> tuple[float, float]:
    """(images/s of whole training steps, images/s of the view pipeline alone)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    model.train()
    gen = torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield from loader.epoch(gen)

    it = batches()

    def step(batch):
        v1, v2, _ = batch
        v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
        if channels_last:
            v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = objective.two_view(model(v1), model(v2)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up (compile, cuDNN autotune, worker start)
        step(next(it))
    sync()
    t = time.perf_counter()
    n = 0
    for _ in range(steps):
        b = next(it)
        step(b)
        n += b[0].shape[0]
    sync()
    whole = n / (time.perf_counter() - t)
    t = time.perf_counter()
    n = 0
    for _ in range(steps):
        b = next(it)
        n += b[0].shape[0]
    sync()
    views = n / (time.perf_counter() - t)
    return whole, views


def cpu_section(args) -> None:
    torch.set_num_threads(args.threads)
    images, labels, source = load_images(args.images)
    device = torch.device("cpu")
    objective = Objective(LossSpec(beta=1.0, tau_plus=0.1, temperature=0.5))
    spec = AugmentSpec()
    print(f"CPU: {args.encoder} width {args.width}, batch {args.batch}, {args.steps} timed steps, "
          f"torch threads {torch.get_num_threads()}, data: {source}")
    rows = []
    configs = [("cpu-w0", lambda: CpuViewLoader(images, labels, args.batch, spec, workers=0))]
    for w in args.workers:
        configs.append((f"cpu-w{w}", lambda w=w: CpuViewLoader(images, labels, args.batch, spec, workers=w)))
    configs.append(("batched", lambda: BatchedViewLoader(images, labels, args.batch, spec, device=device)))
    for name, make in configs:
        torch.manual_seed(0)
        model = SimCLRModel(build_encoder(args.encoder, args.width))
        whole, views = time_pipeline(make(), model, objective, device, args.steps)
        rows.append((name, whole, views))
        print(f"  {name:8s}  step {whole:8.1f} img/s   views only {views:8.1f} img/s", flush=True)
    base = rows[0][1]
    print("  ratio batched / cpu-w0 (whole step): "
          f"{rows[-1][1] / base:.2f}x; views only: {rows[-1][2] / rows[0][2]:.2f}x")


def gpu_section(args) -> None:
    device = torch.device("cuda")
    images, labels, source = load_images(50000)
    objective = Objective(LossSpec(beta=1.0, tau_plus=0.1, temperature=0.5))
    spec = AugmentSpec()
    steps_per_epoch = images.shape[0] // 256
    print(f"GPU {torch.cuda.get_device_name(device)}: resnet50 width 1, B=256, {args.gpu_steps} timed steps; "
          f"data: {source}; epoch = {steps_per_epoch} steps")
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize
    configs = [
        ("fp32, cpu views (authors-like)", dict(loader="cpu", amp=False, cl=False, compile=False)),
        ("bf16 + channels_last, batched views", dict(loader="batched", amp=True, cl=True, compile=False)),
    ]
    if not args.no_compile:
        configs.append(("bf16 + channels_last + compile, batched", dict(loader="batched", amp=True, cl=True,
                                                                          compile=True)))
    for name, c in configs:
        torch.manual_seed(0)
        model = SimCLRModel(build_encoder("resnet50", 1.0)).to(device)
        if c["cl"]:
            model = model.to(memory_format=torch.channels_last)
        if c["compile"]:
            model.encoder.compile()
        loader = (CpuViewLoader(images, labels, 256, spec, workers=args.gpu_workers, pin_memory=True)
                  if c["loader"] == "cpu" else BatchedViewLoader(images, labels, 256, spec, device=device))
        whole, views = time_pipeline(loader, model, objective, device, args.gpu_steps, amp=c["amp"],
                                     channels_last=c["cl"], sync=sync)
        sps = whole / 256
        print(f"  {name:45s} {sps:6.2f} steps/s  epoch {steps_per_epoch / sps:6.1f} s  "
              f"(x{sps / 12.4:.2f} of the authors' 12.4 steps/s on H200)  views only {views:9.0f} img/s", flush=True)
        del model, loader
        torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--workers", type=int, nargs="*", default=[1])
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument("--gpu-only", action="store_true")
    p.add_argument("--gpu-steps", type=int, default=30)
    p.add_argument("--gpu-workers", type=int, default=8)
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args()
    if not args.gpu_only:
        cpu_section(args)
    if torch.cuda.is_available():
        gpu_section(args)
    else:
        print("GPU: CUDA not available here; the ResNet-50 B=256 epoch-time section was not run")


if __name__ == "__main__":
    main()
