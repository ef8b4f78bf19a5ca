"""VGG (Simonyan & Zisserman, 2015): stages of 3x3 stride-1 convolutions separated by 2x2 max-pools,
then three fully connected layers with dropout. A variant is data: how many convolutions each of the
five stages has, keyed by its count of weight layers (11, 13, 16, 19 are the paper's configurations
A, B, D, E); the `_bn` variants add batch normalisation after every convolution.

Standard stem (`small_input=False`): torchvision's layout, names and initialisation, so its state
dicts load strictly; vgg16 has 138,357,544 parameters at 1000 classes. The 4096-wide head reads a
7x7 map (224 px input); its five floor-mode pools need at least 32 px.

Small stem (`small_input=True`, 28-64 px images): the same convolutions, which already keep the
image's size, with the pools in ceil mode so 28 px ends at 1x1 rather than an empty map (32 px is
unchanged: 16, 8, 4, 2, 1). The map is averaged to 1x1 and read by a 512 -> 512 -> 512 -> classes
head: a 4096-wide head over 512 numbers would be almost all parameters and nothing to read.
"""

from __future__ import annotations

import torch
from torch import nn

from ._head import ClassifierModel
from ._registry import register_model

# Five stages, each some 3x3 convolutions of one width and then a 2x2 max-pool; a variant is the number
# of convolutions per stage, keyed by its count of weight layers (the convolutions plus three linears).
_STAGE_WIDTHS = (64, 128, 256, 512, 512)
_STAGE_DEPTHS: dict[int, tuple[int, ...]] = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


def _make_features(
    depths: tuple[int, ...], in_chans: int, batch_norm: bool, ceil_mode: bool
) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_chans
    for width, depth in zip(_STAGE_WIDTHS, depths, strict=True):
        for _ in range(depth):
            layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))  # keeps H and W
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            channels = width
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))  # halves H and W
    return nn.Sequential(*layers)


class VGG(ClassifierModel):
    head_names = ("classifier",)
    first_conv = "features.0"

    def __init__(
        self,
        depths: tuple[int, ...],
        *,
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        pooled, hidden = (1, 512) if small_input else (7, 4096)
        self.num_features = hidden
        self.features = _make_features(depths, in_chans, batch_norm, ceil_mode=small_input)
        # Pooling to the size the head was built for lets other input sizes through unchanged in shape.
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Linear(_STAGE_WIDTHS[-1] * pooled * pooled, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's scheme, so training from scratch behaves as with its VGG: He init (fan-out) keeps the
        # gradients' scale through up to 16 ReLU convolutions without batch norm, and small linear weights
        # keep the first logits near zero.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # N x 512 x H/32 x W/32 (7 x 7 at 224 px, 1 x 1 at 32 px)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 512*7*7 | N x 512 (small)
        x = self.classifier[:-1](x)  # N x num_features
        return x if pre_logits else self.classifier[-1](x)

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    def _set_classifier(self, linear: nn.Linear) -> None:
        self.classifier[-1] = linear


def _vgg(
    depth: int, batch_norm: bool, num_classes: int, in_chans: int, small_input: bool, dropout: float
) -> VGG:
    return VGG(
        _STAGE_DEPTHS[depth],
        batch_norm=batch_norm,
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        dropout=dropout,
    )


@register_model
def vgg11(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
) -> VGG:
    return _vgg(11, False, num_classes, in_chans, small_input, dropout)


@register_model
def vgg13(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
) -> VGG:
    return _vgg(13, False, num_classes, in_chans, small_input, dropout)


@register_model
def vgg16(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
) -> VGG:
    return _vgg(16, False, num_classes, in_chans, small_input, dropout)


@register_model
def vgg19(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
) -> VGG:
    return _vgg(19, False, num_classes, in_chans, small_input, dropout)


@register_model
def vgg11_bn(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
) -> VGG:
    return _vgg(11, True, num_classes, in_chans, small_input, dropout)


@register_model
def vgg13_bn(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
) -> VGG:
    return _vgg(13, True, num_classes, in_chans, small_input, dropout)


@register_model
def vgg16_bn(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
) -> VGG:
    return _vgg(16, True, num_classes, in_chans, small_input, dropout)


@register_model
def vgg19_bn(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
) -> VGG:
    return _vgg(19, True, num_classes, in_chans, small_input, dropout)
