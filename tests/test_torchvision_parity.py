"""Where torchvision has the same architecture, its state dict loads strictly into ours and both
give the same outputs: users can bring torchvision weights, and the math is provably the same."""

from __future__ import annotations

import pytest
import torch
import torchvision

import zoo

from .test_zoo_contract import _params

SHARED = [name for name in zoo.list_models() if name in set(torchvision.models.list_models())]

# Published by torchvision (its model docs list the same numbers); checked against our builders.
# GoogLeNet's figure counts the network used for inference, without the two training-only aux heads.
PUBLISHED_PARAMS = {
    "resnet18": 11_689_512,
    "vgg16": 138_357_544,
    "densenet121": 7_978_856,
    "googlenet": 6_624_904,
    "alexnet": 61_100_840,
}


def test_every_classic_family_has_torchvision_twins() -> None:
    # Guards the parity test below against silently running over an empty list.
    assert set(PUBLISHED_PARAMS) <= set(SHARED)


def _randomise(model: torch.nn.Module) -> None:
    """Weights and batch-norm statistics that carry signal through every layer. torchvision's own
    GoogLeNet initialisation (std 0.01, no batch-norm scaling) leaves its output equal to the last
    layer's bias to 1e-12, which would make the comparison below blind to the whole trunk."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2 / fan_in) ** 0.5
                )
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
            elif isinstance(module, torch.nn.BatchNorm2d):
                for tensor, low in ((module.weight, 0.5), (module.running_var, 0.5)):
                    tensor.copy_(low + torch.rand(tensor.shape, generator=generator))
                for tensor in (module.bias, module.running_mean):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)


@pytest.mark.parametrize("name", _params(SHARED))
def test_torchvision_state_dict_loads_strictly_and_outputs_agree(name: str) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name, weights=None, num_classes=1000).eval()
    _randomise(reference)
    ours = zoo.create_model(name, num_classes=1000, in_chans=3, small_input=False).eval()

    reference_state = reference.state_dict()
    ours_state = ours.state_dict()
    assert {k: tuple(v.shape) for k, v in ours_state.items()} == {
        k: tuple(v.shape) for k, v in reference_state.items()
    }
    ours.load_state_dict(reference_state, strict=True)

    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    if name in PUBLISHED_PARAMS:
        aux = tuple(f"{head}." for head in ours.aux_classifiers())
        inference_count = sum(p.numel() for n, p in ours.named_parameters() if not n.startswith(aux))
        assert inference_count == PUBLISHED_PARAMS[name]

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    scale = expected.abs().max().clamp_min(1e-6)
    # The two images must give different outputs, or the outputs say nothing about the layers they crossed.
    assert (expected[0] - expected[1]).abs().max() > 0.01 * scale
    assert (actual - expected).abs().max() <= 1e-4 * scale
