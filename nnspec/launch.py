"""``nnspec train SPEC --nproc N``: torchrun's launcher, started from nnspec.

It is ``torchrun --standalone --nproc-per-node N -m nnspec train SPEC ...`` (the
same parser, the same elastic agent), after checking the spec once here, so a
mistake in it is reported once rather than by every process. Runs on several
nodes use torchrun itself (see docs/distributed.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch

from .api import load
from .commands import EXIT_INTERRUPTED, UsageError, parse_overrides, parse_params
from .runtime.distributed import PeerFailedError, World

__all__ = ["launch", "worker_arguments"]


def worker_arguments(args: argparse.Namespace) -> list[str]:
    """The ``nnspec train`` arguments every process gets: those given, but --nproc."""
    argv = [args.spec]
    if args.out is not None:
        argv += ["--out", args.out]
    if args.resume:
        argv.append("--resume")
    if args.overwrite:
        argv.append("--overwrite")
    for item in args.set or ():
        argv += ["--set", item]
    for item in args.params or ():
        argv += ["-p", item]
    for package in args.allow_imports:
        argv += ["--allow-import", package]
    if getattr(args, "confine", False):
        argv.append("--confine")
    argv += ["--timeout", str(args.timeout)]
    if args.profile is not None:
        argv += ["--profile", str(args.profile)]
    return argv


def launch(args: argparse.Namespace) -> int:
    """Start ``args.nproc`` processes with torch's elastic launcher and wait for
    them; the exit status is the first failed process's (0 when all succeed)."""
    from .runtime.settings import resolve_settings

    nproc = args.nproc
    if nproc < 1:
        raise UsageError(
            f"--nproc expects a number of processes >= 1, received {nproc}"
        )
    if World.from_env().distributed or "TORCHELASTIC_RUN_ID" in os.environ:
        raise UsageError(
            "--nproc starts the processes itself; under torchrun leave it out"
        )
    # Check the spec here, once (SpecError: exit 2, nothing started).
    spec = load(args.spec, parse_params(args.params), allow_imports=args.allow_imports)
    settings = resolve_settings(
        spec, parse_overrides(args.set), allow_imports=args.allow_imports
    )
    if settings.device.type == "cuda" and nproc > torch.cuda.device_count():
        raise UsageError(
            f"--nproc {nproc}: this machine has {torch.cuda.device_count()} CUDA "
            "devices, one per process"
        )
    if settings.device.type == "cpu":
        # Share the cores out (torchrun would give each process one thread).
        threads = max(1, (os.cpu_count() or 1) // nproc)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    command = [
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--module",
        "nnspec",
        "train",
        *worker_arguments(args),
    ]
    try:
        run(parse_args(command))
    except ChildFailedError as exc:
        rank, failure = _first_failure(exc.failures)
        text = _failure_message(failure)
        print(
            f"error: rank {rank} of {nproc} failed (exit status {failure.exitcode})"
            + (f": {text}" if text else ""),
            file=sys.stderr,
        )
        return failure.exitcode if failure.exitcode > 0 else 1
    except (SignalException, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    except Exception as exc:
        # torch's elastic agent can trip over its own signal handling (a
        # SignalException raised inside its bookkeeping surfaces as another error,
        # such as an UnboundLocalError); the workers were stopped all the same.
        if _interrupted(exc):
            return EXIT_INTERRUPTED
        raise
    return 0


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while handling Ctrl-C or a termination signal."""
    from torch.distributed.elastic.multiprocessing.api import SignalException

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (SignalException, KeyboardInterrupt)):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _failure_message(failure: Any) -> str:
    """The first line of what a failed process recorded in its error file (the
    exception, as ``Type: message``), or "" when it recorded nothing."""
    message = failure.message
    if not isinstance(message, dict):  # no error file: killed, or failed early
        return ""
    lines = str(message.get("message", "")).strip().splitlines()
    return lines[0] if lines else ""


def _first_failure(failures: dict[int, Any]) -> tuple[int, Any]:
    """The failure that caused the others. A process that stopped because another
    failed records a PeerFailedError; the first that recorded anything else."""
    ranked = sorted(failures.items(), key=lambda item: (item[1].timestamp, item[0]))
    for rank, failure in ranked:
        text = _failure_message(failure)
        if text and not text.startswith(f"{PeerFailedError.__name__}:"):
            return rank, failure
    return ranked[0]
