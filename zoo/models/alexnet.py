"""AlexNet (Krizhevsky et al., 2012), in torchvision's single-tower form (64/192/384/256/256 filters
rather than the paper's two-GPU split): five convolutions, three overlapping 3x3 max-pools, then three
fully connected layers with dropout.

Standard stem (`small_input=False`): torchvision's layout, names and initialisation, so its state
dicts load strictly; 61,100,840 parameters at 1000 classes. An 11x11 stride-4 first convolution and
a 4096-wide head reading a 6x6 map, sized for 224 px images (it needs at least 63 px).

Small stem (`small_input=True`, 28-64 px images): an 11x11 stride-4 convolution would shrink a 32 px
image to 7x7 before anything is learnt, so the first convolution is 3x3 stride 1, and the pools pad by
one so 32 px and 28 px both end at 256 x 4 x 4. The same five convolutions and three pools keep the
Sequential indices of the standard variant; the head reads that 4x4 map and is 1024 wide.
"""

from __future__ import annotations

import torch
from torch import nn

from ._head import ClassifierModel
from ._registry import register_model


class AlexNet(ClassifierModel):
    head_names = ("classifier",)
    first_conv = "features.0"

    def __init__(
        self, *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        if small_input:
            stem = nn.Conv2d(in_chans, 64, kernel_size=3, padding=1)
            # Padding the pools by one rounds up: 32 -> 16 -> 8 -> 4, and 28 -> 14 -> 7 -> 4 (not 3).
            pool_padding, pooled, hidden = 1, 4, 1024
        else:
            stem = nn.Conv2d(in_chans, 64, kernel_size=11, stride=4, padding=2)
            pool_padding, pooled, hidden = 0, 6, 4096
        self.num_features = hidden
        # Shape comments: standard stem at 224 px | small stem at 32 px.
        self.features = nn.Sequential(
            stem,  # N x 64 x 55 x 55 | N x 64 x 32 x 32
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=pool_padding),  # N x 64 x 27 x 27 | 16 x 16
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=pool_padding),  # N x 192 x 13 x 13 | 8 x 8
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # N x 384 x 13 x 13 | 8 x 8
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # N x 256 x 13 x 13 | 8 x 8
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=pool_padding),  # N x 256 x 6 x 6 | 4 x 4
        )
        # Pooling to the size the head was built for lets other input sizes through unchanged in shape.
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        # Dropout before each of the first two linears, as torchvision orders it, so the indices
        # (classifier.1, .4, .6 hold the weights) match its state dicts.
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * pooled * pooled, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        # No custom initialisation: torchvision's AlexNet keeps PyTorch's defaults, and matching it
        # means training from scratch behaves the same.

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 256*6*6 | N x 256*4*4
        x = self.classifier[:-1](x)  # N x num_features
        return x if pre_logits else self.classifier[-1](x)

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    def _set_classifier(self, linear: nn.Linear) -> None:
        self.classifier[-1] = linear


@register_model
def alexnet(
    *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, dropout: float = 0.5
) -> AlexNet:
    return AlexNet(num_classes=num_classes, in_chans=in_chans, small_input=small_input, dropout=dropout)
