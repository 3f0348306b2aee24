"""The image-folder source against a hand-written ``Dataset`` + ``DataLoader``.

The same work on both sides: 32x32 grey PNG images and masks of the same stems
(written into a temporary folder first), decoded with Pillow, flipped left-right
and upside down at random (each with probability 0.5, image and mask alike),
normalized, and batched 32 at a time in a new order each epoch, with the same
number of worker processes; a pass over the training samples is one measure.

- nnspec: ``load_split`` of a spec with ``{images, masks, transforms}``, iterated
  with ``Batches.epoch`` (what ``nnspec train`` runs to feed its steps), which also
  seeds each batch's random state and checks every item as it is collated.
- hand-written: a ``Dataset`` that opens both files with Pillow, makes tensors,
  flips and normalizes them, and a ``DataLoader(shuffle=True, drop_last=True)``.

The measure is samples/s: by the CPU time of the one thread without workers, by the
wall clock with them (the work is in the worker processes); the passes alternate in
rounds and the figure is the median of the per-round
ratios nnspec / hand-written.

    python -m bench.data_path [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import nnspec
from nnspec.runtime.data import Batches, load_split
from nnspec.runtime.settings import resolve_settings

from .common import interleave, median, ratio_spread, section_main, table

__all__ = ["run"]

TARGET = 0.95
IMAGES = 512
BATCH = 32
SPEC = """\
nnspec: 1
name: Pixels
inputs: {image: [1, 32, 32]}
layers:
  - {op: Conv2d, name: head, out_channels: 3, kernel_size: 1}
outputs: {logits: head}
train:
  data:
    source:
      images: images
      masks: masks
      transforms:
        - horizontal_flip: 0.5
        - vertical_flip: 0.5
        - normalize: {mean: [0.5], std: [0.25]}
    batch_size: 32
  loss: {logits: {op: CrossEntropyLoss, target: mask}}
"""


def write_images(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i in range(IMAGES):
        mask = rng.integers(0, 3, (32, 32)).astype(np.uint8)
        image = (mask * 80 + rng.integers(0, 40, (32, 32))).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:04d}.png")


class HandWritten(Dataset):
    """What one would write by hand for the same items."""

    def __init__(self, root: Path) -> None:
        self.images = sorted((root / "images").glob("*.png"))
        self.masks = [root / "masks" / p.name for p in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from PIL import Image

        with Image.open(self.images[i]) as picture:
            image = torch.from_numpy(np.array(picture.convert("L")))[None].float() / 255
        with Image.open(self.masks[i]) as picture:
            mask = torch.from_numpy(np.array(picture).astype(np.int64))
        if torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        if torch.rand(()) < 0.5:
            image, mask = image.flip(-2), mask.flip(-2)
        return {"image": (image - 0.5) / 0.25, "mask": mask}


def run(quick: bool = False) -> tuple[list[str], dict[str, float]]:
    rounds = 9 if quick else 21
    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_images(root)
        (root / "pixels.yaml").write_text(SPEC, encoding="utf-8")
        settings = resolve_settings(nnspec.load(root / "pixels.yaml"))
        samples = load_split(settings, frozenset()).train
        for workers in (0, 2):
            batches = Batches(samples, BATCH, torch.device("cpu"), workers=workers)
            epoch = iter(range(1, 10_000))
            # Without workers all the work is on this thread: its CPU time.
            clock = time.thread_time if workers == 0 else time.perf_counter

            def ours(batches: Batches = batches, clock=clock, epoch=epoch) -> float:
                start, n = clock(), 0
                for batch in batches.epoch(next(epoch), shuffle=True):
                    n += len(batch["image"])
                return n / (clock() - start)

            loader = DataLoader(
                HandWritten(root),
                batch_size=BATCH,
                shuffle=True,
                drop_last=True,
                num_workers=workers,
            )

            def hand(loader: DataLoader = loader, clock=clock) -> float:
                start, n = clock(), 0
                for batch in loader:
                    n += len(batch["image"])
                return n / (clock() - start)

            ours(), hand()  # warm-up: the files in the page cache
            measured = interleave({"nnspec": ours, "hand": hand}, rounds)
            ratios = measured.ratios("nnspec", over="hand")
            figures[f"data path workers {workers}"] = median(ratios)
            rows.append(
                [
                    workers,
                    measured.median("hand"),
                    measured.median("nnspec"),
                    ratio_spread(ratios),
                ]
            )
    lines = [
        f"An epoch of {IMAGES} 32x32 images and masks from a folder, batches of "
        f"{BATCH}, random flips and normalize; samples/s (CPU time without workers, "
        "wall clock with them), medians "
        f"of {rounds} interleaved rounds (target: nnspec / hand-written >= {TARGET}).",
        "",
        *table(
            [
                "workers",
                "hand-written samples/s",
                "nnspec samples/s",
                "nnspec / hand-written",
            ],
            rows,
        ),
    ]
    return lines, figures


def main(argv: list[str] | None = None) -> int:
    return section_main("data_path", run, argv)


if __name__ == "__main__":
    sys.exit(main())
