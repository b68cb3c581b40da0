"""Datasets: the real Fashion-MNIST IDX files, the deterministic split, clear errors."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from ma2ml.spec import Dataset
from ma2ml.trainer.data import DataError, load_data, read_arrays, split_indices

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def test_fashion_mnist_split_is_deterministic_and_disjoint() -> None:
    dataset = Dataset(root=str(FASHION_MNIST), validation_size=500, train_subset=300,
                      validation_subset=100, split_seed=3)
    first, second = load_data(dataset), load_data(dataset)
    assert first.train_images.shape == (300, 1, 28, 28)
    assert first.train_images.dtype == torch.uint8
    assert first.val_images.shape == (100, 1, 28, 28)
    assert first.num_classes == 10
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.val_labels, second.val_labels)
    train, val = split_indices(60000, 500, 3, 300, 100)
    assert not set(train.tolist()) & set(val.tolist())


def test_subsets_are_prefixes_and_seed_changes_split() -> None:
    small, _ = split_indices(1000, 100, 0, 50)
    large, _ = split_indices(1000, 100, 0, 200)
    assert torch.equal(small, large[:50])
    other, _ = split_indices(1000, 100, 1, 50)
    assert not torch.equal(small, other)


def test_raw_files_are_read_once_per_process() -> None:
    read_arrays.cache_clear()
    load_data(Dataset(root=str(FASHION_MNIST), train_subset=10, validation_subset=10))
    load_data(Dataset(root=str(FASHION_MNIST), train_subset=20, validation_subset=10))
    assert read_arrays.cache_info().misses == 1


def test_missing_dataset_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: file not found; "
                                        r"expected an IDX file"):
        load_data(Dataset(root=str(tmp_path)))


def test_corrupt_file_names_the_path(tmp_path: Path) -> None:
    shutil.copy(FASHION_MNIST / "train-labels-idx1-ubyte.gz", tmp_path)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(b"\x00\x00\x08\x01" + b"\x00" * 8)  # a labels header, not an images one
    with pytest.raises(DataError, match="bad IDX header"):
        load_data(Dataset(root=str(tmp_path)))


def test_validation_larger_than_training_set_is_refused() -> None:
    with pytest.raises(DataError, match="dataset.validationSize"):
        split_indices(100, 100, 0)


def test_imagefolder_decodes_only_the_chosen_images(tmp_path: Path) -> None:
    from PIL import Image

    for label, colour in (("cat", (200, 10, 10)), ("dog", (10, 10, 200))):
        folder = tmp_path / "train" / label
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (40 + i, 30), colour).save(folder / f"{i}.png")
    splits = load_data(Dataset(name="imagefolder", root=str(tmp_path), validation_size=2,
                               train_subset=3))
    assert splits.train_images.shape == (3, 3, 256, 256)
    assert splits.val_images.shape == (2, 3, 256, 256)
    assert splits.num_classes == 2
    red = splits.train_images[:, 0].float().mean((1, 2)) > 100
    assert torch.equal(red, splits.train_labels == 0)  # labels follow the folders


def test_imagefolder_and_cifar_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train: .*expected an ImageFolder tree"):
        load_data(Dataset(name="imagefolder", root=str(tmp_path)))
    with pytest.raises(DataError, match=rf"{tmp_path}: Dataset not found.*cifar-10-batches-py"):
        load_data(Dataset(name="cifar10", root=str(tmp_path)))
