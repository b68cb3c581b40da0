"""Datasets of the built-in trainer: read once per process, split, keep on device.

Images are held as ``uint8`` tensors ``(N, C, H, W)``; augmentation works on
them batch by batch on the training device and normalisation happens just
before the forward pass (``Normalize``). The validation split is carved
deterministically from the *training* set; the test set is never read during
a search.

``check_data`` opens a dataset the way the trainer does, cheaply (IDX headers,
the CIFAR batch files, the ImageFolder listing and its first image), so
``ma2ml run`` and ``ma2ml validate --check-data`` refuse a wrong path before
any trial starts instead of failing every trial.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ma2ml.spec import Dataset
from ma2ml.trainer.errors import DataError

DEFAULT_ROOTS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "cifar10": "/usr/share/datasets/cifar10",
    "cifar100": "/usr/share/datasets/cifar100",
    "imagefolder": "/data/imagefolder",
}
#: Per-channel mean and std (of [0, 1] pixels) used by ``Normalize``.
STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
#: ImageFolder images are decoded once and resized to this square size.
IMAGEFOLDER_SIZE = 256


@dataclass(frozen=True)
class Splits:
    """Train and validation tensors of one trial (uint8 images, int64 labels)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])


def load_data(dataset: Dataset, device: str | torch.device = "cpu") -> Splits:
    """The spec's train/validation split, on ``device`` (raw files read once per process)."""
    name = str(dataset.name)
    root = dataset.root or DEFAULT_ROOTS[name]
    labels = read_labels(name, root)
    train_idx, val_idx = split_indices(len(labels), dataset.validation_size, dataset.split_seed,
                                       dataset.train_subset, dataset.validation_subset)
    mean, std = STATS[name]

    def take(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = read_images(name, root, tuple(index.tolist())) if name == "imagefolder" \
            else read_arrays(name, root)[0][index]
        return images.to(device), labels[index].to(device)

    train_x, train_y = take(train_idx)
    val_x, val_y = take(val_idx)
    return Splits(train_x, train_y, val_x, val_y, int(labels.max()) + 1, mean, std)


def load_final_data(dataset: Dataset, device: str | torch.device = "cpu",
                    train_subset: int | None = None, test_subset: int | None = None) -> Splits:
    """For retraining the winner: the WHOLE training set (train + validation) as
    ``train`` and the held-out TEST set in the ``val`` slot. Never used in a search."""
    name = str(dataset.name)
    root = dataset.root or DEFAULT_ROOTS[name]
    train_x, train_y = read_arrays(name, root)
    test_x, test_y = read_test_arrays(name, root)
    mean, std = STATS[name]
    train_x, train_y = train_x[:train_subset], train_y[:train_subset]
    test_x, test_y = test_x[:test_subset], test_y[:test_subset]
    return Splits(train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device),
                  int(train_y.max()) + 1, mean, std)


@functools.lru_cache(maxsize=2)
def read_test_arrays(name: str, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split (Fashion-MNIST t10k files, CIFAR test batch)."""
    if name == "fashion-mnist":
        base = Path(root)
        images = _read_idx(base / "t10k-images-idx3-ubyte.gz", ndim=3)
        labels = _read_idx(base / "t10k-labels-idx1-ubyte.gz", ndim=1)
        return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()
    if name in ("cifar10", "cifar100"):
        return _read_cifar(name, root, train=False)
    raise DataError(f"dataset.name: {name!r} has no built-in test split; evaluate the "
                    f"exported recipe with your own test data")


def check_data(dataset: Dataset) -> str:
    """Whether the trainer can read ``dataset`` (``DataError`` naming the path if not);
    returns one line saying what was found. Reads headers, not images."""
    name = str(dataset.name)
    root = dataset.root or DEFAULT_ROOTS[name]
    if not Path(root).is_dir():
        raise DataError(f"dataset.root: {root} is not a directory")
    if name == "fashion-mnist":
        base = Path(root)
        images = _idx_shape(base / "train-images-idx3-ubyte.gz", ndim=3)
        labels = _idx_shape(base / "train-labels-idx1-ubyte.gz", ndim=1)
        if images[0] != labels[0]:
            raise DataError(f"{root}: {images[0]} images but {labels[0]} labels")
        n, size = images[0], f"{images[1]}x{images[2]}"
    elif name in ("cifar10", "cifar100"):
        n, size = _check_cifar(name, root), "32x32"
    else:
        n = len(_folder_samples(root))
        read_images(name, root, (0,))  # the first image decodes
        size = f"resized to {IMAGEFOLDER_SIZE}x{IMAGEFOLDER_SIZE}"
    if dataset.validation_size >= n:
        raise DataError(f"dataset.validationSize: {dataset.validation_size} leaves no "
                        f"training images (the training set in {root} has {n})")
    return f"{name} in {root}: {n} training images ({size})"


def _idx_shape(path: Path, ndim: int) -> tuple[int, ...]:
    """The shape in an IDX file's header (gzip), checked as ``_read_idx`` checks it."""
    expected = f"an IDX file of unsigned bytes with {ndim} dimension(s) (gzip)"
    try:
        with gzip.open(path, "rb") as handle:
            header = np.frombuffer(handle.read(4 + 4 * ndim), dtype=">u4")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; expected {expected}") from None
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); expected {expected}") from None
    if len(header) != 1 + ndim or header[0] != 0x0800 + ndim:
        raise DataError(f"{path}: bad IDX header; expected {expected}")
    return tuple(int(s) for s in header[1:])


def _check_cifar(name: str, root: str) -> int:
    """The number of training images in torchvision's CIFAR folder (files present)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    folder = Path(root) / cls.base_folder
    missing = [f for f, _ in cls.train_list if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}; expected torchvision's "
                        f"{name} folder ({cls.base_folder}/) under {root}")
    return 50_000


def split_indices(n: int, validation_size: int, seed: int, train_subset: int | None = None,
                  validation_subset: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, validation) indices: one seeded permutation of ``n`` images."""
    if validation_size >= n:
        raise DataError(f"dataset.validationSize: {validation_size} leaves no training images "
                        f"(the training set has {n})")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:validation_size], order[validation_size:]
    # Subsets are prefixes of the same permutation, so a smaller subset is
    # contained in a larger one and trials with equal settings see equal data.
    return train[:train_subset], val[:validation_subset]


def read_labels(name: str, root: str) -> torch.Tensor:
    if name == "imagefolder":
        return torch.tensor([label for _, label in _folder_samples(root)])
    return read_arrays(name, root)[1]


@functools.lru_cache(maxsize=4)
def read_arrays(name: str, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The full training set as ``(uint8 NCHW images, int64 labels)``, cached per process."""
    if name == "fashion-mnist":
        return _read_fashion_mnist(Path(root))
    if name in ("cifar10", "cifar100"):
        return _read_cifar(name, root)
    raise DataError(f"dataset.name: unknown dataset {name!r} (known: {', '.join(DEFAULT_ROOTS)})")


def _read_fashion_mnist(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = _read_idx(root / "train-images-idx3-ubyte.gz", ndim=3)
    labels = _read_idx(root / "train-labels-idx1-ubyte.gz", ndim=1)
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} images but {len(labels)} labels")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """One IDX file (gzip): big-endian magic 0x0000_08_0n, n dimension sizes, uint8 data."""
    expected = f"an IDX file of unsigned bytes with {ndim} dimension(s) (gzip)"
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; expected {expected}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); expected {expected}") from None
    header = np.frombuffer(data[:4 + 4 * ndim], dtype=">u4")
    if len(header) != 1 + ndim or header[0] != 0x0800 + ndim:
        raise DataError(f"{path}: bad IDX header; expected {expected}")
    shape = tuple(int(s) for s in header[1:])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated ({body.size} bytes for shape {shape})")
    return body.reshape(shape).copy()


def _read_cifar(name: str, root: str, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    try:
        data = cls(root, train=train, download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
        raise DataError(f"{root}: {exc} Expected torchvision's {name} folder "
                        f"({cls.base_folder}/) under this root") from None
    images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(data.targets, dtype=torch.long)


@functools.lru_cache(maxsize=4)
def _folder_samples(root: str) -> tuple[tuple[str, int], ...]:
    from torchvision.datasets import ImageFolder

    train = Path(root) / "train"
    try:
        return tuple(ImageFolder(str(train)).samples)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"{train}: {exc}; expected an ImageFolder tree "
                        f"(train/<class>/<image>)") from None


@functools.lru_cache(maxsize=4)
def read_images(name: str, root: str, index: tuple[int, ...]) -> torch.Tensor:
    """Decode only the chosen ImageFolder images, resized to ``IMAGEFOLDER_SIZE``."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import center_crop, pil_to_tensor, resize

    samples = _folder_samples(root)
    out = torch.empty(len(index), 3, IMAGEFOLDER_SIZE, IMAGEFOLDER_SIZE, dtype=torch.uint8)
    for row, i in enumerate(index):
        path = samples[i][0]
        try:
            # PIL, as torchvision's ImageFolder loader (torchvision.io decoding is deprecated).
            with Image.open(path) as handle:
                image = pil_to_tensor(handle.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path}: cannot decode image ({exc})") from None
        out[row] = center_crop(resize(image, [IMAGEFOLDER_SIZE], antialias=True),
                               [IMAGEFOLDER_SIZE])
    return out
