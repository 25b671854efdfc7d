"""Linear probe on a frozen encoder (the SimCLR linear-evaluation protocol).

Protocol (paper defaults): a single ``Linear(F, classes)`` on frozen encoder features,
cross-entropy, Adam lr 1e-3, weight decay 1e-6, batch 512, 100 epochs, training inputs
augmented (the pretraining view pipeline, one view) or not, and the test top-1 (top-5) of the
*last* epoch (no selection on the test set).

Encoder mode:

* ``encoder_mode='eval'`` (default, correct): the encoder runs in eval mode, so BatchNorm
  uses its running statistics and the features are a fixed function of the input. Without
  training augmentation the features are computed once and only the linear layer trains
  (fast path).
* ``encoder_mode='train'`` (parity with the authors' released code): the frozen encoder is left
  in train mode during probe training, so BatchNorm normalises with batch statistics and its
  running statistics drift towards the probe data; the test pass uses eval mode with the
  drifted statistics. The encoder's buffers are restored afterwards so that later metrics
  see the pretrained encoder.

Generic: ``encoder=None`` means the inputs already are features, so other modalities reuse it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HardnegError

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class LinearProbeResult:
    """Last-epoch test accuracies (fractions in [0, 1]) and the training trace."""

    top1: float
    top5: float | None
    train_loss: float          # mean cross-entropy of the last epoch
    train_top1: float          # training accuracy of the last epoch (on the probe's inputs)
    epochs: int
    protocol: str


@torch.no_grad()
def extract_features(encoder: nn.Module | None, inputs: torch.Tensor, *, transform: Callable | None = None,
                     batch_size: int = 1024, device: torch.device | str = "cpu") -> torch.Tensor:
    """Encoder outputs for ``inputs`` (in the encoder's current mode), as float32 on ``device``."""
    out = []
    for x in inputs.split(batch_size):
        x = x.to(device, non_blocking=True)
        if transform is not None:
            x = transform(x)
        out.append((encoder(x) if encoder is not None else x).float())
    return torch.cat(out) if out else torch.empty(0, device=device)


def _accuracy(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    return float((logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).float().mean())


def linear_probe(train_inputs: torch.Tensor, train_labels: torch.Tensor, test_inputs: torch.Tensor,
                 test_labels: torch.Tensor, *, num_classes: int, encoder: nn.Module | None = None,
                 epochs: int = 100, lr: float = 1e-3, weight_decay: float = 1e-6, batch_size: int = 512,
                 train_transform: Transform | None = None, test_transform: Callable | None = None,
                 encoder_mode: str = "eval", device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None, feature_batch_size: int = 1024,
                 autocast: bool = False) -> LinearProbeResult:
    """Train Linear(F, num_classes) on frozen ``encoder`` features; return last-epoch test accuracy.

    ``train_transform(x, gen)`` maps a batch of raw training inputs (on ``device``) to encoder
    inputs, drawing randomness from ``gen`` (a generator on ``device``); None = ``test_transform``
    (no augmentation). ``test_transform(x)`` maps raw inputs to encoder inputs (None = identity).
    ``generator`` (CPU) seeds the head's initialisation, the shuffling and the augmentation.
    ``autocast``: bf16 autocast for the encoder's forward on CUDA.
    """
    if encoder_mode not in ("eval", "train"):
        raise HardnegError(f"encoder_mode={encoder_mode!r} is not known; allowed: eval, train")
    if epochs < 0 or batch_size < 1:
        raise HardnegError(f"linear probe epochs={epochs}, batch_size={batch_size}; allowed: epochs >= 0, batch_size >= 1")
    if train_inputs.shape[0] != train_labels.shape[0] or test_inputs.shape[0] != test_labels.shape[0]:
        raise HardnegError("linear probe inputs and labels differ in length")
    if train_inputs.shape[0] == 0 or test_inputs.shape[0] == 0:
        raise HardnegError("linear probe needs at least one training and one test item")
    device = torch.device(device)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    dev_gen = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
    use_amp = autocast and device.type == "cuda"

    def encode(x: torch.Tensor) -> torch.Tensor:
        if encoder is None:
            return x.float()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            return encoder(x).float()

    saved = None
    was_training = encoder.training if encoder is not None else False
    if encoder is not None:
        if encoder_mode == "train":
            saved = copy.deepcopy({k: v for k, v in encoder.state_dict().items()})
        encoder.eval()
    y_train = train_labels.to(device).long()
    y_test = test_labels.to(device).long()
    precomputed = None
    if encoder_mode == "eval" and train_transform is None:
        precomputed = extract_features(encoder, train_inputs, transform=test_transform,
                                       batch_size=feature_batch_size, device=device) if encoder is not None \
            else train_inputs.to(device).float()
    with torch.no_grad():
        probe_x = train_inputs[:2].to(device)
        probe_x = test_transform(probe_x) if test_transform is not None else probe_x
        feat_dim = encode(probe_x).shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        head = nn.Linear(feat_dim, num_classes).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    n = train_inputs.shape[0]
    last_loss, last_acc = float("nan"), float("nan")
    try:
        for _ in range(epochs):
            if encoder is not None and encoder_mode == "train":
                encoder.train()
            order = torch.randperm(n, generator=gen)
            tot_loss, tot_hit = 0.0, 0
            for idx in order.split(batch_size):
                if precomputed is not None:
                    feats = precomputed[idx.to(device)]
                else:
                    x = train_inputs[idx].to(device, non_blocking=True)
                    if train_transform is not None:
                        x = train_transform(x, dev_gen)
                    elif test_transform is not None:
                        x = test_transform(x)
                    feats = encode(x)
                logits = head(feats)
                yb = y_train[idx.to(device)]
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot_loss += float(loss.detach()) * idx.numel()
                tot_hit += int((logits.detach().argmax(1) == yb).sum())
            last_loss, last_acc = tot_loss / n, tot_hit / n
        if encoder is not None:
            encoder.eval()
        test_feats = extract_features(encoder, test_inputs, transform=test_transform,
                                      batch_size=feature_batch_size, device=device) \
            if encoder is not None else test_inputs.to(device).float()
        with torch.no_grad():
            logits = head(test_feats)
        top1 = _accuracy(logits, y_test, 1)
        top5 = _accuracy(logits, y_test, 5) if num_classes > 10 else None
    finally:
        if encoder is not None:
            if saved is not None:
                encoder.load_state_dict(saved)
            encoder.train(was_training)
    aug = "augmented (one pretraining view)" if train_transform is not None else "not augmented"
    protocol = (f"linear probe Linear(F,{num_classes}) on frozen features; Adam lr {lr:g} wd {weight_decay:g}, "
                f"batch {batch_size}, {epochs} epochs, training inputs {aug}, encoder in {encoder_mode} mode"
                + (" (authors' parity: BatchNorm statistics drift)" if encoder_mode == "train" else "")
                + "; last-epoch test accuracy")
    return LinearProbeResult(top1, top5, last_loss, last_acc, epochs, protocol)
