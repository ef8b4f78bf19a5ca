"""ResNet (He et al., 2015, "Deep Residual Learning for Image Recognition"), as torchvision builds it.

A stem (7x7 stride-2 convolution, max-pool) and four stages of residual blocks that halve the
resolution and double the width from stage to stage, then a global average pool and one linear layer.
Shallow variants stack `BasicBlock`s (two 3x3 convolutions); deep ones stack `Bottleneck`s
(1x1 reduce, 3x3, 1x1 expand by 4), which cost less per block at four times the output width.
Following torchvision (ResNet v1.5), a bottleneck strides in its 3x3 convolution, not the first 1x1.

    variant     block        blocks per stage   parameters (1000 classes)
    resnet18    BasicBlock   2, 2, 2, 2         11,689,512
    resnet34    BasicBlock   3, 4, 6, 3         21,797,672
    resnet50    Bottleneck   3, 4, 6, 3         25,557,032
    resnet101   Bottleneck   3, 4, 23, 3        44,549,160
    resnet152   Bottleneck   3, 8, 36, 3        60,192,808

Parameter names and shapes match torchvision's, so its state dicts load with `strict=True`.
`small_input=True` (28-64 px images) swaps the stem for a 3x3 stride-1 convolution and drops the
max-pool: the ImageNet stem would shrink a 32 px image to 8 px before the first residual block.
Only `conv1.weight` then differs in shape; every other tensor still lines up with torchvision's.
"""

from __future__ import annotations

import torch
from torch import nn

from ._head import ClassifierModel
from ._registry import register_model


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every convolution is followed by a BatchNorm, whose shift makes a bias redundant.
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions around an identity (or projected) shortcut."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand to `planes * 4`, around a shortcut."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(ClassifierModel):
    head_names = ("fc",)
    first_conv = "conv1"

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 512 * block.expansion
        self.inplanes = 64  # channels entering the next stage; `_make_layer` advances it

        # Shapes below are for a 224 px input with the ImageNet stem; the small stem keeps the
        # input size through the stem, so a 32 px input reaches layer1 at 32 x 32.
        if small_input:
            self.conv1 = _conv3x3(in_chans, 64)
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)  # N x 64 x 112 x 112
        # Identity keeps the module tree (and so the state dict) the same for both stems.
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])  # N x 64e x 56 x 56 (e = block.expansion)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)  # N x 128e x 28 x 28
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)  # N x 256e x 14 x 14
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)  # N x 512e x 7 x 7
        # Adaptive, so any input size reaches the head as one vector per image.
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        # Not in torchvision's ResNet (0 by default); it holds no weights, so state dicts still match.
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

        # torchvision's scheme: He init for the ReLU convolutions, BatchNorm as the identity map.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            # The shortcut must match the block's output in size and width: a strided 1x1 projection.
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # N x 64 x 56 x 56
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)  # N x 512e x 7 x 7

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 512e
        return x if pre_logits else self.fc(self.dropout(x))

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def _set_classifier(self, linear: nn.Linear) -> None:
        self.fc = linear


@register_model
def resnet18(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.0
) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_chans, small_input, dropout)


@register_model
def resnet34(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.0
) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_chans, small_input, dropout)


@register_model
def resnet50(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.0
) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_chans, small_input, dropout)


@register_model
def resnet101(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.0
) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes, in_chans, small_input, dropout)


@register_model
def resnet152(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.0
) -> ResNet:
    return ResNet(Bottleneck, (3, 8, 36, 3), num_classes, in_chans, small_input, dropout)
