"""DenseNet (Huang et al., 2016, "Densely Connected Convolutional Networks"), DenseNet-BC as torchvision
builds it.

Inside a dense block every layer sees the concatenation of all earlier feature maps in the block and
adds `growth_rate` new channels to it. Each layer is BN-ReLU-1x1 conv (a bottleneck to `bn_size *
growth_rate` channels) then BN-ReLU-3x3 conv. Between blocks a transition (BN-ReLU-1x1 conv, 2x2
average pool) halves both the channel count and the resolution. A stem (7x7 stride-2 convolution,
max-pool) comes first; a final BatchNorm, ReLU, global average pool and one linear layer come last.

    variant       growth   layers per block   stem width   parameters (1000 classes)
    densenet121   32       6, 12, 24, 16      64           7,978,856
    densenet161   48       6, 12, 36, 24      96           28,681,000
    densenet169   32       6, 12, 32, 32      64           14,149,480
    densenet201   32       6, 12, 48, 32      64           20,013,928

Parameter names and shapes match torchvision's, so its state dicts load with `strict=True`.
`small_input=True` (28-64 px images) swaps the stem for a 3x3 stride-1 convolution and drops the
max-pool, so a 32 px image still has 4 x 4 positions in the last block; only `features.conv0.weight`
then differs in shape. `dropout` is applied to each dense layer's new features while training.
`memory_efficient=True` recomputes the concatenation and bottleneck in the backward pass instead of
storing them (the concatenations are what make DenseNet's memory grow quadratically with depth).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._head import ClassifierModel
from ._registry import register_model


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv bottleneck, then BN-ReLU-3x3 conv producing `growth_rate` new channels."""

    def __init__(
        self,
        num_input_features: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float,
        memory_efficient: bool,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def _bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        # The concatenation is the large tensor: it has every earlier layer's channels.
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and torch.is_grad_enabled():
            # Non-reentrant checkpointing gives every parameter inside a gradient even when the
            # inputs themselves need none. Like torchvision's, the recomputation runs norm1 a
            # second time in training, so its running statistics see each batch twice.
            bottleneck = checkpoint(self._bottleneck, *features, use_reentrant=False)
        else:
            bottleneck = self._bottleneck(*features)
        new_features = self.conv2(self.relu2(self.norm2(bottleneck)))  # N x growth_rate x H x W
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class DenseBlock(nn.ModuleDict):
    """`num_layers` dense layers; the output is the input with all their new features appended."""

    def __init__(
        self,
        num_layers: int,
        num_input_features: int,
        bn_size: int,
        growth_rate: int,
        drop_rate: float,
        memory_efficient: bool,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(
                num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate, memory_efficient
            )
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        # Kept as a list and concatenated inside each layer, so a checkpointed layer can free its copy.
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)  # N x (C + num_layers * growth_rate) x H x W


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv to `num_output_features`, then a 2x2 average pool halving the resolution."""

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(ClassifierModel):
    head_names = ("classifier",)
    first_conv = "features.conv0"

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, int, int, int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        dropout: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes

        # Shapes below are for densenet121 on a 224 px input with the ImageNet stem; the small stem
        # keeps the input size through the stem, so a 32 px input reaches denseblock1 at 32 x 32.
        if small_input:
            conv0 = nn.Conv2d(in_chans, num_init_features, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            conv0 = nn.Conv2d(in_chans, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)
        stem = [
            ("conv0", conv0),  # N x 64 x 112 x 112
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
        ]
        if not small_input:
            stem.append(("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))  # N x 64 x 56 x 56
        self.features = nn.Sequential(OrderedDict(stem))

        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, num_features, bn_size, growth_rate, dropout, memory_efficient)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate  # 256, 512, 1024, 1024 channels out of the blocks
            if i != len(block_config) - 1:
                # Halve the channels (the "C" of DenseNet-BC) and the resolution: 28, 14, 7 px.
                self.features.add_module(f"transition{i + 1}", Transition(num_features, num_features // 2))
                num_features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))  # N x 1024 x 7 x 7
        self.num_features = num_features

        self.classifier = nn.Linear(num_features, num_classes)

        # torchvision's scheme: He init (fan-in) for convolutions, BatchNorm as the identity map,
        # zero classifier bias.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # N x num_features x 7 x 7

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # norm5 has no ReLU after it inside `features`; not in place, so the caller's features survive.
        x = F.relu(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)  # N x num_features
        return x if pre_logits else self.classifier(x)

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def _set_classifier(self, linear: nn.Linear) -> None:
        self.classifier = linear


def _densenet(
    growth_rate: int,
    block_config: tuple[int, int, int, int],
    num_init_features: int,
    *,
    num_classes: int,
    in_chans: int,
    small_input: bool,
    dropout: float,
    memory_efficient: bool,
) -> DenseNet:
    return DenseNet(
        growth_rate,
        block_config,
        num_init_features,
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        dropout=dropout,
        memory_efficient=memory_efficient,
    )


@register_model
def densenet121(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    small_input: bool = False,
    dropout: float = 0.0,
    memory_efficient: bool = False,
) -> DenseNet:
    return _densenet(
        32,
        (6, 12, 24, 16),
        64,
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        dropout=dropout,
        memory_efficient=memory_efficient,
    )


@register_model
def densenet161(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    small_input: bool = False,
    dropout: float = 0.0,
    memory_efficient: bool = False,
) -> DenseNet:
    return _densenet(
        48,
        (6, 12, 36, 24),
        96,
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        dropout=dropout,
        memory_efficient=memory_efficient,
    )


@register_model
def densenet169(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    small_input: bool = False,
    dropout: float = 0.0,
    memory_efficient: bool = False,
) -> DenseNet:
    return _densenet(
        32,
        (6, 12, 32, 32),
        64,
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        dropout=dropout,
        memory_efficient=memory_efficient,
    )


@register_model
def densenet201(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    small_input: bool = False,
    dropout: float = 0.0,
    memory_efficient: bool = False,
) -> DenseNet:
    return _densenet(
        32,
        (6, 12, 48, 32),
        64,
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        dropout=dropout,
        memory_efficient=memory_efficient,
    )
