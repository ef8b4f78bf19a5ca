"""Zoo models against torchvision's same architectures: forward and training-step throughput.

Each pair is built at 224 px with the standard stem and 1000 classes; the zoo model loads the
torchvision model's weights (strict), so both compute on the same numbers. Timed per model:
  forward  -- eval mode, no gradients;
  train    -- one SGD step (forward in train mode, cross-entropy, GoogLeNet's two auxiliary losses
              weighted 0.3 as both libraries define them, backward, step).
The two sides alternate (zoo, torchvision, torchvision, zoo, ...) for `reps` repetitions of
`iters` passes each, after a warm-up of both; throughput is the median repetition's images/s.
Target: zoo/torchvision >= 0.98.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from timing import alternate, median, paired_ratio, sync
from torch import nn

TARGET = 0.98
# One of each family: enough to show a family-wide slowdown without timing all 19 at 224 px.
SUBSET = ("resnet18", "alexnet", "vgg11", "googlenet", "densenet121")


@dataclass(frozen=True)
class Setting:
    batch: int
    iters: int  # passes per timed repetition
    reps: int  # timed repetitions per side


SETTINGS = {
    ("cpu", False): Setting(batch=4, iters=2, reps=5),
    ("cpu", True): Setting(batch=2, iters=1, reps=3),
    ("cuda", False): Setting(batch=64, iters=10, reps=5),
    ("cuda", True): Setting(batch=32, iters=5, reps=5),
}


def shared_models() -> list[str]:
    import torchvision

    import zoo

    return [name for name in zoo.list_models() if name in set(torchvision.models.list_models())]


def build_pair(name: str, device: torch.device) -> tuple[nn.Module, nn.Module]:
    import torchvision

    import zoo

    torch.manual_seed(0)
    with warnings.catch_warnings():  # GoogLeNet's notice that its default initialisation will change
        warnings.simplefilter("ignore", FutureWarning)
        reference = torchvision.models.get_model(name, weights=None, num_classes=1000)
    ours = zoo.create_model(name, num_classes=1000, in_chans=3, small_input=False)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours.to(device), reference.to(device)


def training_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "forward_train"):  # zoo: main logits and the auxiliary ones, as a list
        logits, aux_logits = model.forward_train(images)
        weight = model.aux_loss_weight
    else:
        output = model(images)
        # torchvision's GoogLeNet returns (logits, aux2, aux1) in training mode; its docs weight aux by 0.3.
        logits, aux_logits = (output[0], output[1:]) if isinstance(output, tuple) else (output, ())
        weight = 0.3
    loss = F.cross_entropy(logits, labels)
    for aux in aux_logits:
        loss = loss + weight * F.cross_entropy(aux, labels)
    return loss


def timer(model: nn.Module, mode: str, images: torch.Tensor, labels: torch.Tensor, iters: int):
    """A function that runs `iters` passes and returns the images per second."""
    device = images.device
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def once() -> None:
        if mode == "forward":
            with torch.no_grad():
                model(images)
        else:
            optimizer.zero_grad(set_to_none=True)
            training_loss(model, images, labels).backward()
            optimizer.step()

    def timed() -> tuple[float, float]:
        """Images per second by the wall clock and by this process's CPU time (steadier on a shared
        machine, and meaningful only for CPU runs)."""
        model.train(mode == "train")
        sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            once()
        sync(device)
        images_done = iters * len(images)
        return images_done / (time.perf_counter() - start), images_done / (time.process_time() - start_cpu)

    return timed


def run(
    device: torch.device, quick: bool = False, models: list[str] | None = None, reps: int | None = None
) -> list[dict]:
    torch.backends.cudnn.benchmark = device.type == "cuda"  # both sides get the same algorithm search
    setting = SETTINGS[(device.type, quick)]
    if reps is not None:
        setting = replace(setting, reps=reps)
    rows = []
    for name in models or SUBSET:
        ours, reference = build_pair(name, device)
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(setting.batch, 3, 224, 224, generator=generator).to(device)
        labels = torch.randint(0, 1000, (setting.batch,), generator=generator).to(device)
        for mode in ("forward", "train"):
            timers = {
                "zoo": timer(ours, mode, images, labels, setting.iters),
                "torchvision": timer(reference, mode, images, labels, setting.iters),
            }
            for warm in timers.values():  # allocator, cuDNN algorithm search, first-touch pages
                warm()
            speeds = alternate(timers, setting.reps)
            walls = {side: [wall for wall, _ in speeds[side]] for side in timers}
            cpus = {side: [cpu for _, cpu in speeds[side]] for side in timers}
            zoo_speed, tv_speed = median(walls["zoo"]), median(walls["torchvision"])
            ratio = paired_ratio(walls["zoo"], walls["torchvision"])
            cpu_ratio = paired_ratio(cpus["zoo"], cpus["torchvision"])
            rows.append(
                {
                    "benchmark": "vs_torchvision",
                    "model": name,
                    "mode": mode,
                    "device": device.type,
                    "batch": setting.batch,
                    "reps": setting.reps,
                    "zoo_img_s": zoo_speed,
                    "torchvision_img_s": tv_speed,
                    "ratio": ratio,
                    "cpu_time_ratio": cpu_ratio if device.type == "cpu" else None,
                    "target": TARGET,
                    "pass": ratio >= TARGET,
                }
            )
        del ours, reference
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


COLUMNS = [
    ("model", "model"),
    ("mode", "mode"),
    ("device", "device"),
    ("batch", "batch"),
    ("zoo_img_s", "zoo img/s"),
    ("torchvision_img_s", "torchvision img/s"),
    ("ratio", "ratio"),
    ("cpu_time_ratio", "cpu-time ratio"),
    ("target", "target"),
    ("pass", "pass"),
]


if __name__ == "__main__":
    # One benchmark of the suite, with the suite's options (run.py --help).
    import run

    sys.exit(run.main(["--only", "vs_torchvision", *sys.argv[1:]]))
