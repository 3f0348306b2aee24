"""Image folders: a subfolder per class (``images: folder``; the sorted subfolder
names are classes 0, 1, ...), or, for segmentation, a folder of images and a folder
of masks with the same stems (``images: folder, masks: folder``; a mask's pixel
values are class indices). Decoded with Pillow, transformed as the spec says
(transforms.py).

Every file's header is read before the first step (size and mode, not the pixels):
an unreadable file, a mask missing or of another size than its image, an empty class
folder, or an image the transforms do not bring to the declared input shape is an
error at the spec's ``images`` key naming the file. An image that fails to decode
later stops the run with a TrainError naming the file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...spec.train import SourceSpec
from .base import ReaderBase, first_line, item_names
from .items import ItemError
from .transforms import Normalize, Transforms, step_keys, transforms_of

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "ImageSources"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Pillow's modes for an input's channels.
MODES = {1: "L", 3: "RGB", 4: "RGBA"}
#: Mask modes whose pixel values are class indices.
MASK_MODES = ("L", "P", "I", "I;16", "1")


class ImageFolder(Dataset):
    """Items ``{image: (C, H, W) float32, target: class index or (H, W) mask}``."""

    def __init__(
        self,
        files: list[str],
        labels: list[int] | None,
        masks: list[str] | None,
        *,
        mode: str,
        transforms: Transforms,
        names: tuple[str, str],
        train: bool = True,
        classes: list[str] | None = None,
    ) -> None:
        self.files = files
        self.labels = labels
        self.masks = masks
        self.mode = mode
        self.transforms = transforms
        self.names = names
        self.classes = classes  # the class folders' names, by index
        self.train = train

    def __len__(self) -> int:
        return len(self.files)

    def for_evaluation(self) -> ImageFolder:
        """The same items with the random steps off (validation and test)."""
        other = copy.copy(self)
        other.train = False
        return other

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        image = _decode(self.files[i], self.mode)
        pixels = torch.from_numpy(image)
        pixels = pixels[None] if pixels.dim() == 2 else pixels.permute(2, 0, 1)
        picture = pixels.float().div_(255)
        mask = None
        if self.masks is not None:
            mask = torch.from_numpy(_decode(self.masks[i], None).astype(np.int64))
            if mask.shape != picture.shape[1:]:
                raise ItemError(
                    f"mask {self.masks[i]} is {_wh(mask.shape)}, but image "
                    f"{self.files[i]} is {_wh(picture.shape[1:])}"
                )
        picture, mask = self.transforms(picture, mask, self.train)
        image_name, target_name = self.names
        if mask is not None:
            return {image_name: picture, target_name: mask}
        assert self.labels is not None
        return {image_name: picture, target_name: torch.tensor(self.labels[i])}


def _decode(file: str, mode: str | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as opened:
            if mode is not None and opened.mode != mode:
                return np.array(opened.convert(mode))
            return np.array(opened)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ItemError(f"cannot read image {file}: {first_line(exc)}") from None


def _wh(shape: Any) -> str:
    return f"{shape[1]}x{shape[0]}"  # width x height, as image viewers say


class ImageSources(ReaderBase):
    def image_folder(self, source: SourceSpec, path: tuple) -> ImageFolder:
        where = (*path, "images")
        try:
            from PIL import Image
        except ImportError:
            raise self.error(
                where,
                "reading images needs Pillow: pip install 'nnspec[data]' (or pillow)",
            ) from None
        image_name, target_name = item_names(self, source.items, path, count=2)
        if image_name not in self.inputs:
            raise self.error(
                (*path, "items", 0),
                f"items: the images go to an input, and {image_name!r} is a target",
            )
        shape, _ = self.inputs[image_name]
        if len(shape) != 3 or shape[0] not in MODES:
            raise self.error(
                where,
                f"images go to input {image_name!r}, declared {list(shape)}: an image "
                "input is [channels, height, width] with 1, 3 or 4 channels",
            )
        transforms = self.image_transforms(source, path, shape[0])
        folder = self.resolve(source.images or "")
        if not folder.is_dir():
            raise self.error(where, f"no such folder: {folder}")
        if source.masks is None:
            files, labels = self.class_folders(folder, where)
            masks = None
            classes = sorted({f.parent.name for f in files})
        else:
            files, labels, classes = _images_in(folder), None, None
            if not files:
                raise self.error(
                    where, f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})"
                )
            masks = self.mask_files(files, self.resolve(source.masks), path)
        declared = (shape[1], shape[2])
        sizes: dict[tuple[int, int], tuple[int, int]] = {}
        for k, file in enumerate(files):
            width, height = self.header(Image, file, where)[0]
            if masks is not None:
                (mw, mh), mode = self.header(Image, masks[k], (*path, "masks"))
                if mode not in MASK_MODES:
                    raise self.error(
                        (*path, "masks"),
                        f"mask {masks[k]} has mode {mode}; a mask holds a class "
                        f"index a pixel (mode {', '.join(MASK_MODES)})",
                    )
                if (mw, mh) != (width, height):
                    raise self.error(
                        (*path, "masks"),
                        f"mask {masks[k]} is {mw}x{mh}, but image {file} is "
                        f"{width}x{height}",
                    )
            if (height, width) not in sizes:
                try:
                    sizes[height, width] = transforms.size(height, width)
                except ValueError as exc:
                    raise self.error(where, f"image {file}: {exc}") from None
            if sizes[height, width] != declared:
                h, w = sizes[height, width]
                raise self.error(
                    where,
                    f"image {file} is {width}x{height}, and {h}x{w} (height x width) "
                    f"after the transforms, but input {image_name!r} is declared "
                    f"{list(shape)}: add a resize or a crop to transforms",
                )
        if labels is not None:
            for label in self.label_ranges():
                if label.target != target_name:
                    continue
                found = label.first_bad(torch.tensor(labels))
                if found is not None:
                    raise self.error(
                        where,
                        f"{folder} has {max(labels) + 1} class folders, but output "
                        f"{label.output!r} ({label.op}) has {label.classes} classes",
                    )
        return ImageFolder(
            [str(f) for f in files],
            labels,
            [str(m) for m in masks] if masks is not None else None,
            mode=MODES[shape[0]],
            transforms=transforms,
            names=(image_name, target_name),
            classes=classes,
        )

    def image_transforms(
        self, source: SourceSpec, path: tuple, channels: int
    ) -> Transforms:
        for k, step in enumerate(source.transforms):
            at = (*path, "transforms", k)
            keys = step_keys(step)
            main = [key for key in keys if key != "padding"]
            if len(main) != 1:
                raise self.error(
                    at,
                    "a transforms step has exactly one of resize, center_crop, "
                    "random_crop, horizontal_flip, vertical_flip, normalize; "
                    f"received {', '.join(main) or 'none'}",
                )
            if "padding" in keys and main != ["random_crop"]:
                raise self.error(
                    (*at, "padding"), "padding goes with random_crop", key=True
                )
        transforms = transforms_of(source.transforms)
        for k, step in enumerate(transforms.steps):
            if isinstance(step, Normalize):
                sizes = {len(step.mean), len(step.std)}
                if not sizes <= {1, channels}:
                    raise self.error(
                        (*path, "transforms", k, "normalize"),
                        f"normalize has {max(sizes)} values, for images of "
                        f"{channels} channel(s): give 1 or {channels}",
                    )
        return transforms

    def class_folders(self, folder: Path, where: tuple) -> tuple[list[Path], list[int]]:
        classes = sorted(
            p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not classes:
            raise self.error(
                where,
                f"{folder} has no class folders: put each class's images in a "
                "subfolder of it (or give masks: for segmentation)",
            )
        files: list[Path] = []
        labels: list[int] = []
        for index, sub in enumerate(classes):
            found = _images_in(sub)
            if not found:
                raise self.error(
                    where,
                    f"class folder {sub} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                )
            files += found
            labels += [index] * len(found)
        return files, labels

    def mask_files(self, files: list[Path], folder: Path, path: tuple) -> list[Path]:
        at = (*path, "masks")
        if not folder.is_dir():
            raise self.error(at, f"no such folder: {folder}")
        by_stem: dict[str, Path] = {}
        for mask in _images_in(folder):
            if mask.stem in by_stem:
                raise self.error(
                    at, f"masks {by_stem[mask.stem]} and {mask} have the same stem"
                )
            by_stem[mask.stem] = mask
        masks = []
        for file in files:
            if file.stem not in by_stem:
                raise self.error(
                    at, f"image {file} has no mask {file.stem}.* in {folder}"
                )
            masks.append(by_stem[file.stem])
        return masks

    def header(self, image_module: Any, file: Path, where: tuple) -> tuple[Any, str]:
        """((width, height), mode) of an image file, read from its header."""
        try:
            with image_module.open(file) as image:
                return image.size, image.mode
        except (OSError, SyntaxError, ValueError) as exc:
            raise self.error(
                where, f"cannot read image {file}: {first_line(exc)}"
            ) from None
        except Exception as exc:  # Pillow's DecompressionBombError and the like
            raise self.error(
                where, f"cannot read image {file}: {first_line(exc)}"
            ) from None


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not p.name.startswith(".")
    )
