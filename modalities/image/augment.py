"""SimCLR views (Chen et al., ICML 2020) as Robinson et al. (ICLR 2021) train every data set, in two
implementations with one distribution.

The paper's pipeline, in this order, on an image scaled to [0, 1]:

1. RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)), bilinear (antialiased when shrinking);
2. horizontal flip, p = 0.5;
3. ColorJitter(brightness 0.4, contrast 0.4, saturation 0.4, hue 0.1) with p = 0.8, the four
   adjustments applied in a random order drawn per image (torchvision's semantics);
4. grayscale, p = 0.2;
5. Gaussian blur, kernel 3, sigma ~ U(0.1, 2.0), p = 0.5 (reflect padding);
6. normalise with the CIFAR-10 mean / std.

* :func:`cpu_transform` is the reference: torchvision ``transforms.v2`` applied to one image at
  a time (in DataLoader workers when asked, see :class:`CpuViewLoader`).
* :class:`BatchedViews` draws the same random parameters for a whole batch with tensor ops on
  the batch's device: crop-and-resize as two batched matrix products with per-image
  interpolation matrices (bilinear; triangle filter widened by the scale when shrinking, as
  torchvision's antialias), flip by reversing the column matrix, the colour ops on index
  subsets per random-order stage, a per-image separable blur. ``tests/test_image.py`` checks
  each op against torchvision's functional op with the same parameters and the two pipelines'
  output statistics against each other.

Difference kept on purpose: the authors jitter PIL uint8 images (rounding after each op); both
pipelines here work in float32 on [0, 1] (no intermediate rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class AugmentSpec:
    """Parameters of the SimCLR view distribution (defaults: the paper's)."""

    size: int = 32
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    normalize: bool = True


# ---------------------------------------------------------------------------------------
# reference: per image on CPU
def cpu_transform(spec: AugmentSpec = AugmentSpec()):
    """The torchvision v2 pipeline for one (C, H, W) uint8 image -> float (C, size, size)."""
    from torchvision.transforms import v2 as T

    b, c, s, h = spec.jitter
    ops = [
        T.ToDtype(torch.float32, scale=True),
        T.RandomResizedCrop(spec.size, scale=spec.scale, ratio=spec.ratio, antialias=True),
        T.RandomHorizontalFlip(spec.flip_p),
        T.RandomApply([T.ColorJitter(b, c, s, h)], p=spec.jitter_p),
        T.RandomGrayscale(spec.gray_p),
        T.RandomApply([T.GaussianBlur(3, sigma=spec.blur_sigma)], p=spec.blur_p),
    ]
    if spec.normalize:
        ops.append(T.Normalize(spec.mean, spec.std))
    return T.Compose(ops)


class _BatchTask(torch.utils.data.Dataset):
    """Item k = both views of batch k, made under its own seed (independent of worker count)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batches: list[torch.Tensor],
                 seeds: list[int], spec: AugmentSpec, views: int) -> None:
        self.images, self.labels, self.batches, self.seeds = images, labels, batches, seeds
        self.transform = cpu_transform(spec)
        self.views = views

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        idx = self.batches[k]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seeds[k])
            imgs = self.images[idx]
            out = [torch.stack([self.transform(im) for im in imgs]) for _ in range(self.views)]
        return (*out, self.labels[idx])


class _EpochOrder:
    """Length and per-epoch index order shared by the two loaders (shuffle, drop last)."""

    images: torch.Tensor
    batch_size: int
    shuffle: bool
    drop_last: bool

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """The epoch's index order (from the CPU ``generator``) and where batching stops."""
        n = self.images.shape[0]
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        return order, (len(self) * self.batch_size if self.drop_last else n)


class CpuViewLoader(_EpochOrder):
    """Per-image views on the CPU, optionally in DataLoader worker processes.

    ``epoch(generator)`` yields ``(view1, view2, labels)`` per batch (drop last). The batch
    order and one seed per batch come from ``generator``, so the views are the same for any
    number of workers.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, spec: AugmentSpec = AugmentSpec(),
                 *, workers: int = 0, views: int = 2, shuffle: bool = True, drop_last: bool = True,
                 pin_memory: bool = False) -> None:
        self.images, self.labels, self.batch_size, self.spec = images.cpu(), labels.cpu(), batch_size, spec
        self.workers, self.views, self.shuffle, self.drop_last, self.pin_memory = workers, views, shuffle, drop_last, pin_memory

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        order, stop = self._order(generator)
        batches = list(order[:stop].split(self.batch_size))
        seeds = torch.randint(0, 2**62, (len(batches),), generator=generator).tolist()
        task = _BatchTask(self.images, self.labels, batches, seeds, self.spec, self.views)
        if self.workers == 0:
            for k in range(len(task)):
                yield task[k]
            return
        loader = torch.utils.data.DataLoader(task, batch_size=None, shuffle=False, num_workers=self.workers,
                                             pin_memory=self.pin_memory, prefetch_factor=4)
        yield from loader


# ---------------------------------------------------------------------------------------
# batched: tensor ops on the device
def sample_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                      generator: torch.Generator, device: torch.device | str = "cpu", trials: int = 10) -> torch.Tensor:
    """(n, 4) integer boxes (top, left, h, w) with torchvision's RandomResizedCrop law.

    Up to ``trials`` proposals per image: area ~ U(scale) * H * W, log aspect ~ U(log ratio),
    w = round(sqrt(area * aspect)), h = round(sqrt(area / aspect)); the first proposal that
    fits is taken with top ~ U{0..H-h}, left ~ U{0..W-w}; if none fits, the central crop with
    the aspect clamped to ``ratio`` (the whole image for square inputs).
    """
    area = height * width
    u = torch.rand(n, trials, 4, generator=generator, device=device, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(ok.to(torch.int8), dim=1)  # index of the first True (0 if none)
    any_ok = ok.any(dim=1)
    pick = lambda t: t.gather(1, first[:, None]).squeeze(1)  # noqa: E731
    w_sel, h_sel = pick(w), pick(h)
    top = torch.floor(pick(u[..., 2]) * (height - h_sel + 1))
    left = torch.floor(pick(u[..., 3]) * (width - w_sel + 1))
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    fb = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=torch.float64, device=device)
    boxes = torch.stack([top, left, h_sel, w_sel], dim=1)
    boxes = torch.where(any_ok[:, None], boxes, fb)
    return boxes.long()


def resize_matrices(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, out_size, in_size) rows of interpolation weights for crops [start, start + length).

    Output pixel k samples the crop at centre c = start + (k + 0.5) * length / out_size with a
    triangle filter of radius max(1, length / out_size) over the crop's pixels, normalised:
    bilinear (align_corners=False, edge-clamped) when enlarging, antialiased (torchvision /
    PIL) when shrinking.
    """
    dev = start.device
    scale = length.to(dtype) / out_size                                    # (n,)
    support = torch.clamp(scale, min=1.0)
    k = torch.arange(out_size, device=dev, dtype=dtype)
    centre = start.to(dtype)[:, None] + (k[None, :] + 0.5) * scale[:, None]   # (n, out)
    p = torch.arange(in_size, device=dev, dtype=dtype) + 0.5                   # pixel centres
    wgt = (1.0 - ((p[None, None, :] - centre[:, :, None]) / support[:, None, None]).abs()).clamp_min(0.0)
    inside = (p[None, :] >= start.to(dtype)[:, None]) & (p[None, :] < (start + length).to(dtype)[:, None])
    wgt = wgt * inside[:, None, :].to(dtype)
    return wgt / wgt.sum(-1, keepdim=True).clamp_min(1e-12)


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image crop (top, left, h, w) resized to size x size, optionally mirrored: Wy @ x @ Wx^T."""
    n, _, height, width = x.shape
    wy = resize_matrices(boxes[:, 0], boxes[:, 2], height, size, x.dtype)
    wx = resize_matrices(boxes[:, 1], boxes[:, 3], width, size, x.dtype)
    if flip is not None:
        wx = torch.where(flip[:, None, None], wx.flip(1), wx)
    return wy[:, None] @ x @ wx.transpose(1, 2)[:, None]


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) -> (n, 1, H, W) luma 0.2989 R + 0.587 G + 0.114 B."""
    return (_GRAY[0] * x[:, 0:1] + _GRAY[1] * x[:, 1:2] + _GRAY[2] * x[:, 2:3])


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * f.view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    m = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    f = f.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * m).clamp(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = f.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * grayscale(x)).clamp(0.0, 1.0)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (colorsys conventions)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    gray = delta == 0
    s = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    d = torch.where(gray, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(gray, torch.zeros_like(h), h)
    h = torch.remainder(h / 6.0, 1.0)
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = x[:, 0], x[:, 1], x[:, 2]
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = torch.remainder(i, 6).long()
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    # rows: sector 0..5 -> (r, g, b) drawn from (v, t, p, q)
    table = torch.stack([torch.stack([v, t, p]), torch.stack([q, v, p]), torch.stack([p, v, t]),
                         torch.stack([p, q, v]), torch.stack([t, p, v]), torch.stack([v, p, q])])  # (6, 3, n, H, W)
    idx = i[None, None].expand(1, 3, *i.shape)
    return table.gather(0, idx).squeeze(0).permute(1, 0, 2, 3)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = torch.remainder(hsv[:, 0] + f.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(hsv)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def gaussian_blur3(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image 3-tap Gaussian blur (kernel exp(-k^2 / 2 sigma^2), k in {-1, 0, 1}), reflect padding."""
    taps = torch.tensor([-1.0, 0.0, 1.0], device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (taps[None, :] / sigma.to(x.dtype)[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).view(-1, 3, 1, 1, 1)
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = k[:, 0] * xp[..., :, :-2] + k[:, 1] * xp[..., :, 1:-1] + k[:, 2] * xp[..., :, 2:]
    return k[:, 0] * y[..., :-2, :] + k[:, 1] * y[..., 1:-1, :] + k[:, 2] * y[..., 2:, :]


class BatchedViews:
    """The view distribution of :func:`cpu_transform` for a whole (n, C, H, W) batch at once.

    ``views(images, generator)``: uint8 or float images on any device, a generator on that
    device; returns float32 (n, C, size, size), normalised. One call = one view per image.
    """

    def __init__(self, spec: AugmentSpec = AugmentSpec()) -> None:
        self.spec = spec

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.spec
        dev = images.device
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        n, c, height, width = x.shape

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device=dev)

        boxes = sample_crop_boxes(n, height, width, s.scale, s.ratio, generator, dev)
        flip = rand(n) < s.flip_p
        x = crop_resize(x, boxes, s.size, flip)
        if c == 3 and s.jitter_p > 0:
            apply = rand(n) < s.jitter_p
            lo_hi = [(max(0.0, 1 - j), 1 + j) for j in s.jitter[:3]] + [(-s.jitter[3], s.jitter[3])]
            u = rand(n, 4)
            factors = [lo + (hi - lo) * u[:, i] for i, (lo, hi) in enumerate(lo_hi)]
            order = torch.argsort(rand(n, 4), dim=1)  # a uniform random permutation per image
            active = [s.jitter[i] > 0 for i in range(4)]
            for stage in range(4):
                for op in range(4):
                    if not active[op]:
                        continue
                    sel = torch.nonzero(apply & (order[:, stage] == op)).flatten()
                    if sel.numel():
                        x[sel] = _JITTER_OPS[op](x[sel], factors[op][sel])
        if c == 3 and s.gray_p > 0:
            g = rand(n) < s.gray_p
            x = torch.where(g[:, None, None, None], grayscale(x).expand_as(x), x)
        if s.blur_p > 0:
            blur = rand(n) < s.blur_p
            sigma = s.blur_sigma[0] + (s.blur_sigma[1] - s.blur_sigma[0]) * rand(n)
            sigma = torch.where(blur, sigma, torch.full_like(sigma, 1e-3))  # ~identity kernel [0, 1, 0]
            x = gaussian_blur3(x, sigma)
        if s.normalize:
            x = normalize(x, s.mean, s.std)
        return x


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.as_tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    sd = torch.as_tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / sd


def eval_transform(images: torch.Tensor, size: int = 32, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    """Test-time input: scale to [0, 1], resize (antialiased) to ``size`` if needed, normalise."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return normalize(x, mean, std)


class BatchedViewLoader(_EpochOrder):
    """Batches with views made on the images' device by :class:`BatchedViews` (drop last).

    ``epoch(generator)`` yields ``(view1, view2, labels)``; the batch order comes from the CPU
    ``generator``, the view randomness from a device generator seeded by it.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, spec: AugmentSpec = AugmentSpec(),
                 *, device: torch.device | str = "cpu", views: int = 2, shuffle: bool = True, drop_last: bool = True) -> None:
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.views, self.shuffle, self.drop_last = batch_size, views, shuffle, drop_last
        self.make = BatchedViews(spec)

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        order, stop = self._order(generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        dev_gen = torch.Generator(device=self.device).manual_seed(seed)
        order = order.to(self.device)
        for start in range(0, stop, self.batch_size):
            idx = order[start:start + self.batch_size]
            imgs = self.images[idx]
            yield (*[self.make(imgs, dev_gen) for _ in range(self.views)], self.labels[idx])
