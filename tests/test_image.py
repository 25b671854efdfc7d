"""Image modality: data formats, the two view pipelines, encoders, the adapter end to end.

Real CIFAR-10 JPEGs come from ``$HARDNEG_DATA/cifar10`` (a small tree of links to them is
built per test, so no test decodes all 60,000); CIFAR-100 and STL-10 code paths run on small
files of the official formats written here.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from hardneg import adapters
from hardneg.errors import ConfigError, DataError, HardnegError
from hardneg.objective import Objective
from hardneg.spec import LossSpec, RunSpec, TrainSpec
from modalities.image import ImageAdapter
from modalities.image import augment as A
from modalities.image import data as D
from modalities.image import folder as F
from modalities.image.models import SimCLRModel, build_encoder

DATA = Path(os.environ.get("HARDNEG_DATA", "/work/shared/data"))
CIFAR = DATA / "cifar10"
needs_cifar = pytest.mark.skipif(not (CIFAR / "train").is_dir(), reason="real CIFAR-10 not under HARDNEG_DATA")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HARDNEG_ALLOW_DOWNLOAD", raising=False)
    torch.set_num_threads(1)


def real_tree(root: Path, per_class_train: int, per_class_test: int, classes=None) -> Path:
    """Links to real CIFAR-10 JPEGs in the ImageFolder layout."""
    classes = classes or sorted(os.listdir(CIFAR / "train"))
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for f in sorted(os.listdir(CIFAR / split / c))[:n]:
                os.symlink(CIFAR / split / c / f, root / split / c / f)
    return root


def write_png_tree(root: Path, sizes=None, modes=None, n=4, classes=("a", "b", "c")) -> Path:
    g = np.random.default_rng(0)
    k = 0
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                size = sizes[k] if sizes else (8, 8)
                mode = modes[k] if modes else "RGB"
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                Image.fromarray(g.integers(0, 256, shape, dtype=np.uint8), mode).save(root / split / c / f"{i}.png")
                k += 1
    return root


# ---------------------------------------------------------------------------------------
# views: each batched op equals torchvision's functional op with the same parameters
def test_batched_colour_and_blur_ops_equal_torchvision():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 16, 16, generator=g)
    x[0] = 0.5        # grey image: hue undefined
    x[1, :, :4] = 0   # black pixels
    f = 0.6 + 0.8 * torch.rand(8, generator=g)
    h = -0.1 + 0.2 * torch.rand(8, generator=g)
    sig = 0.1 + 1.9 * torch.rand(8, generator=g)

    def ref(fn, fac):
        return torch.stack([fn(x[i], float(fac[i])) for i in range(8)])

    torch.testing.assert_close(A.adjust_brightness(x, f), ref(TF.adjust_brightness, f), atol=1e-6, rtol=0)
    torch.testing.assert_close(A.adjust_contrast(x, f), ref(TF.adjust_contrast, f), atol=1e-6, rtol=0)
    torch.testing.assert_close(A.adjust_saturation(x, f), ref(TF.adjust_saturation, f), atol=1e-6, rtol=0)
    torch.testing.assert_close(A.adjust_hue(x, h), ref(TF.adjust_hue, h), atol=1e-5, rtol=0)
    blur_ref = torch.stack([TF.gaussian_blur(x[i], [3, 3], [float(sig[i])] * 2) for i in range(8)])
    torch.testing.assert_close(A.gaussian_blur3(x, sig), blur_ref, atol=1e-6, rtol=0)
    gray_ref = torch.stack([TF.rgb_to_grayscale(x[i], 1) for i in range(8)])
    torch.testing.assert_close(A.grayscale(x), gray_ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size_in", [32, 96])
def test_batched_crop_resize_equals_torchvision_resized_crop(size_in):
    g = torch.Generator().manual_seed(size_in)
    x = torch.rand(12, 3, size_in, size_in, generator=g)
    boxes = A.sample_crop_boxes(12, size_in, size_in, (0.08, 1.0), (3 / 4, 4 / 3), g)
    flip = torch.arange(12) % 2 == 1
    got = A.crop_resize(x, boxes, 32, flip)
    want = torch.stack([TF.resized_crop(x[i], *boxes[i].tolist(), [32, 32], antialias=True) for i in range(12)])
    want = torch.where(flip[:, None, None, None], want.flip(-1), want)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_crop_box_law_matches_torchvision_get_params():
    from torchvision.transforms import RandomResizedCrop

    n = 4000
    ours = A.sample_crop_boxes(n, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(1))
    torch.manual_seed(1)
    theirs = torch.tensor([RandomResizedCrop.get_params(torch.empty(3, 32, 32), [0.08, 1.0], [3 / 4, 4 / 3])
                           for _ in range(n)])
    for col in range(4):
        a, b = ours[:, col].double(), theirs[:, col].double()
        se = ((a.var() + b.var()) / n).sqrt()
        assert abs(a.mean() - b.mean()) < 4 * se, (col, a.mean(), b.mean())
    area_a = (ours[:, 2] * ours[:, 3]).double() / 1024
    area_b = (theirs[:, 2] * theirs[:, 3]).double() / 1024
    qs = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    assert (area_a.quantile(qs) - area_b.quantile(qs)).abs().max() < 0.04
    assert (ours[:, 0] + ours[:, 2] <= 32).all() and (ours[:, 1] + ours[:, 3] <= 32).all()
    # a wide image (aspect outside the ratio range) falls back to the clamped central crop
    wide = A.sample_crop_boxes(50, 4, 100, (0.99, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    assert wide.tolist()[0] == [0, (100 - round(4 * 4 / 3)) // 2, 4, round(4 * 4 / 3)]


def _geometry(views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop area fraction and flip flag from views of the coordinate-ramp image."""
    r, gch = views[:, 0], views[:, 1]
    width = (r.amax(dim=(1, 2)) - r.amin(dim=(1, 2))) * 32
    height = (gch.amax(dim=(1, 2)) - gch.amin(dim=(1, 2))) * 32
    flipped = r[:, :, 0].mean(1) > r[:, :, -1].mean(1)
    return width * height / 1024, flipped


def _cpu_views(img: torch.Tensor, spec: A.AugmentSpec, n: int, seed: int) -> torch.Tensor:
    tf = A.cpu_transform(spec)
    torch.manual_seed(seed)
    return torch.stack([tf(img) for _ in range(n)])


def test_pipelines_agree_in_distribution_geometry():
    ramp = torch.linspace(0, 255, 32).round().to(torch.uint8)
    img = torch.stack([ramp[None, :].expand(32, 32), ramp[:, None].expand(32, 32), torch.full((32, 32), 128, dtype=torch.uint8)])
    spec = A.AugmentSpec(jitter_p=0.0, gray_p=0.0, blur_p=0.0, normalize=False)
    n = 2000
    cpu = _cpu_views(img, spec, n, 0)
    bat = A.BatchedViews(spec)(img[None].expand(n, -1, -1, -1), torch.Generator().manual_seed(0))
    a_cpu, f_cpu = _geometry(cpu)
    a_bat, f_bat = _geometry(bat)
    se = ((a_cpu.var() + a_bat.var()) / n).sqrt()
    assert abs(a_cpu.mean() - a_bat.mean()) < 4 * se
    assert abs(f_cpu.float().mean() - 0.5) < 0.05 and abs(f_bat.float().mean() - 0.5) < 0.05
    assert 0.1 < a_bat.mean() < 0.8  # sanity: the crops are neither trivial nor whole images


@needs_cifar
def test_pipelines_agree_in_distribution_colour_on_real_images():
    files = [CIFAR / "train" / c / "0000.jpg" for c in ("airplane", "cat", "frog", "ship")]
    spec = A.AugmentSpec(normalize=False)
    n = 600
    stats = {"cpu": [], "bat": []}
    for k, f in enumerate(files):
        img = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1).contiguous()
        cpu = _cpu_views(img, spec, n, k)
        bat = A.BatchedViews(spec)(img[None].expand(n, -1, -1, -1), torch.Generator().manual_seed(k))
        for key, v in (("cpu", cpu), ("bat", bat)):
            gray = ((v[:, 0] - v[:, 1]).abs().amax(dim=(1, 2)) < 1e-6) & ((v[:, 1] - v[:, 2]).abs().amax(dim=(1, 2)) < 1e-6)
            stats[key].append(torch.cat([v.mean(dim=(2, 3)), v.std(dim=(2, 3)), gray[:, None].float()], dim=1))
    a, b = torch.cat(stats["cpu"]), torch.cat(stats["bat"])
    m = a.shape[0]
    se = ((a.var(0) + b.var(0)) / m).sqrt()
    diff = (a.mean(0) - b.mean(0)).abs()
    assert (diff < 4.5 * se + 1e-4).all(), (diff, se)
    # grayscale views appear at p = 0.2 (plus rare naturally grey crops)
    assert 0.15 < float(b[:, -1].mean()) < 0.26


def test_loaders_are_reproducible_and_workers_do_not_change_views():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(40) % 4
    cpu = A.CpuViewLoader(imgs, labels, 16)
    e0 = list(cpu.epoch(torch.Generator().manual_seed(3)))
    e1 = list(cpu.epoch(torch.Generator().manual_seed(3)))
    assert len(e0) == 2 and e0[0][0].shape == (16, 3, 32, 32)  # drop last
    assert all(torch.equal(x, y) for b0, b1 in zip(e0, e1) for x, y in zip(b0, b1))
    assert not torch.equal(e0[0][0], e0[0][1])  # two different views
    w = list(A.CpuViewLoader(imgs, labels, 16, workers=1).epoch(torch.Generator().manual_seed(3)))
    assert all(torch.equal(x, y) for b0, b1 in zip(e0, w) for x, y in zip(b0, b1))
    bat = A.BatchedViewLoader(imgs, labels, 16)
    b0 = list(bat.epoch(torch.Generator().manual_seed(3)))
    b1 = list(bat.epoch(torch.Generator().manual_seed(3)))
    assert len(b0) == 2 and all(torch.equal(x, y) for p, q in zip(b0, b1) for x, y in zip(p, q))
    assert torch.equal(b0[0][2], e0[0][2])  # the same batch order from the same generator


# ---------------------------------------------------------------------------------------
# encoders
@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("resnet50", 2048)])
def test_encoder_matches_torchvision_resnet_with_cifar_stem(name, dim):
    import torchvision

    ref = getattr(torchvision.models, name)(weights=None)
    ref.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    ref.maxpool = torch.nn.Identity()
    ref.fc = torch.nn.Identity()
    enc = build_encoder(name, 1.0)
    ours = {k: v.shape for k, v in enc.state_dict().items()}
    theirs = {k: v.shape for k, v in ref.state_dict().items()}
    assert ours == theirs
    assert enc.feature_dim == dim


def test_small_encoder_head_and_bad_names():
    enc = build_encoder("resnet18", 0.125)
    model = SimCLRModel(enc)
    z = model(torch.randn(4, 3, 32, 32))
    assert z.shape == (4, 128) and model.features(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    lin1, bn, _, lin2 = model.head
    assert lin1.bias is None and lin1.out_features == 512 and isinstance(bn, torch.nn.BatchNorm1d) and lin2.out_features == 128
    with pytest.raises(ConfigError, match="'resnet99'.*allowed: resnet10, resnet18"):
        build_encoder("resnet99")
    with pytest.raises(ConfigError, match="width"):
        build_encoder("resnet18", 0.0)


# ---------------------------------------------------------------------------------------
# data sets and formats
def test_folder_tree_cache_and_subsets(tmp_path, monkeypatch):
    root = write_png_tree(tmp_path / "tree", n=6)
    s = D.load_dataset(f"folder:{root}", tmp_path)
    assert s.pretrain.images.shape == (18, 3, 8, 8) and s.pretrain.images.dtype == torch.uint8
    assert s.classes == ["a", "b", "c"] and s.pretrain.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    px = np.array(Image.open(root / "train" / "b" / "2.png"))
    assert torch.equal(s.pretrain.images[8].permute(1, 2, 0), torch.from_numpy(px))
    monkeypatch.setattr(F, "_decode_folder", lambda items: (_ for _ in ()).throw(AssertionError("not cached")))
    again = D.load_dataset(f"folder:{root}", tmp_path)  # second load: from the cache
    assert torch.equal(again.pretrain.images, s.pretrain.images) and again.checksums == s.checksums
    idx = D.stratified_subset(s.pretrain.labels, 9, seed=0)
    assert torch.bincount(s.pretrain.labels[idx]).tolist() == [3, 3, 3]
    assert torch.equal(idx, D.stratified_subset(s.pretrain.labels, 9, seed=0))
    with pytest.raises(ConfigError, match="train_subset=19 exceeds the 18"):
        D.stratified_subset(s.pretrain.labels, 19, what="train_subset")


def test_folder_subsets_decode_only_the_chosen_files(tmp_path, monkeypatch):
    root = write_png_tree(tmp_path / "tree", n=6)
    decoded = []
    real = F._decode_folder

    def counting(items):
        decoded.append(len(items))
        return real(items)

    monkeypatch.setattr(F, "_decode_folder", counting)
    sub = D.Subsets(train_subset=6, test_subset=3, pretrain_subset=4, seed=0)
    s = D.load_dataset(f"folder:{root}", tmp_path, subsets=sub)
    labels = torch.arange(18) // 6
    union = torch.unique(torch.cat([D.stratified_subset(labels, 6, seed=0), sub.pretrain_indices(18)]))
    assert decoded == [len(union), 3] and len(union) < 18
    assert len(s.probe) == 6 and len(s.test) == 3 and len(s.pretrain) == 4
    assert torch.bincount(s.probe.labels).tolist() == [2, 2, 2]
    # the same images as subsetting the fully loaded split
    full = D.load_dataset(f"folder:{root}", tmp_path)
    probe_idx = D.stratified_subset(full.probe.labels, 6, seed=0)
    assert torch.equal(s.probe.images, full.probe.images[probe_idx])
    assert torch.equal(s.pretrain.images, full.pretrain.images[sub.pretrain_indices(18)])
    assert torch.equal(s.test.images, full.test.images[D.stratified_subset(full.test.labels, 3, seed=0)])
    # once the whole split is cached, subsets are cut from it without decoding
    decoded.clear()
    again = D.load_dataset(f"folder:{root}", tmp_path, subsets=sub)
    assert decoded == [] and torch.equal(again.probe.images, s.probe.images)


def test_grayscale_folder_is_replicated_to_rgb(tmp_path):
    root = write_png_tree(tmp_path / "g", modes=["L"] * 24)
    s = D.load_dataset(f"folder:{root}", tmp_path)
    im = s.test.images[0]
    assert im.shape == (3, 8, 8) and torch.equal(im[0], im[1]) and torch.equal(im[1], im[2])


def test_folder_errors_name_the_file(tmp_path):
    sizes = [(8, 8)] * 24
    sizes[5] = (9, 8)
    root = write_png_tree(tmp_path / "sizes", sizes=sizes)
    with pytest.raises(DataError, match=r"train/b/1\.png is 9x8 RGB.*share one size"):
        D.load_dataset(f"folder:{root}", tmp_path)
    modes = ["RGB"] * 24
    modes[2] = "L"
    root = write_png_tree(tmp_path / "modes", modes=modes)
    with pytest.raises(DataError, match=r"a/2\.png is 8x8 L.*one mode"):
        D.load_dataset(f"folder:{root}", tmp_path)
    root = write_png_tree(tmp_path / "corrupt")
    (root / "test" / "c" / "1.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"corrupt or unreadable image .*test/c/1\.png"):
        D.load_dataset(f"folder:{root}", tmp_path)
    # a JPEG cut short mid-file (a broken copy of the CIFAR-10 JPEG tree) is named too
    root = tmp_path / "jpeg"
    g = np.random.default_rng(1)
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(g.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i:04d}.jpg", quality=75)
    bad = root / "train" / "b" / "0002.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(DataError, match=r"corrupt or unreadable image .*train/b/0002\.jpg"):
        D.load_dataset(f"folder:{root}", tmp_path)
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="lacks train/ and test/"):
        D.load_dataset("folder:half", tmp_path)


def test_unknown_and_missing_data_sets(tmp_path):
    with pytest.raises(ConfigError, match="'imagenet'.*allowed: cifar10, cifar100, stl10"):
        D.load_dataset("imagenet", tmp_path)
    for name, where in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("stl10", "stl10_binary")):
        with pytest.raises(DataError, match=f"{name}.*{where}.*HARDNEG_ALLOW_DOWNLOAD"):
            D.load_dataset(name, tmp_path)


def _write_cifar(base: Path, name: str, n_train: int, n_test: int, classes: int) -> None:
    g = np.random.default_rng(1)
    if name == "cifar10":
        folder = base / "cifar10" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        per = n_train // 5
        for i in range(1, 6):
            pickle.dump({"data": g.integers(0, 256, (per, 3072), dtype=np.uint8),
                         "labels": list(np.arange(per) % classes)}, open(folder / f"data_batch_{i}", "wb"))
        pickle.dump({"data": g.integers(0, 256, (n_test, 3072), dtype=np.uint8),
                     "labels": list(np.arange(n_test) % classes)}, open(folder / "test_batch", "wb"))
        pickle.dump({"label_names": [f"c{i}" for i in range(classes)]}, open(folder / "batches.meta", "wb"))
    else:
        folder = base / "cifar100" / "cifar-100-python"
        folder.mkdir(parents=True)
        for split, n in (("train", n_train), ("test", n_test)):
            pickle.dump({"data": g.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": list(np.arange(n) % classes),
                         "coarse_labels": list(np.arange(n) % 20)}, open(folder / split, "wb"))
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(classes)]}, open(folder / "meta", "wb"))


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickle_formats(tmp_path, name, classes):
    _write_cifar(tmp_path, name, 200, 100, classes)
    s = D.load_dataset(name, tmp_path)
    assert s.pretrain.images.shape == (200, 3, 32, 32) and s.test.images.shape == (100, 3, 32, 32)
    assert s.num_classes == classes and s.pretrain is s.probe and len(s.checksums[name]) == 64
    # the pickle row is channel-major (1024 R, 1024 G, 1024 B): pixel (0, 0, 1) of image 0
    folder = tmp_path / name / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    first = pickle.load(open(folder / ("data_batch_1" if name == "cifar10" else "train"), "rb"))["data"][0]
    assert int(s.pretrain.images[0, 1, 0, 0]) == int(first[1024]) and int(s.pretrain.images[0, 0, 0, 1]) == int(first[1])


def _write_stl(base: Path, n_train=20, n_test=10, n_unl=30) -> None:
    folder = base / "stl10" / "stl10_binary"
    folder.mkdir(parents=True)
    g = np.random.default_rng(2)
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unl)):
        g.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            (np.arange(n) % 10 + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")  # 1-based on disk
    (folder / "class_names.txt").write_text("\n".join(f"k{i}" for i in range(10)) + "\n")


def test_stl10_roles(tmp_path):
    _write_stl(tmp_path)
    s = D.load_dataset("stl10", tmp_path)
    assert len(s.pretrain) == 50 and len(s.probe) == 20 and len(s.test) == 10
    assert s.pretrain.images.shape[1:] == (3, 96, 96)
    assert (s.pretrain.labels[20:] == -1).all() and s.probe.labels.min() == 0 and s.classes[0] == "k0"
    assert torch.equal(s.pretrain.images[:20], s.probe.images)


def test_stl10_adapter_pretrains_at_32_and_skips_unlabelled_diagnostics(tmp_path):
    _write_stl(tmp_path)
    spec = RunSpec("image", "stl10", seed=0, loss=LossSpec(beta=1.0, tau_plus=0.1),
                   train=TrainSpec(epochs=1, batch_size=10, max_steps_per_epoch=2),
                   options={"encoder": "resnet10", "width": 0.0625, "probe_epochs": 1, "knn_k": 5})
    from hardneg.train import execute

    rec = execute(spec, data_root=tmp_path, log=lambda s: None)
    assert rec["counters"]["pretrain_images"] == 50 and rec["counters"]["probe_images"] == 20
    assert {m["metric"] for m in rec["metrics"]} == {"linear_top1", "knn_top1"}
    assert "ess" in rec["diagnostics"]
    # a batch holding an unlabelled image passes no labels (no false-negative rate from fake classes)
    assert ImageAdapter._diag_labels(torch.tensor([3, -1, 2])) is None
    assert torch.equal(ImageAdapter._diag_labels(torch.tensor([3, 1])), torch.tensor([3, 1]))


# ---------------------------------------------------------------------------------------
# the adapter
def _spec(dataset: str, **kw) -> RunSpec:
    opts = {"encoder": "resnet10", "width": 0.0625, "probe_epochs": 3, "knn_k": 20}
    opts.update(kw.pop("options", {}))
    train = dict(epochs=1, batch_size=32, max_steps_per_epoch=2)
    train.update(kw.pop("train", {}))
    return RunSpec("image", dataset, seed=kw.pop("seed", 0), loss=LossSpec(beta=1.0, tau_plus=0.1),
                   train=TrainSpec(**train), options=opts)


def test_registry_and_options():
    ad = adapters.get("image")
    assert isinstance(ad, ImageAdapter) and "cifar10" in ad.datasets()
    assert ad.accepts_custom_dataset("folder:/x") and not ad.accepts_custom_dataset("svhn")
    with pytest.raises(ConfigError, match="encoder='vit'"):
        ad.resolve_options({"encoder": "vit"})
    with pytest.raises(ConfigError, match="forward='three-pass'.*'two-pass', 'one-pass'"):
        ad.resolve_options({"forward": "three-pass"})
    with pytest.raises(ConfigError, match="unknown image data set 'svhn'"):
        ad.check_dataset("svhn")


@needs_cifar
def test_end_to_end_on_real_cifar_images_with_diagnostics(tmp_path):
    from hardneg.train import execute

    root = real_tree(tmp_path / "c10", 10, 4)
    rec = execute(_spec(f"folder:{root}"), data_root=tmp_path, log=lambda s: None)
    assert rec["status"] == "ok" and rec["method"] == "hard-infonce"
    metrics = {m["metric"]: m for m in rec["metrics"]}
    assert set(metrics) == {"linear_top1", "knn_top1"}
    assert 0 <= metrics["linear_top1"]["value"] <= 100 and "eval mode" in metrics["linear_top1"]["protocol"]
    d = rec["diagnostics"]
    assert 0 <= d["fn_weight_share"] <= 1 and 0 < d["true_class_prior"] < 0.25  # 10 balanced classes: ~0.09
    assert rec["curves"][0]["samples"] == 64  # images, not views
    floor = execute(_spec(f"folder:{root}", train={"epochs": 0}, options={"pipeline": "cpu", "probe_bn": "train",
                                                                          "probe_augment": True}),
                    data_root=tmp_path, log=lambda s: None)
    assert floor["method"] == "random-init" and floor["curves"] == []
    assert "parity" in {m["metric"]: m for m in floor["metrics"]}["linear_top1"]["protocol"]


@needs_cifar
@pytest.mark.parametrize("forward", ["two-pass", "one-pass"])
def test_fast_path_equals_score_batch_path(tmp_path, forward):
    root = real_tree(tmp_path / "c10", 4, 1, classes=["cat", "dog", "ship"])
    ad = ImageAdapter()
    spec = _spec(f"folder:{root}", train={"batch_size": 8}, options={"forward": forward})
    from hardneg.adapters import open_run

    run = open_run(ad, spec, data_root=tmp_path, cache_dir=tmp_path, device="cpu")
    ad.prepare(run)
    torch.manual_seed(0)
    model = ad.build_model(run)
    model.train()
    batch = next(iter(ad.train_batches(run, 0)))
    obj = Objective(spec.loss)
    fast = ad.compute_loss(model, batch, obj, run, details=True)
    slow = obj(ad.score_batch(model, batch, run), details=True)
    torch.testing.assert_close(fast.loss, slow.loss, atol=1e-5, rtol=1e-5)
    assert fast.diagnostics["true_class_prior"] == pytest.approx(slow.diagnostics["true_class_prior"])
    # the measured prior is the share of same-class items among each anchor's 2B - 2 negatives
    y = batch[2]
    same = (y[:, None] == y[None, :]).sum(1) - 1  # other images of the anchor's class
    assert fast.diagnostics["true_class_prior"] == pytest.approx(float((2 * same / (2 * len(y) - 2)).mean()))


def test_batch_larger_than_data_set_is_a_clear_error(tmp_path):
    from hardneg.train import execute

    root = write_png_tree(tmp_path / "t", n=4)
    with pytest.raises(DataError, match="batch_size=32 is larger than the 12 pretraining images"):
        execute(_spec(f"folder:{root}"), data_root=tmp_path, log=lambda s: None)
    with pytest.raises(HardnegError, match="test_subset=50 exceeds"):
        execute(_spec(f"folder:{root}", train={"batch_size": 4}, options={"test_subset": 50}),
                data_root=tmp_path, log=lambda s: None)


@needs_cifar
def test_image_adapter_passes_the_conformance_kit(tmp_path):
    from hardneg.testing import check_adapter

    root = real_tree(tmp_path / "c10", 4, 2, classes=["bird", "cat", "dog", "ship"])
    report = check_adapter("image", dataset=f"folder:{root}", data_root=tmp_path, batch_size=8,
                           options={"encoder": "resnet10", "width": 0.0625, "probe_epochs": 1, "knn_k": 5})
    assert report


def test_fingerprinted_archive_files_are_torchvisions():
    """The file lists named so that fingerprinting needs no torchvision import are torchvision's."""
    from torchvision import datasets as tvd

    from modalities.image.archives import _ARCHIVE_FILES

    for name, cls in (("cifar10", tvd.CIFAR10), ("cifar100", tvd.CIFAR100), ("stl10", tvd.STL10)):
        meta = [cls.meta["filename"]] if name != "stl10" else []
        assert _ARCHIVE_FILES[name] == (cls.base_folder, tuple([f for f, _ in cls.train_list + cls.test_list] + meta))


def test_folder_paths_resolve_alike_for_loading_fingerprint_and_check(tmp_path, monkeypatch):
    """folder:~/x, folder:relative and folder:/absolute name one tree in load, fingerprint and check."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_png_tree(tmp_path / "home" / "tree")
    data_root = tmp_path / "root"
    write_png_tree(data_root / "rel")
    for name, where in (("folder:~/tree", tmp_path / "home" / "tree"), ("folder:rel", data_root / "rel"),
                        (f"folder:{tmp_path / 'home' / 'tree'}", tmp_path / "home" / "tree")):
        ok, path, _ = D.data_present(name, data_root)
        assert ok and Path(path) == where, name
        assert D.fingerprint_dataset(name, data_root) is not None
        assert len(D.load_dataset(name, data_root).test) > 0
