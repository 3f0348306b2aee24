"""The training commands: ``nnspec train SPEC [--out DIR] [--resume] [--set
KEY=VALUE ...] [--nproc N]``, ``nnspec export-weights RUN_DIR`` and ``nnspec
consolidate CHECKPOINT``; the training itself is ``nnspec.runtime``'s.

Under torchrun (or ``--nproc``) every process runs ``train_command``; each one
that fails records its exception in torchrun's error file, so the launcher's
summary names it. A mistake in the spec, found by every process alike, is printed
by the first process of each node only.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any

from .commands import (
    EXIT_INTERRUPTED,
    EXIT_SPEC_ERROR,
    STDIN,
    add_spec_arguments,
    at_least_one,
    importable_beside,
    parse_overrides,
    parse_params,
)
from .runtime.checkpoint import read_run_checkpoint
from .runtime.distributed import (
    DEFAULT_TIMEOUT,
    PeerFailedError,
    World,
    failure_text,
)
from .runtime.errors import TrainError
from .runtime.logs import require_training_extras
from .spec.errors import SpecError

__all__ = [
    "consolidate_command",
    "export_weights_command",
    "register_consolidate",
    "register_export_weights",
    "register_train",
    "train_command",
]

EXIT_TRAIN_ERROR = 1


def train_command(args: argparse.Namespace) -> int:
    if args.spec == STDIN:
        print(
            "error: nnspec train reads a spec file, not standard input: its run "
            "directory keeps a copy of the spec to resume from",
            file=sys.stderr,
        )
        return EXIT_SPEC_ERROR
    try:
        require_training_extras()  # before anything is started or written
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TRAIN_ERROR
    if args.nproc is not None:
        from .launch import launch

        return launch(args)
    world = World.from_env()
    if world.distributed:
        return _train_one_of(world, args)
    trainer = _trainer(args)
    try:
        result = trainer.fit()
    except TrainError as exc:
        print(f"error: {exc.for_command_line()}", file=sys.stderr)
        return EXIT_TRAIN_ERROR
    return EXIT_INTERRUPTED if result.status == "interrupted" else 0


def _trainer(args: argparse.Namespace) -> Any:
    from .runtime.loop import Trainer

    if args.allow_imports:
        importable_beside(args.spec)
    return Trainer(
        args.spec,
        args.out,
        overrides=parse_overrides(args.set),
        params=parse_params(args.params),
        allow_imports=args.allow_imports,
        resume=args.resume,
        overwrite=args.overwrite,
        timeout=args.timeout,
        profile=args.profile,
    )


def _train_one_of(world: World, args: argparse.Namespace) -> int:
    """One process of a run under torchrun."""
    try:
        trainer = _trainer(args)
    except SpecError as exc:  # every process finds it: one report per node
        _record(exc)
        if world.local_rank == 0:
            raise
        return EXIT_SPEC_ERROR
    try:
        result = trainer.fit()
    except PeerFailedError as exc:
        _record(exc)
        print(
            f"error: {world}: stopped because rank {exc.failed_rank} failed",
            file=sys.stderr,
        )
        return EXIT_TRAIN_ERROR
    except SpecError as exc:
        _record(exc)
        raise
    except TrainError as exc:
        text = exc.for_command_line()
        _record(exc if text == str(exc) else TrainError(text))
        print(f"error: {world}: {text}", file=sys.stderr)
        return EXIT_TRAIN_ERROR
    except Exception as exc:
        _record(exc)
        traceback.print_exc()
        print(f"error: {world}: {failure_text(exc)}", file=sys.stderr)
        return EXIT_TRAIN_ERROR
    return EXIT_INTERRUPTED if result.status == "interrupted" else 0


def _record(exc: BaseException) -> None:
    """Write the exception to torchrun's error file for this process (when torchrun
    gave one), which its failure summary shows."""
    from torch.distributed.elastic.multiprocessing.errors import get_error_handler

    get_error_handler().record_exception(exc)


def register_train(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="the run directory (default: runs/<spec stem>)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run's last checkpoint (with the spec and --set given "
        "now; the model must be unchanged)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a run directory that holds a run",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a key of the train section (repeatable): --set epochs=2, "
        "--set optimizer.lr=0.01; the value is read as YAML",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N processes on this machine (one per GPU), started by "
        "torch's elastic launcher, as torchrun --standalone --nproc-per-node N would",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="with several processes: how long a collective waits for the others "
        f"before the run fails (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        type=at_least_one("a number of steps"),
        const=5,
        metavar="STEPS",
        help="record a torch.profiler trace of STEPS real training steps (default "
        "5) into the run directory: profile.json (Perfetto, chrome://tracing)",
    )
    parser.set_defaults(handler=train_command)


def export_weights_command(args: argparse.Namespace) -> int:
    from .compiler.weights import save_weights
    from .runtime.rundir import RunDir

    run = RunDir(Path(args.run_dir))
    state = read_run_checkpoint(Path(args.run_dir), args.checkpoint)
    target = (
        Path(args.output) if args.output else Path(args.run_dir) / "model.safetensors"
    )
    save_weights(state["model"], target, _weights_metadata(run, state))
    print(
        f"wrote {target} ({len(state['model'])} tensors, step {state.get('step', '?')})"
    )
    return 0


def _weights_metadata(run: Any, state: dict[str, Any]) -> dict[str, str]:
    """What an exported weights file says of where it comes from: the spec's name,
    the hash of its model part with the params in effect, the step, the versions."""
    import json

    from .spec.yaml_source import parse_yaml

    metadata = {
        "spec_hash": str(state.get("spec_hash", "")),
        "params": json.dumps(state.get("params") or {}, sort_keys=True, default=str),
        "step": str(state.get("step", "")),
        "torch_version": str(state.get("torch_version", "")),
    }
    spec_file = run.root / "spec.yaml"
    try:
        data = parse_yaml(spec_file.read_text(encoding="utf-8"), str(spec_file)).data
    except (OSError, UnicodeDecodeError, SpecError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        metadata["spec_name"] = data["name"]
    return metadata


def register_export_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory of nnspec train"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write (.safetensors, or .pt for a torch file; "
        "default: RUN_DIR/model.safetensors)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="best",
        help="which checkpoint's weights (default: best)",
    )
    parser.set_defaults(handler=export_weights_command)


def consolidate_command(args: argparse.Namespace) -> int:
    from .runtime.checkpoint import load_checkpoint
    from .runtime.sharded import consolidate, read_meta

    source = Path(args.checkpoint)
    out = Path(args.output) if args.output else source.with_suffix(".pt")
    try:
        step = read_meta(source)["step"]
        if out.exists() and (later := load_checkpoint(out)["step"]) > step:
            raise TrainError(
                f"{out} holds a later state (step {later}) than {source} (step "
                f"{step}); give another file with -o"
            )
        state = consolidate(source, out)
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TRAIN_ERROR
    print(
        f"wrote {out}: step {state['step']}, {len(state['model'])} model tensors, "
        f"from {state.get('world_size', '?')} shards"
    )
    return 0


def register_consolidate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="a sharded checkpoint directory (runs/NAME/checkpoints/last.dcp)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the one-file checkpoint to write (default: CHECKPOINT with .pt, "
        "which --resume reads without fsdp)",
    )
    parser.set_defaults(handler=consolidate_command)
