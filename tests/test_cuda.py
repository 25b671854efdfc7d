"""The GPU path: the loss core, the batched views, an image training step and the trainer on CUDA.

Marked ``cuda`` (``pytest -m cuda``; section (a) of ``benchmarks/gpu_check.sh``); without a CUDA
device every test here skips. ``HARDNEG_TEST_DEVICE=cpu`` runs the same tests on the CPU: the
device-against-CPU comparisons are then trivially true, but every line of the tests runs, which
is how the GPU check's CPU smoke keeps them from rotting between GPU runs.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from hardneg import contrastive_loss, hard_negative_loss, jsd_loss
from hardneg.adapters import open_run
from hardneg.spec import LossSpec, RunSpec, TrainSpec
from hardneg.context import resolve_device
from hardneg.train import execute, train
from modalities.image import ImageAdapter
from modalities.image import augment as A
from modalities.image.models import SimCLRModel, build_encoder

DEV = torch.device(os.environ.get("HARDNEG_TEST_DEVICE", "cuda"))
ON_CUDA = DEV.type == "cuda"
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(),
                                 reason="needs a CUDA device (HARDNEG_TEST_DEVICE=cpu runs these tests on the CPU)")]
CIFAR = Path(os.environ.get("HARDNEG_DATA", "")) / "cifar10"
needs_cifar = pytest.mark.skipif(not (CIFAR / "train").is_dir(), reason=f"CIFAR-10 tree not found at {CIFAR}")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))


def _views(b: int = 256, d: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g)
    return z1, z1 + 0.5 * torch.randn(b, d, generator=g)


# ---------------------------------------------------------------------------------------
# the loss core
LOSS_CASES = [(0.0, 0.0, 0.5), (0.0, 0.1, 0.5), (1.0, 0.1, 0.5), (6.0, 0.1, 0.5), (1.0, 0.1, 0.1), (20.0, 0.1, 0.05)]


@pytest.mark.parametrize("beta,tau,t", LOSS_CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_two_view_core_on_device_matches_float64_on_cpu(beta, tau, t, dtype):
    """The fused two-view core on the device from bf16 / fp32 / fp64 projections against float64 on
    the CPU from the very same (rounded) inputs: it computes in float32 (float64 stays float64), so
    only float32 rounding separates the two; the gradients arrive in the inputs' dtype."""
    z1, z2 = (z.to(dtype) for z in _views())
    d1, d2 = (z.clone().to(DEV).requires_grad_(True) for z in (z1, z2))
    c1, c2 = (z.double().requires_grad_(True) for z in (z1, z2))
    kw = dict(beta=beta, tau_plus=tau, temperature=t, reduction="none")
    ours, ref = hard_negative_loss(d1, d2, **kw), hard_negative_loss(c1, c2, **kw)
    assert ours.device.type == DEV.type
    assert ours.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    w = torch.linspace(0.5, 1.5, ref.shape[0], dtype=torch.float64)
    (ours * w.to(DEV, ours.dtype)).sum().backward()
    (ref * w).sum().backward()
    rtol = 1e-10 if dtype == torch.float64 else 5e-5
    torch.testing.assert_close(ours.detach().double().cpu(), ref.detach(), rtol=rtol, atol=0.0)
    gtol = {torch.float64: 1e-9, torch.float32: 2e-5, torch.bfloat16: 1.5e-2}[dtype]
    for got, want in ((d1.grad, c1.grad), (d2.grad, c2.grad)):
        assert got.dtype == dtype and torch.isfinite(got).all()
        assert float((got.double().cpu() - want).abs().max() / want.abs().max()) < gtol


def test_general_core_and_jsd_on_device_match_float64_on_cpu():
    """Score-matrix form (several positives, a data-driven floor, cosine hardness) and the JSD form."""
    g = torch.Generator().manual_seed(1)
    a, c = 96, 160
    scores = torch.nn.functional.normalize(torch.randn(a, 32, generator=g), dim=1) @ \
        torch.nn.functional.normalize(torch.randn(c, 32, generator=g), dim=1).T
    perm = torch.stack([torch.randperm(c, generator=g) for _ in range(a)])
    pos = torch.zeros(a, c, dtype=torch.bool).scatter_(1, perm[:, :2], True)
    neg = (~pos).scatter_(1, perm[:, 2:3], False)
    runs = [lambda s, p, n: contrastive_loss(s, p, n, beta=2.0, tau_plus=0.1, temperature=0.2, reduction="none"),
            lambda s, p, n: contrastive_loss(s, p, n, beta=1.0, tau_plus=0.2, temperature=0.5, min_score=None,
                                             hardness="cosine", multi_positive="mean", reduction="none"),
            lambda s, p, n: jsd_loss(s, p, n, beta=1.0, tau_plus=0.1, reduction="none")]
    for fn in runs:
        s_dev = scores.clone().to(DEV).requires_grad_(True)
        s_ref = scores.double().requires_grad_(True)
        ours, ref = fn(s_dev, pos.to(DEV), neg.to(DEV)), fn(s_ref, pos, neg)
        torch.testing.assert_close(ours.detach().double().cpu(), ref.detach(), rtol=5e-5, atol=1e-6)
        ours.sum().backward()
        ref.sum().backward()
        assert float((s_dev.grad.double().cpu() - s_ref.grad).abs().max() / s_ref.grad.abs().max()) < 2e-5


@pytest.mark.parametrize("beta,tau,t", LOSS_CASES)
def test_loss_under_bf16_autocast_is_finite_and_near_float64(beta, tau, t):
    """What a training step sees: float32 projections, the loss inside ``torch.autocast(bf16)``."""
    z1, z2 = (z.to(DEV) for z in _views())
    with torch.autocast(DEV.type, dtype=torch.bfloat16):
        ours = hard_negative_loss(z1, z2, beta=beta, tau_plus=tau, temperature=t, reduction="none")
    ref = hard_negative_loss(*(z.double().cpu() for z in (z1, z2)), beta=beta, tau_plus=tau, temperature=t,
                             reduction="none")
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    assert float((ours.double().cpu() - ref).abs().max()) < 0.1      # bf16 logits: 8 significant bits


@pytest.mark.xfail(strict=True, reason="the fused two-view core's matmul (addmm/bmm) is on autocast's bf16 list, so "
                   "under torch.autocast the core works on bf16 logits (loss off by ~1e-2 at B=256, t=0.5) although "
                   "the docs promise float32 whatever the input; fix in hardneg/losses: autocast off inside the core")
def test_loss_core_computes_in_float32_under_autocast():
    z1, z2 = (z.to(DEV) for z in _views())
    with torch.autocast(DEV.type, dtype=torch.bfloat16):
        ours = hard_negative_loss(z1, z2, beta=1.0, tau_plus=0.1, temperature=0.5)
    ref = hard_negative_loss(z1, z2, beta=1.0, tau_plus=0.1, temperature=0.5)
    torch.testing.assert_close(ours, ref, rtol=5e-5, atol=0.0)


# ---------------------------------------------------------------------------------------
# the batched views on the device
def _ops(x, boxes, flip, f, hue, sigma) -> dict[str, torch.Tensor]:
    y = A.crop_resize(x, boxes, 32, flip)
    return {"crop+flip": y, "brightness": A.adjust_brightness(y, f), "contrast": A.adjust_contrast(y, f),
            "saturation": A.adjust_saturation(y, f), "hue": A.adjust_hue(y, hue), "grayscale": A.grayscale(y),
            "blur": A.gaussian_blur3(y, sigma), "normalize": A.normalize(y, A.CIFAR10_MEAN, A.CIFAR10_STD)}


def test_batched_view_ops_on_device_equal_their_cpu_results():
    g = torch.Generator().manual_seed(0)
    n = 64
    args = (torch.rand(n, 3, 40, 36, generator=g),                      # a non-square input, shrunk and enlarged
            A.sample_crop_boxes(n, 40, 36, (0.08, 1.0), (3 / 4, 4 / 3), g),
            torch.rand(n, generator=g) < 0.5, 0.6 + 0.8 * torch.rand(n, generator=g),
            0.2 * torch.rand(n, generator=g) - 0.1, 0.1 + 1.9 * torch.rand(n, generator=g))
    cpu = _ops(*args)
    dev = _ops(*(a.to(DEV) for a in args))
    for name, want in cpu.items():
        assert dev[name].device.type == DEV.type
        torch.testing.assert_close(dev[name].cpu(), want, rtol=1e-5, atol=2e-5, msg=lambda m, name=name: f"{name}: {m}")


def _view_stats(views: torch.Tensor) -> torch.Tensor:
    """Per view: channel means and stds, grey (all channels equal)."""
    v = views.float().cpu()
    gray = ((v[:, 0] - v[:, 1]).abs().amax(dim=(1, 2)) < 1e-6) & ((v[:, 1] - v[:, 2]).abs().amax(dim=(1, 2)) < 1e-6)
    return torch.cat([v.mean(dim=(2, 3)), v.std(dim=(2, 3)), gray[:, None].float()], dim=1)


def _agree(a: torch.Tensor, b: torch.Tensor, sigmas: float = 4.5) -> None:
    se = ((a.var(0) + b.var(0)) / a.shape[0]).sqrt()
    diff = (a.mean(0) - b.mean(0)).abs()
    assert (diff < sigmas * se + 1e-4).all(), (diff, se)


def test_batched_views_on_device_have_the_cpu_distribution():
    """Views made on the device (device generator) against views made on the CPU: crop geometry and
    flips from a coordinate-ramp image, colour statistics and the grey share from real or random images."""
    spec = A.AugmentSpec(normalize=False)
    make = A.BatchedViews(spec)
    n = 8000 if ON_CUDA else 1500         # the CPU run only exercises the test
    ramp = torch.linspace(0, 255, 32).round().to(torch.uint8)
    img = torch.stack([ramp[None, :].expand(32, 32), ramp[:, None].expand(32, 32),
                       torch.full((32, 32), 128, dtype=torch.uint8)])
    geo = A.BatchedViews(A.AugmentSpec(jitter_p=0.0, gray_p=0.0, blur_p=0.0, normalize=False))
    views = {}
    for where in ("cpu", "dev"):
        d = DEV if where == "dev" else torch.device("cpu")
        v = geo(img.to(d)[None].expand(n, -1, -1, -1), torch.Generator(device=d).manual_seed(len(views) + 1))
        assert v.device.type == d.type
        r, gch = v[:, 0].cpu(), v[:, 1].cpu()
        area = (r.amax(dim=(1, 2)) - r.amin(dim=(1, 2))) * (gch.amax(dim=(1, 2)) - gch.amin(dim=(1, 2)))
        flipped = (r[:, :, 0].mean(1) > r[:, :, -1].mean(1)).float()
        views[where] = torch.stack([area, flipped], dim=1)
    _agree(views["dev"], views["cpu"])
    assert abs(float(views["dev"][:, 1].mean()) - 0.5) < 0.03
    if (CIFAR / "train").is_dir():
        import numpy as np
        from PIL import Image

        files = [CIFAR / "train" / c / min(os.listdir(CIFAR / "train" / c)) for c in ("airplane", "cat", "frog")]
        images = [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).contiguous() for f in files]
    else:
        images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(k))
                  for k in range(3)]
    for k, im in enumerate(images):
        a = _view_stats(make(im.to(DEV)[None].expand(n, -1, -1, -1), torch.Generator(device=DEV).manual_seed(10 + k)))
        b = _view_stats(make(im[None].expand(n, -1, -1, -1), torch.Generator().manual_seed(20 + k)))
        _agree(a, b)
        assert 0.15 < float(a[:, -1].mean()) < 0.26          # grayscale at p = 0.2 (plus rare grey crops)


def test_batched_view_loader_on_device():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (80, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(80) % 4
    loader = A.BatchedViewLoader(imgs, labels, 32, device=DEV)
    e0, e1 = (list(loader.epoch(torch.Generator().manual_seed(3))) for _ in range(2))
    assert len(e0) == 2                                             # drop last
    v1, v2, y = e0[0]
    assert v1.device.type == DEV.type and y.device.type == DEV.type
    assert v1.dtype == torch.float32 and v1.shape == (32, 3, 32, 32) and torch.isfinite(v1).all()
    assert not torch.equal(v1, v2)
    assert all(torch.equal(p, q) for b0, b1 in zip(e0, e1) for p, q in zip(b0, b1))   # same seed, same views
    cpu = list(A.BatchedViewLoader(imgs, labels, 32).epoch(torch.Generator().manual_seed(3)))
    assert all(torch.equal(b[2].cpu(), c[2]) for b, c in zip(e0, cpu))   # the batch order comes from the CPU generator
    # normalised views: roughly zero mean, unit spread
    allv = torch.cat([b[0] for b in e0]).float()
    assert abs(float(allv.mean())) < 0.5 and 0.5 < float(allv.std()) < 2.0


# ---------------------------------------------------------------------------------------
# an image training step: bf16 autocast + channels-last
def test_image_step_bf16_channels_last_on_device():
    torch.manual_seed(0)
    model = SimCLRModel(build_encoder("resnet10", 0.25)).to(DEV)
    ref = copy.deepcopy(model)                                      # fp32, NCHW: the same weights
    model = model.to(memory_format=torch.channels_last)
    assert model.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    imgs = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    v1, v2, _ = next(iter(A.BatchedViewLoader(imgs, torch.zeros(64, dtype=torch.long), 64, device=DEV)
                          .epoch(torch.Generator().manual_seed(0))))
    c1, c2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
    kw = dict(beta=1.0, tau_plus=0.1, temperature=0.5)

    def loss_bf16(m):
        with torch.autocast(DEV.type, dtype=torch.bfloat16):
            z1, z2 = m(c1), m(c2)
            assert z1.dtype == torch.bfloat16
            return hard_negative_loss(z1, z2, **kw)

    loss = loss_bf16(model)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    want = hard_negative_loss(ref(v1), ref(v2), **kw)
    want.backward()
    assert abs(float(loss.detach()) - float(want.detach())) < 0.05
    grads = [(p.grad, q.grad) for p, q in zip(model.parameters(), ref.parameters())]
    assert all(g is not None and torch.isfinite(g).all() for g, _ in grads)
    a = torch.cat([g.float().flatten() for g, _ in grads])
    b = torch.cat([h.float().flatten() for _, h in grads])
    assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.9
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):                                           # the fixed batch is learnt
        opt.zero_grad(set_to_none=True)
        loss = loss_bf16(model)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 0.05, losses


# ---------------------------------------------------------------------------------------
# the trainer's device handling
def _tree(dst: Path, train: int, test: int, classes=("bird", "cat", "dog", "ship")) -> Path:
    for split, k in (("train", train), ("test", test)):
        for c in classes:
            (dst / split / c).mkdir(parents=True)
            for f in sorted(os.listdir(CIFAR / split / c))[:k]:
                shutil.copyfile(CIFAR / split / c / f, dst / split / c / f)
    return dst


def _spec(root: Path, train: dict | None = None, options: dict | None = None) -> RunSpec:
    t = {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 2, "device": str(DEV), **(train or {})}
    opts = {"encoder": "resnet10", "width": 0.0625, "probe_epochs": 2, "knn_k": 5, **(options or {})}
    return RunSpec("image", f"folder:{root}", loss=LossSpec(beta=1.0, tau_plus=0.1), train=TrainSpec(**t),
                   options=opts)


def test_resolve_device():
    assert resolve_device(str(DEV)).type == DEV.type
    if ON_CUDA:
        assert resolve_device("auto").type == "cuda"
        assert resolve_device("cuda:0") == torch.device("cuda", 0)


@needs_cifar
@pytest.mark.parametrize("pipeline", ["batched", "cpu"])
def test_execute_on_device_records_device_and_memory(tmp_path, pipeline):
    root = _tree(tmp_path / "c10", 8, 3)
    rec = execute(_spec(root, options={"pipeline": pipeline, "workers": 2 if pipeline == "cpu" else 0}),
                  data_root=tmp_path, log=lambda m: None)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["device"].startswith(f"{DEV.type}:")
    assert rec["memory"]["kind"] == ("cuda_max_allocated" if ON_CUDA else "process_max_rss")
    assert rec["memory"]["peak_mb"] > 0
    assert [c["steps"] for c in rec["curves"]] == [2, 2] and all(c["loss"] == c["loss"] for c in rec["curves"])
    assert {m["metric"] for m in rec["metrics"]} == {"linear_top1", "knn_top1"}


@needs_cifar
@pytest.mark.parametrize("amp", ["auto", "off", "bf16"])
def test_trainer_places_batches_and_autocasts_on_device(tmp_path, amp):
    """Batches reach the model on the device (channels-last on CUDA by default); the forward runs in
    bf16 under ``amp='auto'`` on CUDA and under 'bf16', in float32 under 'off' (and 'auto' on CPU)."""
    from hardneg.objective import Objective

    root = _tree(tmp_path / "c10", 8, 2)
    spec = _spec(root, train={"amp": amp, "epochs": 1})
    ad = ImageAdapter()
    run = open_run(ad, spec, data_root=tmp_path, cache_dir=tmp_path, device=DEV, log=lambda m: None)
    ad.prepare(run)
    assert run.extra["channels_last"] is ON_CUDA
    model = ad.build_model(run)
    assert next(model.parameters()).device.type == DEV.type
    seen = []
    model.encoder.conv1.register_forward_pre_hook(
        lambda mod, inp: seen.append((inp[0].device.type, inp[0].is_contiguous(memory_format=torch.channels_last))))
    model.head.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    out = train(ad, model, run, Objective(spec.loss))
    assert out["curves"][0]["steps"] == 2
    inputs = [s for s in seen if isinstance(s, tuple)]
    dtypes = {s for s in seen if isinstance(s, torch.dtype)}
    assert {d for d, _ in inputs} == {DEV.type}
    if ON_CUDA:
        assert all(cl for _, cl in inputs)
    bf16 = amp == "bf16" or (amp == "auto" and ON_CUDA)
    assert dtypes == {torch.bfloat16 if bf16 else torch.float32}
