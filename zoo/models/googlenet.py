"""GoogLeNet, i.e. Inception v1 (Szegedy et al., 2014, "Going Deeper with Convolutions").

Nine Inception blocks, each running 1x1, 3x3, "5x5" and pooled branches side by side and concatenating
them, stacked behind a small convolutional stem and in front of global average pooling and one linear
layer. Two auxiliary classifiers read the maps after inception4a and inception4d; they exist only to push
gradient into the middle of the network while training (the paper adds 0.3 x each auxiliary loss to the
main loss) and are skipped at inference.

With the standard stem (224 px ImageNet input) the parameter names and shapes are exactly torchvision's
`googlenet(weights=None)` (aux heads on, no input transform), so its state dicts load with `strict=True`.
At 1000 classes that is 13,004,888 parameters: 6,624,904 in the main network (the count torchvision
publishes, for weights saved without aux heads) and 6,379,984 in the two aux heads. Like torchvision,
the "5x5" branch uses a 3x3 convolution: that is what the published weights were trained with.

`small_input=True` (28-64 px images) swaps the 7x7 stride-2 first convolution for a 3x3 stride-1 one and
drops the first stem max-pool, so a 32 px image reaches inception3a at 16 x 16 instead of 4 x 4; only
conv1's kernel shape differs from the standard stem. The aux heads pool adaptively to 4 x 4, so both
stems take any input from 28 px up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._head import ClassifierModel
from ._registry import register_model


class BasicConv2d(nn.Module):
    """Convolution, batch norm, ReLU; the conv has no bias because batch norm adds its own."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        # eps=0.001 as in torchvision, whose weights were trained with it
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches at the same resolution, concatenated along channels.

    The 1x1 "reduce" convolutions in front of the larger kernels (and after the pool) are what keep the
    block cheap: they shrink the channel count before the expensive spatial convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        # the paper's 5x5 branch; 3x3 here to match torchvision's weights (see the module docstring)
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x (ch1x1 + ch3x3 + ch5x5 + pool_proj) x H x W
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: pool to 4 x 4, 1x1 conv to 128 channels, two linear layers."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        # adaptive pooling (the paper: 5x5 average, stride 3 on a 14 x 14 map) gives the 4 x 4 that fc1
        # expects whatever the input size and stem
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x))  # N x 128 x 4 x 4
        x = torch.flatten(x, 1)  # N x 2048
        x = self.dropout(F.relu(self.fc1(x), inplace=True))  # N x 1024
        return self.fc2(x)  # N x num_classes


class GoogLeNet(ClassifierModel):
    head_names = ("fc", "aux1", "aux2")
    first_conv = "conv1.conv"
    aux_loss_weight = 0.3

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        dropout: float = 0.2,
        aux_dropout: float = 0.7,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 1024

        # Shape comments follow a 224 px image through the standard stem. The small stem keeps one
        # stride-2 pool: a 32 px image reaches inception3a at 16 x 16, where the standard stem (stride-2
        # conv1 and two stride-2 pools) would leave 4 x 4. Keeping 32 x 32 there costs as much compute
        # as the standard network at 224 px and, measured on digits, learned no better.

        if small_input:
            self.conv1 = BasicConv2d(in_chans, 64, kernel_size=3, stride=1, padding=1)
        else:
            self.conv1 = BasicConv2d(in_chans, 64, kernel_size=7, stride=2, padding=3)  # N x 64 x 112 x 112
        # N x 64 x 56 x 56
        self.maxpool1 = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)  # N x 64 x 56 x 56
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)  # N x 192 x 56 x 56
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # N x 192 x 28 x 28

        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)  # N x 256 x 28 x 28
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)  # N x 480 x 28 x 28
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # N x 480 x 14 x 14

        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)  # N x 512 x 14 x 14
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)  # N x 512 x 14 x 14
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)  # N x 512 x 14 x 14
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)  # N x 528 x 14 x 14
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)  # N x 832 x 14 x 14
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # N x 832 x 7 x 7

        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)  # N x 832 x 7 x 7
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)  # N x 1024 x 7 x 7

        self.aux1 = InceptionAux(512, num_classes, dropout=aux_dropout)  # reads inception4a
        self.aux2 = InceptionAux(528, num_classes, dropout=aux_dropout)  # reads inception4d

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's scheme, so training from scratch behaves like it: small truncated-normal weights
        # (linear biases keep PyTorch's default), batch norm starting as the identity
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _trunk(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Backbone feature map and, if asked, the two auxiliary logits read from its middle."""
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        aux = []
        x = self.inception4a(x)
        if with_aux:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if with_aux:
            aux.append(self.aux2(x))
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))  # N x 1024 x 7 x 7
        return x, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._trunk(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 1024
        x = self.dropout(x)
        return x if pre_logits else self.fc(x)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # The aux heads only shape training; in eval mode they are skipped, so this equals forward().
        features, aux = self._trunk(x, with_aux=self.training)
        return self.forward_head(features), aux

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def _set_classifier(self, linear: nn.Linear) -> None:
        self.fc = linear

    def aux_classifiers(self) -> dict[str, nn.Linear]:
        return {"aux1": self.aux1.fc2, "aux2": self.aux2.fc2}

    def _set_aux_classifier(self, name: str, linear: nn.Linear) -> None:
        getattr(self, name).fc2 = linear


@register_model
def googlenet(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    small_input: bool = False,
    dropout: float = 0.2,
    aux_dropout: float = 0.7,
) -> GoogLeNet:
    return GoogLeNet(
        num_classes=num_classes,
        in_chans=in_chans,
        small_input=small_input,
        dropout=dropout,
        aux_dropout=aux_dropout,
    )
