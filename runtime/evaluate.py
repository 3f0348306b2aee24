"""The loss and metrics of a run's checkpoint (``nnspec evaluate``, whose command
line is nnspec/run_cli.py), and the run rebuilt for ``nnspec predict``.

The run is rebuilt from its directory: the spec as trained (spec.yaml), its params
and ``--set`` overrides (train.json), the checkpoint's weights (read with
weights_only, never unpickled). The validation split is the run's own; the data
files of the spec are found where the run found them (beside the spec it was
trained from).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..compiler.loaded import importable_beside, loads
from ..spec.errors import SpecError
from .checkpoint import read_run_checkpoint
from .data import Batches, Split, load_split
from .data.reader import Reader
from .data.samples import Samples
from .data.splits import SPLIT_FILE
from .device import autocast
from .errors import RunError
from .settings import Settings, output_names, resolve_settings

__all__ = [
    "LoadedRun",
    "evaluate",
    "file_samples",
    "load_run",
    "run_split",
    "split_samples",
]


@dataclass
class LoadedRun:
    """A run's model with a checkpoint's weights, and the settings it trained with."""

    root: Path
    settings: Settings
    model: nn.Module
    checkpoint: str  # best or last
    step: int | None
    device: torch.device

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The model's outputs by name, whatever forward returns."""
        spec = self.settings.spec
        out = self.model(*[batch[name] for name in spec.compiled.model.inputs])
        names = output_names(spec)
        if isinstance(out, dict):
            return out
        if isinstance(out, tuple):
            return dict(zip(names, out))
        return {names[0]: out}


def load_run(
    run_dir: Path, checkpoint: str = "best", allow_imports: frozenset[str] = frozenset()
) -> LoadedRun:
    """The model of a run directory with its ``best`` or ``last`` checkpoint.
    A folder that is not a run is a RunError; a spec mistake a SpecError."""
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    spec_file, info_file = run_dir / "spec.yaml", run_dir / "train.json"
    if not (spec_file.is_file() and info_file.is_file()):
        raise RunError(
            f"{run_dir} is not a run directory of nnspec train (it has no spec.yaml "
            "and train.json)"
        )
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
        text = spec_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"cannot read the run in {run_dir}: {exc}") from None
    if not isinstance(info, dict):
        raise RunError(f"{info_file} does not hold the settings of a run")
    # Errors name the spec the run trained from, and its data files are found
    # beside it, as they were when the run read them.
    origin = info.get("spec")
    path = origin if isinstance(origin, str) and origin else str(spec_file)
    params = info.get("params") if isinstance(info.get("params"), dict) else {}
    overrides = info.get("overrides") if isinstance(info.get("overrides"), dict) else {}
    if allow_imports:
        importable_beside(path)
    spec = loads(text, params, path=path, allow_imports=allow_imports)
    settings = resolve_settings(spec, overrides, allow_imports=allow_imports)
    state = read_run_checkpoint(run_dir, checkpoint)
    model = spec.build()
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunError(
            f"the {checkpoint} checkpoint of {run_dir} does not fit its spec: {first}"
        ) from None
    device = settings.device
    model.to(device).eval()
    for term in settings.losses:
        term.to(device)
    step = state.get("step")
    return LoadedRun(
        run_dir,
        settings,
        model,
        checkpoint,
        step if isinstance(step, int) else None,
        device,
    )


def run_split(run: LoadedRun, allow_imports: frozenset[str] = frozenset()) -> Split:
    """The run's split, read again from its data (it is a function of the data and
    the seed), checked against the split.json the run wrote: data files that changed
    since the run would give other validation or test samples."""
    split = load_split(run.settings, allow_imports)
    saved = run.root / SPLIT_FILE
    if not saved.is_file():
        return split  # a run from before split.json
    try:
        record = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"cannot read {saved}: {exc}") from None
    for key in ("val", "test"):
        if not isinstance(record, dict) or record.get(key) != split.held_out.get(key):
            raise RunError(
                f"the run's {key} split ({saved}) is not what its data gives now: "
                "the data files changed since the run"
            )
    return split


def split_samples(
    run: LoadedRun, split: str, allow_imports: frozenset[str] = frozenset()
) -> Samples:
    """The run's validation (``val``) or test (``test``) samples."""
    found = run_split(run, allow_imports)
    if split == "val":
        if found.val is None:
            raise RunError(
                f"the run in {run.root} has no validation data (data.val or "
                "data.val_fraction); give a data file to evaluate on"
            )
        return found.val
    if found.test is None:
        raise RunError(
            f"the run in {run.root} has no test split (data.test or "
            "data.test_fraction); give a data file to evaluate on"
        )
    return found.test


def file_samples(settings: Settings, file: Path) -> Samples:
    """The samples of an .npz or .pt file with the run's input and target names,
    checked as the run checks its data; a problem is a one-line RunError."""
    reader = Reader(settings, frozenset())
    where = ("data", "source")
    try:
        if file.suffix == ".npz":
            raw = reader.npz(file, where)
        elif file.suffix == ".pt":
            raw = reader.pt(file, where)
        else:
            raise RunError(f"{file}: the data to evaluate on is an .npz or .pt file")
        return reader.samples(raw, where, "val")
    except SpecError as exc:
        raise RunError(f"{file}: {exc.message}") from None


@torch.no_grad()
def evaluate(
    run: LoadedRun, samples: Samples, batch_size: int | None = None
) -> dict[str, float]:
    """Loss and metrics over every sample, as the run's validation computes them;
    keys without the ``val_`` prefix (``loss``, ``accuracy``)."""
    from .metrics import Tally

    s = run.settings
    t = s.train
    data = Batches(
        samples,
        batch_size or t.data.batch_size,
        run.device,
        workers=t.data.workers,
        seed=t.seed,
    )
    batch_dims = {name: (v.batch_dim or 0) for name, v in s.outputs.items()}
    loss_sum = torch.zeros((), device=run.device)
    terms_sum = torch.zeros(len(s.losses), device=run.device)
    tally = Tally(s.metrics, run.device)
    for batch, real in data.padded():
        with autocast(run.device, t.precision):
            outputs = run.forward(batch)
            outputs = {
                k: v.narrow(batch_dims.get(k, 0), 0, real)
                if isinstance(v, Tensor)
                else v
                for k, v in outputs.items()
            }
            batch = {k: v[:real] for k, v in batch.items()}
            values = [term(outputs, batch) for term in s.losses]
            loss = _weighted_sum(s, values)
        loss_sum += loss * real
        if len(s.losses) > 1:
            terms_sum += torch.stack([v.detach().float() for v in values]) * real
        tally.update(outputs, batch)
    n = len(samples)
    sums = torch.cat([loss_sum.view(1), terms_sum]).double().tolist()
    record = {"loss": sums[0] / n}
    if len(s.losses) > 1:
        for term, value in zip(s.losses, sums[1:]):
            record[f"loss_{term.output}"] = value / n
    for key, value in tally.values().items():
        record[key.removeprefix("val_")] = value
    return record


def _weighted_sum(settings: Settings, values: list[Tensor]) -> Tensor:
    """The loss as training sums it (float32)."""
    terms = settings.losses
    if len(terms) == 1 and terms[0].weight == 1.0:
        return values[0].float()
    total = terms[0].weight * values[0].float()
    for term, value in zip(terms[1:], values[1:]):
        total = total + term.weight * value.float()
    return total
