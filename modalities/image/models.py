"""SimCLR encoders with the CIFAR stem, and the paper's projection head.

Encoder = torchvision's ResNet blocks (``BasicBlock`` / ``Bottleneck``) stacked as in
torchvision's ``ResNet``, with the CIFAR stem of the paper: first conv 3x3, stride 1, pad 1,
no max-pool; features = global average pool (512-d for ResNet-18, 2048-d for ResNet-50 at
width 1). At ``width = 1`` the parameter names and shapes equal torchvision's resnet18/50
with that stem and ``fc`` removed (tested).

``width`` multiplies every stage's channel count (64, 128, 256, 512 -> round(64 * width) ...)
so that CPU runs finish in minutes; ``resnet10`` (one block per stage) is a documented small
encoder for CPU smoke/quick runs and not part of the paper.

Head (paper): Linear(F, 512, bias=False) - BatchNorm1d(512) - ReLU - Linear(512, 128).
"""

from __future__ import annotations

import torch
from torch import nn

from hardneg.errors import ConfigError

#: name -> (torchvision block, blocks per stage); the block is imported when an encoder is
#: built, since importing torchvision.models costs seconds (it pulls in torch's compiler), which
#: every command that only lists or reads suites would otherwise pay
ENCODERS = {
    "resnet10": ("BasicBlock", (1, 1, 1, 1)),
    "resnet18": ("BasicBlock", (2, 2, 2, 2)),
    "resnet34": ("BasicBlock", (3, 4, 6, 3)),
    "resnet50": ("Bottleneck", (3, 4, 6, 3)),
}


class CifarResNet(nn.Module):
    """ResNet with the CIFAR stem; ``forward`` returns pooled features (n, feature_dim)."""

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], width: float = 1.0,
                 in_channels: int = 3) -> None:
        super().__init__()
        base = max(4, int(round(64 * width)))
        self.inplanes = base
        self.conv1 = nn.Conv2d(in_channels, base, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, base, layers[0], stride=1)
        self.layer2 = self._make_layer(block, base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = base * 8 * block.expansion
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        mods = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def build_encoder(name: str, width: float = 1.0) -> CifarResNet:
    """Encoder by name ('resnet10' | 'resnet18' | 'resnet34' | 'resnet50') and width multiplier."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown image encoder {name!r}; allowed: {', '.join(ENCODERS)}")
    if not (0 < width <= 4):
        raise ConfigError(f"width={width!r} is out of range; allowed: 0 < width <= 4")
    from torchvision.models import resnet

    block, layers = ENCODERS[name]
    return CifarResNet(getattr(resnet, block), layers, width)


class ProjectionHead(nn.Sequential):
    """Linear(F, hidden, bias=False) - BatchNorm1d - ReLU - Linear(hidden, out) (paper: 512, 128)."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128) -> None:
        super().__init__(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim, bias=True))


class SimCLRModel(nn.Module):
    """Encoder + head. ``forward(x)`` -> projections z (unnormalised); ``features(x)`` -> encoder output."""

    def __init__(self, encoder: CifarResNet, hidden: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.feature_dim, hidden, out_dim)
        self.feature_dim = encoder.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))
