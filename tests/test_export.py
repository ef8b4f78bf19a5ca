"""Deployment: zoo models export with torch.export for any batch size, and the exported program
computes what the eager model does. (TorchScript is deprecated in torch and not supported.)"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.models._input_size import smallest_image_size
from zoo.models._registry import _BUILDERS
from zoo.training.checkpoint import load_run_checkpoint, module_from_checkpoint
from zoo.training.head_surgery import rebuild_head, transplant

# One variant per block type. The other variants of a family run the same forward code with more
# layers or wider ones (their builders pass depth and width as data), so exporting them would add
# tens of seconds and no code path.
VARIANTS = ["lenet5", "alexnet", "vgg11", "vgg11_bn", "googlenet", "resnet18", "resnet50", "densenet121"]
# Each with both stems (the standard one takes torchvision's weights), but DenseNet's small stem runs
# with memory_efficient, which a checkpoint's model kwargs may carry: it sends the dense layers
# through torch's checkpointing, and a third DenseNet export would cost seconds for no other path.
CASES = [
    pytest.param(name, {"small_input": small_input}, id=f"{name}-{'small' if small_input else 'standard'}")
    for name in VARIANTS
    for small_input in (True, False)
    if (name, small_input) != ("densenet121", True)
] + [
    pytest.param(
        "densenet121", {"small_input": True, "memory_efficient": True}, id="densenet121-small-memeff"
    )
]

TRACED_BATCH = 2
# Neither is the traced batch size; 1 is where a graph specialised at trace time breaks first.
CHECKED_BATCHES = (1, 3)


def _images(batch: int, in_chans: int, size: int) -> torch.Tensor:
    return torch.randn(batch, in_chans, size, size, generator=torch.Generator().manual_seed(batch))


def _smallest_size(name: str, options: dict) -> int:
    # Found on the meta device; the smallest image a network takes keeps even DenseNet quick.
    return smallest_image_size({"name": name, **options}, 1) or 1


def _export_and_compare(model: torch.nn.Module, in_chans: int, size: int) -> torch.nn.Module:
    """The model exported with a dynamic batch size, checked against eager at other batch sizes."""
    model.eval()
    exported = torch.export.export(
        model,
        (_images(TRACED_BATCH, in_chans, size),),
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    ).module()
    for batch in CHECKED_BATCHES:
        x = _images(batch, in_chans, size)
        with torch.no_grad():
            # The same ATen kernels run in both: only float32 rounding may differ.
            torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-5)
    return exported


@pytest.mark.parametrize(("name", "options"), CASES)
def test_a_model_exports_with_a_dynamic_batch_and_computes_what_eager_does(name: str, options: dict) -> None:
    options = {"num_classes": 10, "in_chans": 3, **options}
    torch.manual_seed(0)
    _export_and_compare(zoo.create_model(name, **options), 3, _smallest_size(name, options))


def test_every_family_has_a_variant_exported() -> None:
    families = {_BUILDERS[name].__module__ for name in zoo.list_models()}
    assert {_BUILDERS[name].__module__ for name in VARIANTS} == families


def test_a_feature_extractor_exports_with_its_pooled_features_out() -> None:
    # GoogLeNet: its auxiliary heads lose their classifiers too.
    options = {"num_classes": 10, "in_chans": 1, "small_input": True}
    size = _smallest_size("googlenet", options)
    torch.manual_seed(0)
    model = zoo.create_model("googlenet", **options)
    model.reset_classifier(0)
    exported = _export_and_compare(model, 1, size)
    assert exported(_images(3, 1, size)).shape == (3, model.num_features)


def test_a_finetuned_model_exports_with_a_dynamic_batch() -> None:
    # finetune.py's surgery: a head extended to new classes, the first convolution adapted to grey.
    torch.manual_seed(0)
    source = zoo.create_model("lenet5", num_classes=3, in_chans=3)
    rebuild_head(source, ["b", "c", "d", "e"], mode="extend", source_class_names=["a", "b", "c"])
    target = zoo.create_model("lenet5", num_classes=4, in_chans=1)
    transplant(source, target)
    exported = _export_and_compare(target, 1, 32)
    assert exported(_images(3, 1, 32)).shape == (3, 4)


def test_a_trained_run_exports_with_its_normalisation(trained_run) -> None:
    # The Lightning module, not its .net: it takes raw images in [0, 1] and normalises them with the
    # statistics of the data it was trained on, which a deployed program must do too.
    checkpoint = load_run_checkpoint(trained_run / "checkpoints" / "best.ckpt")
    module = module_from_checkpoint(checkpoint)
    raw = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    exported = _export_and_compare(module, 1, 32)
    with torch.no_grad():
        # Without the normalisation the network alone computes something else.
        assert not torch.allclose(exported(raw), module.net(raw), atol=1e-3)
