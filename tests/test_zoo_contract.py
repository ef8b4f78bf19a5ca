"""Every registered model honours the head contract, builds for any class and channel count with
both stems, and trains: one parametrized test set over `list_models()`."""

from __future__ import annotations

import inspect
import re

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.models._head import NoClassifier
from zoo.models._input_size import smallest_image_size
from zoo.models._registry import _BUILDERS
from zoo.models.densenet import DenseLayer

# The largest variants cost tens of seconds each on two CPU cores; CI still runs them (`-m slow` is
# not deselected there), a developer can skip them with `-m "not slow"`.
BIG = {"vgg19", "vgg19_bn", "resnet101", "resnet152", "densenet161", "densenet201"}


def _params(names):
    return [pytest.param(name, marks=pytest.mark.slow) if name in BIG else name for name in names]


def _input(small_input: bool, in_chans: int, batch: int = 2) -> torch.Tensor:
    size = 32 if small_input else 64
    return torch.randn(batch, in_chans, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", _params(zoo.list_models()))
@pytest.mark.parametrize("small_input", [True, False], ids=["small", "standard"])
def test_shapes_gradients_and_head_contract(name: str, small_input: bool) -> None:
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=5, in_chans=2, small_input=small_input)
    assert isinstance(model, zoo.ClassifierModel)
    x = _input(small_input, in_chans=2)

    model.train()
    logits, aux = model.forward_train(x)
    assert logits.shape == (2, 5)
    assert all(a.shape == (2, 5) for a in aux)
    loss = logits.square().mean() + sum(a.square().mean() for a in aux)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
        assert model.get_classifier().in_features == model.num_features
        model.reset_classifier(7)
        assert model.num_classes == 7
        assert model(x).shape == (2, 7)
        assert model.get_classifier().out_features == 7
        for head in model.aux_classifiers().values():
            assert head.out_features == 7
        model.reset_head(3)
        assert model(x).shape == (2, 3)
        # timm's convention: no classifier, the pooled features out; and back again.
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features)
        assert all(isinstance(head, NoClassifier) for head in model.aux_classifiers().values())
        model.reset_classifier(4)
        assert model(x).shape == (2, 4)
    for name_ in model.head_names:
        assert hasattr(model, name_)
    assert isinstance(model.get_submodule(model.first_conv), torch.nn.Conv2d)
    assert model.get_submodule(model.first_conv).in_channels == 2


def _digits_batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images[:n], dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5, torch.tensor(digits.target[:n])


@pytest.mark.parametrize("name", _params(zoo.list_models()))
def test_loss_falls_on_a_fixed_batch_of_digits(name: str) -> None:
    torch.manual_seed(0)
    x, y = _digits_batch(4)
    # Without dropout a healthy network memorises four images within a few steps. (With eight,
    # plain VGG, which has no batch norm, needed all 50 steps: 33 s of the suite for VGG-19.) The
    # bar is a clear fall within 50 steps, and every learner stops as soon as it is met.
    model = zoo.create_model(name, num_classes=10, in_chans=1, small_input=True, dropout=0.0)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)

    def step() -> float:
        optimizer.zero_grad()
        logits, aux = model.forward_train(x)
        loss = F.cross_entropy(logits, y) + sum(model.aux_loss_weight * F.cross_entropy(a, y) for a in aux)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    first = best = step()
    for _ in range(49):
        best = min(best, step())
        if best < 0.8 * first:
            break
    assert best < 0.92 * first, f"{name}: loss went {first:.3f} -> at best {best:.3f}"


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_model_takes_a_dropout_rate_that_acts_only_in_training(name: str) -> None:
    assert "dropout" in inspect.signature(_BUILDERS[name]).parameters
    options = {"num_classes": 3, "in_chans": 1, "small_input": True}
    # The smallest image the network takes (found on the meta device) keeps even the deepest ones fast.
    size = smallest_image_size({"name": name, **options}, 1) or 1
    torch.manual_seed(0)
    model = zoo.create_model(name, dropout=0.5, **options)
    x = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x)), f"{name}: dropout=0.5 changes nothing in training"
        model.eval()
        assert torch.equal(model(x), model(x)), f"{name}: dropout acts in evaluation"


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(zoo.UnknownModelError) as error:
        zoo.create_model("resnet9000")
    assert "resnet9000" in str(error.value) and "lenet5" in str(error.value)


def test_registry_refuses_a_duplicate_name() -> None:
    def lenet5():  # same name as a registered variant
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model(lenet5)


@pytest.mark.parametrize("name", ["lenet5", "googlenet"])
def test_num_classes_zero_builds_a_feature_extractor_whose_head_can_come_back(name: str) -> None:
    model = zoo.create_model(name, num_classes=0, in_chans=1, small_input=True).eval()
    x = torch.randn(2, 1, 32, 32)
    assert isinstance(model.get_classifier(), NoClassifier) and model.num_classes == 0
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x), pre_logits=True))
    # A new head takes the model's device and dtype, whatever the layer it replaces.
    model.to(torch.float64).reset_classifier(5)
    assert model.get_classifier().weight.dtype == torch.float64
    assert model(x.double()).shape == (2, 5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_classes": -1}, "num_classes must be an integer >= 0 (0: no classifier"),
        ({"num_classes": 10.0}, "num_classes must be an integer >= 0"),
        ({"num_classes": True}, "num_classes must be an integer >= 0"),
        ({"in_chans": 0}, "in_chans must be an integer >= 1 (image channels), got 0"),
        ({"small_input": "no"}, "small_input must be True or False, got 'no'"),
        # DenseNet drops only for a rate > 0: a negative one was silently no dropout.
        ({"dropout": -0.1}, "dropout must be a number in [0, 1), got -0.1"),
        ({"aux_dropout": 1.0}, "aux_dropout must be a number in [0, 1), got 1.0"),
        ({"pretrained": True}, "the zoo ships no weights of its own"),
    ],
)
def test_bad_options_are_named_before_anything_is_built(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        zoo.create_model("densenet121", **options)


@pytest.mark.parametrize(
    ("name", "option", "message"),
    [
        (
            "resnet18",
            "num_class",
            "resnet18 takes no option 'num_class' (did you mean num_classes?); its options",
        ),
        ("lenet5", "weights", "lenet5 takes no option 'weights'; its options: num_classes, in_chans, "),
    ],
)
def test_an_option_the_model_does_not_take_is_named_with_those_it_takes(
    name: str, option: str, message: str
) -> None:
    # Python's "unexpected keyword argument" named neither the nearest option nor the others.
    with pytest.raises(TypeError, match=re.escape(message)):
        zoo.create_model(name, **{option: 10})


def test_timm_spellings_work() -> None:
    assert zoo.list_models("resnet*") == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    assert zoo.list_models() == sorted(_BUILDERS)
    assert zoo.list_models(["vgg11*", "lenet*"]) == ["lenet5", "vgg11", "vgg11_bn"]  # a list, as timm's
    with pytest.raises(TypeError, match="pattern must be a string or a list of strings"):
        zoo.list_models([None])
    assert isinstance(zoo.create_model("lenet5", pretrained=False), zoo.ClassifierModel)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 0"):
        zoo.create_model("lenet5").reset_classifier(-2)


def test_none_options_are_dropped() -> None:
    model = zoo.create_model("lenet5", num_classes=3, in_chans=None, dropout=None)
    assert model.get_submodule(model.first_conv).in_channels == 1


def test_lenet5_has_the_published_parameter_count() -> None:
    model = zoo.create_model("lenet5", num_classes=10, in_chans=1)
    assert sum(p.numel() for p in model.parameters()) == 61_706


# Guards the small-input stems: no stride or pool before the first stage, so 32 px ends at 4 x 4.
@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_the_small_input_stem_keeps_the_full_resolution_into_the_first_stage(name: str) -> None:
    with torch.device("meta"):
        model = zoo.create_model(name, num_classes=10, in_chans=3, small_input=True).eval()
        features = model.forward_features(torch.empty(1, 3, 32, 32))
    assert features.shape[-2:] == (4, 4)


# Guards memory_efficient reaching every dense layer of each DenseNet variant.
@pytest.mark.parametrize("name", zoo.list_models("densenet*"))
def test_memory_efficient_reaches_every_dense_layer(name: str) -> None:
    with torch.device("meta"):
        model = zoo.create_model(name, memory_efficient=True)
    layers = [module for module in model.modules() if isinstance(module, DenseLayer)]
    assert layers and all(layer.memory_efficient for layer in layers)
