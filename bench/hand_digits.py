"""examples/digits.yaml trained by a hand-written script: what nnspec's run does, in
plain torch, the way one would write it by hand.

The same work as ``nnspec train examples/digits.yaml``: the 8x8 digits of
examples/data/digits.npz, a tenth held out for validation; the same network
(written by hand in bench/digits_net.py), AdamW (lr 0.002, weight decay 0.01) under
OneCycleLR (max_lr 0.004, stepped per step), cross-entropy, batches of 64
reshuffled each epoch, 12 epochs. Every 25 steps the mean loss is read back and
logged (a JSON line, TensorBoard scalars, a printed line); at each epoch's end the
validation loss and accuracy are computed and logged, and a checkpoint (model,
optimizer, schedule, position) is written with ``torch.save`` (to best.pt as well
when the accuracy improved).

It imports torch, numpy and TensorBoard only, so that run as a process it pays
what a hand-written script pays at start-up, and no more:

    python -m bench.hand_digits OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from .digits_net import digits_net

__all__ = ["BATCH", "DATA", "EPOCHS", "LOG_EVERY", "split_data", "train"]

DATA = Path(__file__).resolve().parent.parent / "examples" / "data" / "digits.npz"
EPOCHS = 12
BATCH = 64
LOG_EVERY = 25
VAL_FRACTION = 0.1


def split_data(
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, validation images, validation labels)."""
    with np.load(DATA) as arrays:
        images = torch.from_numpy(arrays["image"])
        labels = torch.from_numpy(arrays["label"])
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    held = round(VAL_FRACTION * len(images))
    val, train = order[:held], order[held:]
    return images[train], labels[train], images[val], labels[val]


@torch.no_grad()
def _validate(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    model.eval()
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for i in range(0, len(x), BATCH):
        out = model(x[i : i + BATCH])
        target = y[i : i + BATCH]
        loss_sum += loss_fn(out, target) * len(target)
        correct += (out.argmax(dim=1) == target).sum()
    model.train()
    return loss_sum.item() / len(x), correct.item() / len(x)


def train(out: Path, *, seed: int = 0) -> float:
    """Train as examples/digits.yaml says, writing logs and checkpoints to ``out``;
    returns the best validation accuracy."""
    torch.manual_seed(seed)
    x, y, val_x, val_y = split_data(seed)
    model = digits_net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.01)
    per_epoch = len(x) // BATCH
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.004, total_steps=EPOCHS * per_epoch
    )
    loss_fn = nn.CrossEntropyLoss()
    out.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(out))
    best, step = -1.0, 0
    loss_sum = torch.zeros(())
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as log:

        def record(values: dict[str, float], prefix: str) -> None:
            log.write(json.dumps(values) + "\n")
            for key, value in values.items():
                if key not in ("step", "epoch"):
                    writer.add_scalar(f"{prefix}/{key}", value, step)
            print("  ".join(f"{k} {v:.4g}" for k, v in values.items()), flush=True)

        began = time.perf_counter()
        for epoch in range(1, EPOCHS + 1):
            order = torch.randperm(len(x))
            for i in range(per_epoch):
                idx = order[i * BATCH : (i + 1) * BATCH]
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                loss_sum += loss.detach()
                step += 1
                if step % LOG_EVERY == 0:
                    now = time.perf_counter()
                    mean = loss_sum.item() / LOG_EVERY
                    rate = LOG_EVERY * BATCH / (now - began)
                    lr = float(scheduler.get_last_lr()[0])
                    values = {"step": step, "epoch": epoch, "loss": mean, "lr": lr}
                    record({**values, "samples_per_s": rate}, "train")
                    loss_sum.zero_()
                    began = now
            val_loss, accuracy = _validate(model, loss_fn, val_x, val_y)
            validation = {
                "step": step,
                "epoch": epoch,
                "val_loss": val_loss,
                "val_accuracy": accuracy,
            }
            record(validation, "val")
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "step": step,
            }
            torch.save(state, out / "last.pt")
            if accuracy > best:
                best = accuracy
                torch.save(state, out / "best.pt")
            began = time.perf_counter()  # the rate counts training time only
    writer.close()
    return best


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.hand_digits OUT_DIR", file=sys.stderr)
        return 2
    best = train(Path(args[0]))
    print(f"done; best val_accuracy {best:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
