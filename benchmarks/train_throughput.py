"""Training throughput: batched on-device augmentation vs the usual torchvision way.

Both sides train the same MBConv model with the same recipe and the same
AutoAugment-style policy on the same Fashion-MNIST images:

* ``ma2ml batched``: uint8 images held on the training device; each batch is
  augmented with one ``torchvision.transforms.v2.functional`` call per
  (sub-policy step, sign) group (``ma2ml.trainer.augment``).
* ``torchvision per-image``: a ``Dataset`` applies the policy to one image
  at a time inside ``DataLoader`` worker processes, batches are collated on
  the CPU and copied to the device (the references/classification way).

Usage::

    python benchmarks/train_throughput.py                 # CPU, 4000 images, 1 epoch
    python benchmarks/train_throughput.py --device cuda --images 20000 --epochs 2
"""

from __future__ import annotations

import argparse
import random
import time

import torch
import torch.nn.functional as nnf
from torch.utils.data import DataLoader, Dataset

from ma2ml.spaces import build_agent
from ma2ml.spec import parse_spec
from ma2ml.trainer.augment import Policy
from ma2ml.trainer.data import Splits, load_data
from ma2ml.trainer.train import Setup, build_setup, resolve_device, train_one_epoch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--images", type=int, default=4000, help="training images")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--loader-workers", type=int, default=2,
                        help="DataLoader worker processes of the torchvision way")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the trainer")
    parser.add_argument("--policy-seed", type=int, default=0, help="seed of the sampled policy")
    return parser.parse_args()


def sampled_policy(seed: int) -> dict[str, object]:
    """A random autoaugment policy with every step active (probability >= 0.5)."""
    space = build_agent("aug", "autoaugment")
    rng = random.Random(seed)
    decisions = space.decode([rng.randrange(n) for n in space.sizes])
    for name in decisions:
        if "_prob" in name:
            decisions[name] = max(0.5, float(decisions[name]))
    return decisions


class PerImage(Dataset):
    """The usual way: augment one CPU image per ``__getitem__``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, policy: Policy) -> None:
        self.images, self.labels, self.policy = images, labels, policy

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(self.images[index:index + 1])[0], self.labels[index]


def ours(setup: Setup, splits: Splits, epochs: int) -> float:
    seen, started = 0, time.perf_counter()
    for _ in range(epochs):
        seen += train_one_epoch(setup, splits, None)
    _sync(splits.train_images.device)
    return seen / (time.perf_counter() - started)


def usual(setup: Setup, splits: Splits, epochs: int, workers: int, batch: int) -> float:
    cpu = PerImage(splits.train_images.cpu(), splits.train_labels.cpu(), setup.policy)
    device = splits.train_images.device
    loader = DataLoader(cpu, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    model, seen = setup.model.train(), 0
    started = time.perf_counter()
    for _ in range(epochs):
        for images, labels in loader:
            images = setup.batches(images.to(device, non_blocking=True))
            labels = labels.to(device, non_blocking=True)
            with setup.autocast:
                loss = nnf.cross_entropy(model(images), labels)
            setup.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            setup.optimizer.step()
            seen += len(labels)
    _sync(device)
    return seen / (time.perf_counter() - started)


def augmentation_only(policy: Policy, splits: Splits, batch: int) -> tuple[float, float]:
    """Images/s of the policy alone: batched on device vs one image at a time (1 process)."""
    images = splits.train_images
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        policy(images[start:start + batch])
    _sync(images.device)
    batched = len(images) / (time.perf_counter() - started)
    cpu = images.cpu()
    started = time.perf_counter()
    for index in range(len(cpu)):
        policy(cpu[index:index + 1])
    return batched, len(cpu) / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    search = parse_spec({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch", "metadata": {"name": "b"},
        "spec": {"dataset": {"trainSubset": args.images, "validationSubset": 100},
                 "budget": {"trialEpochs": args.epochs},
                 "agents": [{"name": "aug", "preset": "autoaugment"},
                            {"name": "nas", "preset": "mbconv-small"}]}})
    splits = load_data(search.spec.dataset, device)
    aug = sampled_policy(args.policy_seed)
    roles = {"aug": ("autoaugment", aug), "nas": ("mbconv-small", {}),
             "hpo": ("recipe", {"batch_size": args.batch_size})}
    rates = {}
    for name, run in (("ma2ml batched (on device)", lambda s: ours(s, splits, args.epochs)),
                      (f"torchvision per-image ({args.loader_workers} loader workers)",
                       lambda s: usual(s, splits, args.epochs, args.loader_workers,
                                       args.batch_size))):
        torch.manual_seed(0)
        setup = build_setup(search, roles, splits, device, seed=0)
        run(setup)  # warm-up: first-call allocations, loader start, cuDNN autotuning
        rates[name] = run(build_setup(search, roles, splits, device, seed=0))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {device.type} ({name}); torch threads {args.threads}; {args.images} "
          f"images x {args.epochs} epoch(s); batch {args.batch_size}; default mbconv-small")
    print("policy: " + ", ".join(f"{aug[f'sp{k}_op{j}']}(p={aug[f'sp{k}_prob{j}']},"
                                 f"m={aug[f'sp{k}_mag{j}']})" for k in range(5) for j in range(2)))
    print(f"| {'method':<44} | {'images/s':>9} |")
    print(f"|{'-' * 46}|{'-' * 11}|")
    for method, rate in rates.items():
        print(f"| {method:<44} | {rate:>9.0f} |")
    first, second = rates.values()
    print(f"ratio (batched / per-image): {first / second:.2f}x")
    batched, single = augmentation_only(Policy.from_decisions(aug), splits, args.batch_size)
    print(f"augmentation alone: batched {batched:.0f} images/s, per-image {single:.0f} images/s "
          f"(one process), ratio {batched / single:.1f}x")


if __name__ == "__main__":
    main()
