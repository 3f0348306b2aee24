"""Image folders (a class per subfolder; images and masks for segmentation) and the
transforms a spec writes for them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import nnspec
from nnspec.runtime.data import DatasetSamples, load_split
from nnspec.runtime.errors import TrainError
from nnspec.runtime.loop import Trainer
from nnspec.runtime.settings import resolve_settings
from tests.runtime.conftest import train_losses

Image = pytest.importorskip("PIL.Image")

CLASSIFIER = """\
nnspec: 1
name: Pictures
inputs:
  image: [CHANNELS, 8, 8]
layers:
  - Flatten
  - {op: Linear, name: head, out_features: 2}
outputs: {logits: head}
"""

SEGMENTER = """\
nnspec: 1
name: Regions
inputs:
  image: [1, 8, 8]
layers:
  - {op: Conv2d, name: head, out_channels: 3, kernel_size: 3, padding: 1}
outputs: {logits: head}
"""


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def class_folders(root: Path, n: int = 6, size: int = 8) -> list[np.ndarray]:
    """Classes 'dark' (0) and 'light' (1), n RGB images each; returns them in the
    sorted order the source reads."""
    rng = np.random.default_rng(0)
    images = []
    for name, base in (("dark", 40), ("light", 200)):
        for i in range(n):
            pixels = np.clip(base + rng.integers(-30, 30, (size, size, 3)), 0, 255)
            images.append(write_png(root / name / f"{i:02d}.png", pixels) and pixels)
    return images


def spec_with(tmp_path: Path, model: str, data: str, rest: str = "") -> Path:
    spec = tmp_path / "pictures.yaml"
    spec.write_text(
        model
        + "train:\n"
        + textwrap.indent(
            textwrap.dedent(data)
            + "loss: {logits: {op: CrossEntropyLoss, target: label}}\n"
            + textwrap.dedent(rest),
            "  ",
        ),
        encoding="utf-8",
    )
    return spec


def split_of(
    tmp_path: Path, data: str, model: str = CLASSIFIER.replace("CHANNELS", "3")
):
    spec = spec_with(tmp_path, model, data)
    return load_split(resolve_settings(nnspec.load(spec)), frozenset())


def error_of(
    tmp_path: Path, data: str, model: str = CLASSIFIER.replace("CHANNELS", "3")
) -> str:
    with pytest.raises(nnspec.SpecError) as info:
        split_of(tmp_path, data, model)
    return f"{info.value.line}:{info.value.column}: {info.value.message}"


def test_class_folders_give_images_in_0_1_and_sorted_class_indices(
    tmp_path: Path,
) -> None:
    images = class_folders(tmp_path / "pics")
    split = split_of(tmp_path, "data: {source: {images: pics}}\n")
    assert isinstance(split.train, DatasetSamples) and len(split.train) == 12
    item = split.train.dataset[7]
    assert item["label"].item() == 1  # light: the second sorted folder
    expected = torch.from_numpy(images[7]).permute(2, 0, 1).float() / 255
    assert torch.equal(item["image"], expected)


def test_transforms_resize_normalize_and_grey_images(tmp_path: Path) -> None:
    images = class_folders(tmp_path / "pics", size=10)
    data = """\
    data:
      source:
        images: pics
        transforms:
          - resize: 8
          - normalize: {mean: [0.5], std: [0.25]}
    """
    split = split_of(tmp_path, data, CLASSIFIER.replace("CHANNELS", "1"))
    got = split.train.dataset[0]["image"]  # type: ignore[union-attr]
    grey = Image.fromarray(images[0].astype(np.uint8)).convert("L")
    pixels = torch.from_numpy(np.array(grey)).float()[None, None] / 255
    resized = torch.nn.functional.interpolate(
        pixels, size=(8, 8), mode="bilinear", antialias=True, align_corners=False
    )[0]
    assert got.shape == (1, 8, 8)
    assert torch.allclose(got, (resized - 0.5) / 0.25, atol=1e-6)


def test_an_image_the_transforms_leave_at_another_size_is_named(
    tmp_path: Path,
) -> None:
    class_folders(tmp_path / "pics", size=10)
    message = error_of(tmp_path, "data: {source: {images: pics}}\n")
    assert message == (
        f"10:27: image {tmp_path / 'pics' / 'dark' / '00.png'} is 10x10, and 10x10 "
        "(height x width) after the transforms, but input 'image' is declared "
        "[3, 8, 8]: add a resize or a crop to transforms"
    )
    data = "data: {source: {images: pics, transforms: [{center_crop: 12}]}}\n"
    message = error_of(tmp_path, data)
    assert message.endswith(
        "00.png: it is 10x10, smaller than the crop 12x12 (transforms step 1)"
    )


def test_an_empty_class_folder_and_an_unreadable_image_are_named(
    tmp_path: Path,
) -> None:
    class_folders(tmp_path / "pics")
    (tmp_path / "pics" / "empty").mkdir()
    message = error_of(tmp_path, "data: {source: {images: pics}}\n")
    assert message == (
        f"10:27: class folder {tmp_path / 'pics' / 'empty'} holds no images (.png, "
        ".jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp)"
    )
    (tmp_path / "pics" / "empty").rmdir()
    bad = tmp_path / "pics" / "light" / "03.png"
    bad.write_bytes(b"not a picture")
    message = error_of(tmp_path, "data: {source: {images: pics}}\n")
    assert message.startswith(f"10:27: cannot read image {bad}: ")


def test_an_image_that_fails_to_decode_later_stops_the_run_naming_it(
    tmp_path: Path,
) -> None:
    class_folders(tmp_path / "pics")
    bad = tmp_path / "pics" / "dark" / "02.png"
    bad.write_bytes(bad.read_bytes()[:60])  # the header is there, the pixels are not
    spec = spec_with(
        tmp_path,
        CLASSIFIER.replace("CHANNELS", "3"),
        "data: {source: {images: pics}, batch_size: 4, workers: 1}\n",
        "steps: 3\n",
    )
    with pytest.raises(TrainError) as info:
        Trainer(spec, tmp_path / "run", progress=False).fit()
    message = str(info.value)
    assert message.startswith(
        f"the training dataset of images pics: item 2: cannot read image {bad}: "
    )
    assert message.endswith("training stopped before the step that would use it")


def write_segmentation(root: Path, n: int = 8) -> None:
    """Grey images whose pixel is 20 * (its mask's class) and masks of classes
    1..2 from the column, so a transform applied alike keeps them matched."""
    for i in range(n):
        mask = np.tile((np.arange(8) + i) % 2 + 1, (8, 1))
        write_png(root / "images" / f"s{i}.png", mask * 20)
        write_png(root / "masks" / f"s{i}.png", mask)


def test_masks_and_images_are_transformed_alike(tmp_path: Path) -> None:
    write_segmentation(tmp_path / "seg")
    data = """\
    data:
      source:
        images: seg/images
        masks: seg/masks
        transforms:
          - {random_crop: 8, padding: 2}
          - horizontal_flip: 0.5
          - vertical_flip: 0.5
    """
    split = split_of(tmp_path, data, SEGMENTER)
    dataset = split.train.dataset  # type: ignore[union-attr]
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        item = dataset[seed % len(dataset)]
        image, mask = item["image"], item["label"]
        assert mask.dtype == torch.int64 and mask.shape == (8, 8)
        assert torch.equal((image[0] * 255 / 20).round().long(), mask)
        seen.add(int((mask == 0).sum()))  # the zero padding a crop takes in
    assert len(seen) > 1  # the crops moved
    # Validation sees the images as they are: no crop offset, no flip.
    evaluation = split.train.for_evaluation().dataset  # type: ignore[union-attr]
    mask = evaluation[3]["label"]
    assert torch.equal(
        mask, torch.from_numpy(np.tile((np.arange(8) + 3) % 2 + 1, (8, 1)))
    )


def test_a_missing_or_misfit_mask_is_named(tmp_path: Path) -> None:
    write_segmentation(tmp_path / "seg")
    data = "data: {source: {images: seg/images, masks: seg/masks}}\n"
    (tmp_path / "seg" / "masks" / "s5.png").unlink()
    message = error_of(tmp_path, data, SEGMENTER)
    assert message == (
        f"9:46: image {tmp_path / 'seg' / 'images' / 's5.png'} has no mask s5.* in "
        f"{tmp_path / 'seg' / 'masks'}"
    )
    write_png(tmp_path / "seg" / "masks" / "s5.png", np.ones((6, 8)))
    message = error_of(tmp_path, data, SEGMENTER)
    assert message == (
        f"9:46: mask {tmp_path / 'seg' / 'masks' / 's5.png'} is 8x6, but image "
        f"{tmp_path / 'seg' / 'images' / 's5.png'} is 8x8"
    )


def test_a_test_fraction_is_held_out_and_recorded_with_validation(
    tmp_path: Path,
) -> None:
    class_folders(tmp_path / "pics", n=10)
    spec = spec_with(
        tmp_path,
        CLASSIFIER.replace("CHANNELS", "3"),
        """\
        data:
          source:
            images: pics
            transforms: [{horizontal_flip: 0.5}]
          batch_size: 4
          val_fraction: 0.2
          test_fraction: 0.1
        """,
        "steps: 2\n",
    )
    Trainer(spec, tmp_path / "run", progress=False).fit()
    record = json.loads((tmp_path / "run" / "split.json").read_text())
    val, test = record["val"]["indices"], record["test"]["indices"]
    assert (len(val), len(test), record["train_samples"]) == (4, 2, 14)
    assert record["classes"] == ["dark", "light"]
    order = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    assert val == sorted(order[16:].tolist()) and test == sorted(order[14:16].tolist())
    split = load_split(resolve_settings(nnspec.load(spec)), frozenset())
    assert split.test is not None and len(split.test) == 2
    assert split.test.dataset.dataset.train is False  # type: ignore[union-attr]


def test_resume_with_workers_and_random_transforms_is_exact(tmp_path: Path) -> None:
    class_folders(tmp_path / "pics", n=10)
    spec = spec_with(
        tmp_path,
        CLASSIFIER.replace("CHANNELS", "3"),
        """\
        data:
          source:
            images: pics
            transforms: [{random_crop: 8, padding: 1}, {horizontal_flip: 0.5}]
          batch_size: 4
          workers: 2
        optimizer: {op: AdamW, lr: 0.01}
        """,
        "steps: 7\nlog_every: 1\n",
    )
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    Trainer(spec, straight, progress=False).fit()
    Trainer(spec, stopped, overrides={"steps": 4}, progress=False).fit()
    Trainer(spec, stopped, resume=True, progress=False).fit()
    expected, got = train_losses(straight), train_losses(stopped)
    assert list(got) == list(range(1, 8))
    assert [got[s] for s in range(5, 8)] == [expected[s] for s in range(5, 8)]


def test_a_transforms_step_has_one_key_and_normalize_fits_the_channels(
    tmp_path: Path,
) -> None:
    class_folders(tmp_path / "pics")
    data = "data: {source: {images: pics, transforms: [{resize: 8, center_crop: 8}]}}\n"
    assert error_of(tmp_path, data) == (
        "10:46: a transforms step has exactly one of resize, center_crop, "
        "random_crop, horizontal_flip, vertical_flip, normalize; received "
        "resize, center_crop"
    )
    data = "data: {source: {images: pics, transforms: [{resize: 8, padding: 2}]}}\n"
    assert error_of(tmp_path, data) == "10:58: padding goes with random_crop"
    data = (
        "data: {source: {images: pics, transforms: "
        "[{normalize: {mean: [0.5, 0.5], std: [1]}}]}}\n"
    )
    assert error_of(tmp_path, data) == (
        "10:58: normalize has 2 values, for images of 3 channel(s): give 1 or 3"
    )
