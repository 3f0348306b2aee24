"""Write the small segmentation data set of examples/shapes.yaml: 32x32 grey images
of a disc, a square or a triangle on a noisy background, and a mask for each (same
file name) whose pixels are classes: 0 background, 1 disc, 2 square, 3 triangle.

    python examples/data/make_shapes.py            # into examples/data/shapes/
    python examples/data/make_shapes.py OUT -n 64  # 64 pairs into OUT/

Needs Pillow and NumPy. The same seed writes the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 32


def shape_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8) and its mask (uint8 class indices)."""
    kind = int(rng.integers(1, 4))
    radius = int(rng.integers(6, 12))
    cx, cy = (int(v) for v in rng.integers(radius, SIZE - radius, 2))
    mask = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(mask)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if kind == 1:
        draw.ellipse(box, fill=1)
    elif kind == 2:
        draw.rectangle(box, fill=2)
    else:
        draw.polygon(
            [(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)],
            fill=3,
        )
    labels = np.array(mask)
    brightness = int(rng.integers(150, 230))
    image = rng.normal(60, 20, (SIZE, SIZE))
    image[labels > 0] = rng.normal(brightness, 20, int((labels > 0).sum()))
    return np.clip(image, 0, 255).astype(np.uint8), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out", nargs="?", default=Path(__file__).parent / "shapes", type=Path
    )
    parser.add_argument(
        "-n", type=int, default=240, help="pairs to write (default 240)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        image, mask = shape_pair(rng)
        Image.fromarray(image).save(args.out / "images" / f"{i:04d}.png")
        Image.fromarray(mask).save(args.out / "masks" / f"{i:04d}.png")
    print(f"wrote {args.n} images and masks to {args.out}")


if __name__ == "__main__":
    main()
