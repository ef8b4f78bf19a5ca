"""Fine-tuning's model surgery, in process: new heads for every family, the first convolution for new
channels, and the three kinds of source (run checkpoint, state dict, torchvision's weights)."""

from __future__ import annotations

import copy
import functools
import re
import socket
import urllib.error
from pathlib import Path

import pytest
import torch

import zoo
from zoo.data import DataSpec
from zoo.downloads import STALL_TIMEOUT_S
from zoo.training import weight_sources
from zoo.training.errors import UserError
from zoo.training.finetune_request import check_finetune_options, check_finetune_request
from zoo.training.finetuning import FineTuneClassifier, build_finetune_module
from zoo.training.head_surgery import adapt_input_channels, rebuild_head, transplant
from zoo.training.module import ImageClassifier

from .conftest import compose_config

# One model per family, all with the small stem at 32 px.
FAMILIES = ["lenet5", "alexnet", "vgg11", "googlenet", "resnet18", "densenet121"]
OLD = ["a", "b", "c"]
# Two classes the source knew (in another order), two it did not.
NEW = ["c", "x", "a", "y"]


def _images(channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))


def _finetuned(source: zoo.ClassifierModel, name: str, classes: list[str], in_chans: int = 3, **head):
    net = copy.deepcopy(source)
    rebuild_head(net, classes, source_class_names=OLD, **head)
    target = zoo.create_model(name, num_classes=len(classes), in_chans=in_chans, small_input=True)
    transplant(net, target)
    return target.eval()


@pytest.mark.parametrize("name", FAMILIES)
def test_replace_and_extend_give_the_new_width_and_extend_keeps_old_logits(name: str) -> None:
    torch.manual_seed(0)
    source = zoo.create_model(name, num_classes=len(OLD), in_chans=3, small_input=True).eval()
    x = _images()
    with torch.no_grad():
        source_features = source.forward_head(source.forward_features(x), pre_logits=True)
        source_logits = source(x)

    replaced = _finetuned(source, name, ["p", "q", "r", "s", "t"], mode="replace")
    extended = _finetuned(source, name, NEW, mode="extend")

    # Every backbone tensor is the source's; replace leaves the old rows behind.
    head_prefixes = tuple(f"{head}." for head in source.head_names)
    target_state = replaced.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith(head_prefixes):
            assert torch.equal(target_state[key], value), key

    # replace: every final linear layer (the auxiliary heads' too) starts afresh, none of the old rows kept.
    source_linears = [source.get_classifier(), *source.aux_classifiers().values()]
    for old, new in zip(
        source_linears, [replaced.get_classifier(), *replaced.aux_classifiers().values()], strict=True
    ):
        assert not torch.equal(new.weight[: len(OLD)], old.weight), "replace kept the old rows"

    # extend: the kept rows are bit for bit the source's, so before any training the extended model
    # gives the source's logits for "c" and "a" (up to the rounding of a wider matrix product). The
    # auxiliary heads (GoogLeNet) keep theirs too.
    extended_linears = [extended.get_classifier(), *extended.aux_classifiers().values()]
    assert len(extended_linears) == len(source_linears)
    for old, new in zip(source_linears, extended_linears, strict=True):
        assert torch.equal(new.weight[[0, 2]], old.weight[[2, 0]])
        assert torch.equal(new.bias[[0, 2]], old.bias[[2, 0]])
    with torch.no_grad():
        features = extended.forward_head(extended.forward_features(x), pre_logits=True)
        logits = extended(x)
    assert torch.equal(features, source_features)
    scale = source_logits.abs().max().clamp_min(1e-6)
    assert (logits[:, [0, 2]] - source_logits[:, [2, 0]]).abs().max() <= 1e-5 * scale

    for model, width in ((replaced, 5), (extended, len(NEW))):
        assert model.num_classes == width
        assert model(x).shape == (2, width)
        train_logits, aux = model.train().forward_train(x)  # auxiliary heads too (GoogLeNet)
        assert train_logits.shape == (2, width) and all(a.shape == (2, width) for a in aux)
        model.eval()


def test_reset_classifier_reinitialises_the_whole_fully_connected_head() -> None:
    torch.manual_seed(0)
    source = zoo.create_model("alexnet", num_classes=3, in_chans=3, small_input=True)
    last = _finetuned(source, "alexnet", ["p", "q"], mode="replace", reset="last")
    whole = _finetuned(source, "alexnet", ["p", "q"], mode="replace", reset="classifier")
    # classifier.1 and .4 are AlexNet's hidden fully connected layers, classifier.6 the last one.
    assert torch.equal(last.classifier[1].weight, source.classifier[1].weight)
    assert not torch.equal(whole.classifier[1].weight, source.classifier[1].weight)
    assert not torch.equal(whole.classifier[4].weight, source.classifier[4].weight)
    assert torch.equal(whole.features[0].weight, source.features[0].weight)


# Guards reset_head over every head a network names: GoogLeNet's auxiliary heads start afresh too.
def test_reset_head_reinitialises_the_auxiliary_heads_too() -> None:
    torch.manual_seed(0)
    net = zoo.create_model("googlenet", num_classes=3, in_chans=3, small_input=True)
    before = copy.deepcopy(net.state_dict())
    net.reset_head(2)
    after = net.state_dict()
    for name in ("aux1.conv.conv.weight", "aux1.fc1.weight", "aux2.fc1.weight"):
        assert not torch.equal(after[name], before[name]), f"{name} kept its trained values"
    assert torch.equal(after["conv1.conv.weight"], before["conv1.conv.weight"])


def test_extend_refuses_a_source_without_class_names_and_a_full_reset() -> None:
    net = zoo.create_model("lenet5", num_classes=3)
    with pytest.raises(UserError, match="no class names"):
        rebuild_head(net, NEW, mode="extend", source_class_names=None)
    with pytest.raises(UserError, match="contradicts"):
        rebuild_head(net, NEW, mode="extend", reset="classifier", source_class_names=OLD)
    with pytest.raises(UserError, match="at least 2 classes"):
        rebuild_head(net, ["only"], mode="replace")


def test_first_convolution_adapts_between_rgb_and_grey() -> None:
    weight = torch.randn(4, 3, 3, 3)
    assert torch.equal(adapt_input_channels(weight, 1), weight.sum(dim=1, keepdim=True))
    grey = torch.randn(4, 1, 3, 3)
    assert torch.allclose(adapt_input_channels(grey, 3), grey.repeat(1, 3, 1, 1) / 3)

    # RGB source on grey data: the grey image g gives what the source gives on (g, g, g).
    torch.manual_seed(0)
    rgb = zoo.create_model("resnet18", num_classes=3, in_chans=3, small_input=True).eval()
    grey_net = _finetuned(rgb, "resnet18", OLD, in_chans=1, mode="extend")
    g = _images(channels=1)
    with torch.no_grad():
        assert torch.allclose(grey_net(g), rgb(g.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)

    # Grey source on RGB data: an RGB image with equal channels gives the grey source's answer.
    lenet = zoo.create_model("lenet5", num_classes=3, in_chans=1).eval()
    rgb_net = _finetuned(lenet, "lenet5", OLD, in_chans=3, mode="extend")
    with torch.no_grad():
        assert torch.allclose(rgb_net(g.repeat(1, 3, 1, 1)), lenet(g), atol=1e-5, rtol=1e-4)


# --- sources --------------------------------------------------------------------------------------
DIGITS = DataSpec(
    class_names=tuple(str(d) for d in range(10)), channels=1, image_size=32, mean=(0.3,), std=(0.3,)
)


def _cfg(*overrides: str):
    return compose_config("logger=none", *overrides, config_name="finetune")


def test_finetune_config_composes_with_every_source() -> None:
    cfg = _cfg("ckpt_path=x.ckpt")
    assert cfg.get("model") is None and cfg.task_name == "finetune"
    assert cfg.finetune.head == "replace" and cfg.callbacks.backbone_freeze.freeze is False
    cfg = _cfg("pretrained=torchvision", "model=resnet18", "finetune.unfreeze_at_epoch=2")
    assert cfg.model.name == "resnet18" and cfg.callbacks.backbone_freeze.unfreeze_at_epoch == 2


def test_a_torchvision_state_dict_keeps_its_standard_stem(torchvision_resnet18: Path) -> None:
    source = weight_sources.load_source(_cfg(f"ckpt_path={torchvision_resnet18}", "model=resnet18"), DIGITS)
    # 32 px data would choose the small stem, but these tensors fit only the standard one.
    assert source.model == {
        "name": "resnet18",
        "num_classes": 1000,
        "in_chans": 3,
        "small_input": False,
        "dropout": 0.0,
    }
    assert source.kind == "state_dict" and source.class_names is None
    net, absent = source.build_net()
    assert absent == []
    saved = torch.load(torchvision_resnet18, weights_only=True)
    assert all(torch.equal(net.state_dict()[key], value) for key, value in saved.items())


def test_a_state_dict_without_batch_norm_step_counters_loads(
    torchvision_resnet18: Path, tmp_path: Path
) -> None:
    # Older files have no num_batches_tracked: BatchNorm fills it in, so it must not count as missing.
    saved = torch.load(torchvision_resnet18, weights_only=True)
    weights = {key: value for key, value in saved.items() if not key.endswith("num_batches_tracked")}
    torch.save(weights, tmp_path / "old.pth")
    source = weight_sources.load_source(_cfg(f"ckpt_path={tmp_path / 'old.pth'}", "model=resnet18"), DIGITS)
    assert source.model["small_input"] is False
    net, absent = source.build_net()
    assert absent == []
    assert all(torch.equal(net.state_dict()[key], value) for key, value in weights.items())


def test_a_source_of_another_architecture_is_refused(torchvision_resnet18: Path) -> None:
    with pytest.raises(UserError, match="does not hold vgg11 weights"):
        weight_sources.load_source(_cfg(f"ckpt_path={torchvision_resnet18}", "model=vgg11"), DIGITS)
    with pytest.raises(UserError, match="add model=NAME"):
        weight_sources.load_source(_cfg(f"ckpt_path={torchvision_resnet18}"), DIGITS)


def test_the_early_architecture_check_leaves_what_a_checkpoint_does_not_describe_to_the_loader(
    tmp_path: Path,
) -> None:
    # Read before the run builds anything, from the checkpoint's description alone: a state dict, a
    # run's hyperparameters without a model section, or a model section without small_input give
    # nothing to compare, and the full load later says what is wrong with them, if anything.
    path = tmp_path / "best.ckpt"
    for content in (
        {"conv.weight": torch.zeros(1)},
        {"state_dict": {}, "hyper_parameters": {"data": {}}},
        {"state_dict": {}, "hyper_parameters": {"model": {"name": "lenet5"}}},
    ):
        torch.save(content, path)
        weight_sources.check_source_architecture(
            _cfg(f"ckpt_path={path}", "model=lenet5", "model.small_input=false")
        )
    with pytest.raises(UserError, match="holds a model=lenet5, not model=alexnet"):
        weight_sources.check_source_architecture(_cfg(f"ckpt_path={path}", "model=alexnet"))


@pytest.mark.parametrize(
    ("content", "message"), [({"a": 1}, "not a state dict"), (torch.zeros(3), "holds a Tensor")]
)
def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "weights.pth"
    torch.save(content, path)
    with pytest.raises(UserError, match=message):
        weight_sources.load_source(_cfg(f"ckpt_path={path}", "model=resnet18"), DIGITS)


def test_no_source_and_too_few_classes_are_refused() -> None:
    with pytest.raises(UserError, match="needs a source"):
        weight_sources.load_source(_cfg(), DIGITS)
    one_class = DataSpec(class_names=("only",), channels=1, image_size=32, mean=(0.3,), std=(0.3,))
    with pytest.raises(UserError, match="at least 2 classes, but the new data has 1"):
        build_finetune_module(_cfg("ckpt_path=x.ckpt"), one_class)


def test_torchvision_densenet_files_with_old_layer_names_load() -> None:
    # torchvision's published DenseNet files name layers norm.1/conv.2 where the modules are now norm1/conv2.
    with torch.device("meta"):
        current = zoo.create_model("densenet121").state_dict()
    old = {
        key.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): value for key, value in current.items()
    }
    assert set(old) != set(current)
    model = {"name": "densenet121", "num_classes": 1000, "in_chans": 3, "small_input": False}
    assert set(weight_sources._state_dict_keys(old, model)) == set(current)


def test_torchvision_weights_offline_name_the_file_to_place(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(UserError) as error:
        weight_sources.load_source(_cfg("pretrained=torchvision", "model=resnet18"), DIGITS)
    assert f"place the file at {expected}" in str(error.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in str(error.value)
    with pytest.raises(UserError, match="publishes no weights for lenet5"):
        weight_sources.load_source(_cfg("pretrained=torchvision", "model=lenet5"), DIGITS)


def test_a_stalled_weights_download_gives_up_and_the_default_timeout_comes_back(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    waited = []

    def stalled(url, dst, *args, **kwargs):
        waited.append(socket.getdefaulttimeout())
        raise TimeoutError("timed out")

    monkeypatch.setattr(torch.hub, "download_url_to_file", stalled)
    socket.setdefaulttimeout(None)
    with pytest.raises(UserError, match=r"could not download .* \(timed out\)"):
        weight_sources.load_source(_cfg("pretrained=torchvision", "model=resnet18"), DIGITS)
    assert waited == [STALL_TIMEOUT_S]
    assert socket.getdefaulttimeout() is None


def test_torchvision_weights_in_the_hub_cache_are_used(
    tmp_path: Path, monkeypatch, torchvision_resnet18
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(torchvision_resnet18.read_bytes())
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)  # no network needed
    cfg = _cfg("pretrained=torchvision", "model=resnet18", "finetune.head=extend")
    source = weight_sources.load_source(cfg, DIGITS)
    assert source.kind == "torchvision" and source.origin == "ResNet18_Weights.IMAGENET1K_V1"
    assert len(source.class_names) == 1000 and source.mean == [0.485, 0.456, 0.406]
    # ImageNet's class names include no digit, so extend keeps no row; grey data sums the RGB filters.
    module, summary = build_finetune_module(cfg, DIGITS)
    assert isinstance(module, FineTuneClassifier) and module.net.num_classes == 10
    assert module.hparams["source"]["name"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert module.hparams["source"]["kept_classes"] == []
    assert "from 3 to 1 channels" in summary
    # The source's RGB mean does not fit grey data, so the data's own is used.
    assert module.hparams["data"]["mean"] == [0.3]


def test_torchvision_googlenet_weights_get_the_input_statistics_torchvision_feeds_them(
    tmp_path: Path, monkeypatch
) -> None:
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = weight_sources.cached_weights_path(weight_sources.torchvision_weights("googlenet"))
    cached.parent.mkdir(parents=True)
    # Saved as torchvision saves its published GoogLeNet: without the auxiliary heads.
    published = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    torch.save(published.state_dict(), cached)
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    source = weight_sources.load_source(_cfg("pretrained=torchvision", "model=googlenet"), DIGITS)
    # torchvision's transform_input maps ImageNet-normalised input x to x * std / 0.5 + (mean - 0.5) / 0.5,
    # which is the raw image normalised with mean 0.5 and std 0.5.
    assert source.mean == [0.5, 0.5, 0.5] and source.std == [0.5, 0.5, 0.5]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    raw = torch.rand(1, 3, 8, 8)
    published.transform_input = True  # as torchvision's builder sets it when it loads the weights
    transformed = published._transform_input((raw - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    assert torch.allclose(transformed, (raw - 0.5) / 0.5, atol=1e-5)


def test_parameter_groups_split_head_and_backbone_with_the_scaled_rate(torchvision_resnet18) -> None:
    cfg = _cfg(
        f"ckpt_path={torchvision_resnet18}",
        "model=resnet18",
        "finetune.backbone_lr_scale=0.1",
        "optimizer.lr=0.01",
        "scheduler=onecycle",
    )
    module, _ = build_finetune_module(cfg, DIGITS)
    head, backbone = module.parameter_groups()
    assert (head["name"], backbone["name"]) == ("head", "backbone")
    assert {id(p) for p in head["params"]} == {id(p) for p in module.net.fc.parameters()}
    assert backbone["lr"] == pytest.approx(0.001)
    assert len(head["params"]) + len(backbone["params"]) == len(list(module.net.parameters()))
    # One-cycle sets each group's peak from max_lr: it gets one peak per group.
    assert module.scheduler_factory.keywords["max_lr"] == pytest.approx([0.01, 0.001])
    # Flat: a partial of Hydra's partial would hide total_steps=None, which configure_optimizers
    # reads to fill in the run's step count (a short onecycle run is in test_finetune_resume.py).
    assert module.scheduler_factory.keywords["total_steps"] is None
    assert not isinstance(module.scheduler_factory.func, functools.partial)


@pytest.mark.parametrize("scale", ["inf", "-1", "nan", "true"])
def test_backbone_lr_scale_must_be_a_finite_number_at_least_zero(scale: str) -> None:
    with pytest.raises(UserError, match=r"finetune.backbone_lr_scale must be a finite number >= 0"):
        check_finetune_options(_cfg("ckpt_path=x.ckpt", f"finetune.backbone_lr_scale={scale}"))


# Guards the unfreeze_at_epoch rule's edge: epoch 0 (no head-only epoch) is taken, -1 is not.
def test_unfreeze_at_epoch_takes_zero_and_refuses_a_negative_epoch() -> None:
    check_finetune_options(_cfg("ckpt_path=x.ckpt", "finetune.unfreeze_at_epoch=0"))
    with pytest.raises(
        UserError, match=re.escape("finetune.unfreeze_at_epoch must be an integer >= 0 or null")
    ):
        check_finetune_options(_cfg("ckpt_path=x.ckpt", "finetune.unfreeze_at_epoch=-1"))


def _run_checkpoint(path: Path, **model) -> Path:
    """A checkpoint as train.py writes one (weights and plain hyperparameters), of a grey LeNet-5."""
    module = ImageClassifier(
        model={"name": "lenet5", "num_classes": 10, "in_chans": 1, "small_input": True, **model},
        data=DIGITS.to_dict(),
    )
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def test_model_settings_given_with_a_run_checkpoint_are_honoured(tmp_path: Path) -> None:
    source = _run_checkpoint(tmp_path / "best.ckpt", dropout=0.1)
    # config.yaml records model.dropout=0.5; the run used to train with the checkpoint's 0.1.
    cfg = _cfg(f"ckpt_path={source}", "model=lenet5", "model.dropout=0.5")
    assert weight_sources.load_source(cfg, DIGITS).model["dropout"] == 0.5
    module, _ = build_finetune_module(cfg, DIGITS)
    assert module.hparams["model"]["dropout"] == 0.5
    assert {m.p for m in module.net.modules() if isinstance(m, torch.nn.Dropout)} == {0.5}
    # Without model= the checkpoint's own settings stand.
    module, _ = build_finetune_module(_cfg(f"ckpt_path={source}"), DIGITS)
    assert module.hparams["model"]["dropout"] == 0.1
    with pytest.raises(UserError, match="trained with model.small_input=true.*leave model.small_input out"):
        weight_sources.load_source(
            _cfg(f"ckpt_path={source}", "model=lenet5", "model.small_input=false"), DIGITS
        )


def test_shape_settings_given_with_a_run_checkpoint_are_the_checkpoints(tmp_path: Path) -> None:
    # The weights fix the channel and class counts: model.in_chans and model.num_classes given with a
    # run checkpoint must not replace the checkpoint's.
    source = _run_checkpoint(tmp_path / "best.ckpt")
    cfg = _cfg(f"ckpt_path={source}", "model=lenet5", "model.in_chans=3", "model.num_classes=5")
    model = weight_sources.load_source(cfg, DIGITS).model
    assert model["in_chans"] == 1 and model["num_classes"] == 10


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("finetune.head=foo", "ckpt_path=x.ckpt"), "finetune.head must be one of replace, extend"),
        (
            ("finetune.backbone_lr_scale=nan", "ckpt_path=x.ckpt"),
            "finetune.backbone_lr_scale must be a finite",
        ),
        (("pretrained=foo",), "pretrained must be torchvision (or null), got 'foo'"),
        ((), "finetune.py needs a source: ckpt_path="),
    ],
)
def test_a_fine_tune_request_is_checked_before_the_run_builds_anything(
    tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:
    # finetune.py checks these before its trainer (and Lightning's device report) exists.
    with pytest.raises(UserError, match=re.escape(message)):
        check_finetune_request(_cfg(*overrides))
    # A resumed fine-tune names its checkpoint, and its source is not read again: only the
    # checkpoint's first bytes are looked at (a zip's, here).
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"PK\x03\x04")
    check_finetune_request(_cfg(f"resume_ckpt={last}"))
    with pytest.raises(UserError, match="is empty"):
        last.write_bytes(b"")
        check_finetune_request(_cfg(f"resume_ckpt={last}"))


@pytest.mark.parametrize("value", ["true", "[a,b]", "{a:1}", "123"])
def test_a_ckpt_path_that_is_no_path_is_refused(value: str) -> None:
    # The same line the config rules give on the command line, so the API and the CLI agree.
    with pytest.raises(
        UserError,
        match=r"^ckpt_path must be a path to a checkpoint file \(for a file named 123: \./123\), got ",
    ):
        weight_sources.load_source(_cfg(f"ckpt_path={value}"), DIGITS)


def test_a_numeric_file_name_is_read_when_spelled_as_a_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="checkpoint 123 does not exist"):
        weight_sources.load_source(_cfg("ckpt_path=./123"), DIGITS)
    _run_checkpoint(tmp_path / "123")
    assert weight_sources.load_source(_cfg("ckpt_path=./123"), DIGITS).origin == "123"


def test_a_fine_tune_resumed_on_data_of_other_channels_is_refused(tmp_path: Path) -> None:
    saved = _run_checkpoint(tmp_path / "last.ckpt")
    rgb = DataSpec(class_names=DIGITS.class_names, channels=3, image_size=32, mean=(0.3,) * 3, std=(0.3,) * 3)
    with pytest.raises(UserError, match="fine-tuned on 1-channel images, but this data has 3; resume with"):
        build_finetune_module(_cfg("ckpt_path=x.ckpt", f"resume_ckpt={saved}"), rgb)


def test_weights_whose_shapes_fix_a_stem_too_large_for_the_images_say_what_to_change(tmp_path: Path) -> None:
    # torchvision's AlexNet layout (the standard stem) needs 63 px; following builders' hint to take
    # the small stem instead led to "does not hold alexnet weights ... pass the model= it was saved from".
    with torch.device("meta"):
        shapes = {key: value.shape for key, value in zoo.create_model("alexnet").state_dict().items()}
    # Only the shapes matter here: stride-0 views keep the file a few bytes.
    path = tmp_path / "alexnet.pth"
    torch.save({key: torch.zeros(1).expand(shape) for key, shape in shapes.items()}, path)
    rgb = DataSpec(class_names=("a", "b"), channels=3, image_size=32, mean=(0.5,) * 3, std=(0.2,) * 3)
    for extra in ((), ("model.small_input=false",)):
        with pytest.raises(UserError) as error:
            weight_sources.load_source(_cfg(f"ckpt_path={path}", "model=alexnet", *extra), rgb)
        message = str(error.value)
        assert "for the standard stem" in message and "set data.image_size=63 or more" in message
        assert "small_input=true" not in message
    with pytest.raises(UserError) as error:
        weight_sources.load_source(_cfg(f"ckpt_path={path}", "model=alexnet", "model.small_input=true"), rgb)
    message = str(error.value)
    assert "leave model.small_input out, and set data.image_size=63 or more" in message
    assert "pass the model=" not in message


def test_the_run_record_of_a_fine_tune_from_a_run_checkpoint_names_its_network(tmp_path: Path) -> None:
    # finetune.py's config leaves model to a run checkpoint, so the run folder's config.yaml did not
    # say which network was trained; it records the one built from the checkpoint.
    import yaml

    from zoo.training.fit import fit_test_and_record, start_run

    source = _run_checkpoint(tmp_path / "best.ckpt", dropout=0.1)
    cfg = _cfg(f"ckpt_path={source}", "trainer.fast_dev_run=true", f"paths.output_dir={tmp_path / 'run'}")
    run_dir, datamodule, trainer = start_run(cfg)
    module, _ = build_finetune_module(cfg, datamodule.spec)
    fit_test_and_record(cfg, trainer, module, datamodule, run_dir, resume_from=None)
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
    assert recorded == module.hparams["model"]
    assert recorded["name"] == "lenet5" and recorded["dropout"] == 0.1  # the checkpoint's settings
