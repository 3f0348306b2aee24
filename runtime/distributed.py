"""Training on several processes, on PyTorch's own engine.

torchrun (or ``nnspec train --nproc N``, which starts the same elastic launcher)
starts one process per device and tells each its rank in the environment. The
``Cluster`` here joins them into a process group (nccl on CUDA, gloo on CPU) and
gives the loop a few hooks:

- ``wrap``: DistributedDataParallel, or FSDP2 (``fully_shard``) for
  ``strategy: fsdp``. The loop compiles what comes back, so a compiled model is
  compiled after it is wrapped.
- the data: every rank walks the one-process sample order and takes its slice of
  each batch (``Batches``), so the global batch is batch_size * world_size *
  accumulate, and a resumed run is exact.
- ``mean`` and ``sum``: the logged losses and the validation sums over all ranks.
- ``stop_vote``: a Ctrl-C or SIGTERM that reaches some ranks stops all of them
  after one and the same step.
- checkpoints: for DDP rank 0 writes the whole state, one file; for FSDP every
  rank writes its shards with torch.distributed.checkpoint (``sharded``).
- ``session``: a failure on one rank is recorded where the others look for it,
  so they stop saying which rank failed and why.

One process (no torchrun, or a world of one) is the plain path: no process group,
no wrapper, and every hook returns at once, without a host sync.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..spec.errors import SpecError
from .checkpoint import (
    copy_checkpoint,
    copy_directory,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .device import make_scaler
from .errors import TrainError
from .rundir import RunDir

__all__ = ["DEFAULT_TIMEOUT", "Cluster", "PeerFailedError", "World", "failure_text"]

#: Seconds a collective may wait for the other ranks before it fails.
DEFAULT_TIMEOUT = 600.0

_FAILURE_KEY = "nnspec/failure"
_STOP_CODES: dict[str | None, int] = {None: 0, "SIGTERM": 1, "Ctrl-C": 2}
_STOP_NAMES = {code: name for name, code in _STOP_CODES.items()}
_NO_CONTEXT = contextlib.nullcontext()


class PeerFailedError(TrainError):
    """Another rank failed first, and this one stopped because of it."""

    def __init__(self, failed_rank: int, message: str) -> None:
        super().__init__(f"rank {failed_rank} failed: {message}")
        self.failed_rank = failed_rank
        self.cause = message


@dataclass(frozen=True)
class World:
    """Which process this is: torchrun's RANK, LOCAL_RANK and WORLD_SIZE."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @classmethod
    def from_env(cls) -> World:
        if dist.is_available() and dist.is_initialized():
            rank, size = dist.get_rank(), dist.get_world_size()
        else:
            rank = int(os.environ.get("RANK", "0"))
            size = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(rank, int(os.environ.get("LOCAL_RANK", str(rank))), size)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.size}"


def failure_text(exc: BaseException) -> str:
    """An exception as one line for the other ranks and the launcher."""
    if isinstance(exc, SpecError):
        return str(exc.diagnostics[0]) if exc.diagnostics else str(exc)
    if isinstance(exc, TrainError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Cluster:
    """This process's part in a run of ``world.size`` processes."""

    def __init__(
        self,
        strategy: str = "ddp",
        timeout: float = DEFAULT_TIMEOUT,
        world: World | None = None,
    ) -> None:
        self.world = world or World.from_env()
        self.strategy = strategy
        self.timeout = timeout
        self.distributed = self.world.distributed
        self.main = self.world.rank == 0
        self.sharded = self.distributed and strategy == "fsdp"
        self.backend: str | None = None
        self.device = torch.device("cpu")
        self._control: Any = None  # a gloo group: votes, random states, barriers
        self._created = False
        self._vote: _StopVote | None = None

    # -- joining and leaving -----------------------------------------------------------

    def place(
        self, device: torch.device, error: Callable[..., SpecError]
    ) -> torch.device:
        """This rank's device: on CUDA, the GPU of its LOCAL_RANK."""
        if not self.distributed or device.type != "cuda":
            return device
        if device.index is not None:
            raise error(
                ("device",),
                f"device {device} names one GPU, and every process of the run would "
                "take it: use cuda or auto, and each process takes the GPU of its "
                "LOCAL_RANK",
            )
        count = torch.cuda.device_count()
        if self.world.local_rank >= count:
            raise TrainError(
                f"{self.world} has LOCAL_RANK {self.world.local_rank}, but this "
                f"machine has {count} CUDA devices: start at most {count} processes "
                "per node"
            )
        return torch.device("cuda", self.world.local_rank)

    @contextlib.contextmanager
    def session(self, device: torch.device) -> Iterator[None]:
        """Join the process group for the run (unless the caller did), and leave it
        after. An exception on this rank is recorded for the others; an exception
        that follows another rank's failure becomes a PeerFailedError naming it."""
        if not self.distributed:
            yield
            return
        self.device = device
        self._join()
        try:
            yield
        except BaseException as exc:
            first = self._first_failure(exc)
            if first is None:
                raise
            raise PeerFailedError(*first) from exc
        self._leave()

    def _join(self) -> None:
        timeout = timedelta(seconds=self.timeout)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group(
                "nccl" if cuda else "gloo",
                timeout=timeout,
                device_id=self.device if cuda else None,
            )
            self._created = True
        self.backend = str(dist.get_backend())
        self._control = dist.new_group(backend="gloo", timeout=timeout)

    def _leave(self) -> None:
        if self._vote is not None:
            self._vote.finish()
        if self._created:
            dist.destroy_process_group()  # the control group with it
            self._created = False
        else:  # the caller's process group stays; the control group goes
            dist.destroy_process_group(self._control)

    def _first_failure(self, exc: BaseException) -> tuple[int, str] | None:
        """Record this rank's failure in the job's store, unless another rank's is
        there already: then (that rank, its message)."""
        mine = f"{self.world.rank}\n{failure_text(exc)}"
        try:
            store = dist.PrefixStore(
                "nnspec", dist.distributed_c10d._get_default_store()
            )
            first = store.compare_set(_FAILURE_KEY, "", mine).decode()
        except Exception:  # the store went with the failed rank: say what we know
            return None
        if first == mine:
            return None
        rank, _, message = first.partition("\n")
        return int(rank), message

    # -- the model ---------------------------------------------------------------------

    def wrap(
        self, model: nn.Module, *, block_classes: set[str], all_outputs_trained: bool
    ) -> nn.Module:
        """The model the loop trains: DDP or FSDP2 over ``model``, or ``model``."""
        if not self.distributed:
            return model
        if self.sharded:
            return _fully_shard(model, block_classes)
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            # Outputs without a loss leave parameters without gradients.
            find_unused_parameters=not all_outputs_trained,
            gradient_as_bucket_view=True,
        )

    def accumulating(
        self, model: nn.Module, last: bool
    ) -> contextlib.AbstractContextManager[Any]:
        """Around the forward and backward of one batch of a step: DDP averages the
        gradients once, after the step's last batch."""
        if last or not self.distributed or self.sharded:
            return _NO_CONTEXT
        return model.no_sync()  # type: ignore[operator]

    def scaler(self, device: torch.device, precision: str) -> torch.amp.GradScaler:
        """The gradient scaler; a sharded run checks for overflow on every rank."""
        if self.sharded and precision == "16-mixed":
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            return ShardedGradScaler(device.type)
        return make_scaler(device, precision)

    def seed(self, seed: int) -> None:
        """Ranks other than 0 draw their own random numbers (dropout) from here on;
        rank 0 keeps those of a run of one process."""
        if self.distributed and not self.main:
            _seed_rank(seed, self.world.rank)

    # -- values over all ranks ---------------------------------------------------------

    def mean(self, tensor: Tensor) -> Tensor:
        """The mean over all ranks (a collective; the tensor itself in one process)."""
        if not self.distributed:
            return tensor
        dist.all_reduce(tensor)
        return tensor.div_(self.world.size)

    def sum(self, tensor: Tensor) -> Tensor:
        """The sum over all ranks (a collective; the tensor itself in one process)."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self._control)

    def stop_vote(self, signals: Any) -> Any:
        """What the loop asks whether to stop: the signals themselves in one process,
        a vote that stops every rank at one step in several."""
        if not self.distributed:
            return signals
        self._vote = _StopVote(signals, self._control)
        return self._vote

    def describe(self, batch_size: int, accumulate: int) -> str:
        """`2 processes (ddp, gloo); global batch 64 = 16 x 2 processes x 2 accumulated`."""
        if not self.distributed:
            return ""
        size = self.world.size
        text = f"{size} processes ({self.strategy}, {self.backend}); global batch "
        text += f"{batch_size * size * accumulate} = {batch_size} x {size} processes"
        return text + (f" x {accumulate} accumulated" if accumulate > 1 else "")

    # -- checkpoints -------------------------------------------------------------------

    def read_checkpoint(self, run: RunDir) -> dict[str, Any] | None:
        """The state to resume from (every rank reads it), or None."""
        if self.sharded:
            if run.last.exists():
                from .sharded import read_meta

                return read_meta(run.last)
            single = run.checkpoints / "last.pt"
            if single.exists():
                text = (
                    f"{run.checkpoints} holds {single.name}, a checkpoint of one "
                    "process or DDP; strategy fsdp resumes from its own sharded "
                    "checkpoints only: resume with strategy ddp, or start over "
                )
                raise TrainError(
                    text + "with overwrite=True", command_line=text + "with --overwrite"
                )
            return None
        state = load_checkpoint(run.last) if run.last.exists() else None
        sharded = run.checkpoints / "last.dcp"
        if sharded.exists():
            from .sharded import read_meta

            meta = read_meta(sharded)
            if state is None or state["step"] < meta["step"]:
                raise TrainError(
                    f"the newest checkpoint, {sharded} (step {meta['step']}), is "
                    f"sharded (FSDP): resume it with strategy fsdp on "
                    f"{meta.get('world_size')} processes, or turn it into {run.last} "
                    f"with: nnspec consolidate {sharded}"
                )
        return state

    def save(
        self,
        state: dict[str, Any],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        run: RunDir,
        *,
        best: bool,
    ) -> None:
        """Write ``state`` with the model's and optimizer's to ``run.last`` (and
        ``run.best``). A collective in a run of several processes."""
        if self.distributed:
            state["rank_rng"] = self._gather(state["rng"])
        if self.sharded:
            from .sharded import save_sharded

            save_sharded(
                state, model, optimizer, run.last, main=self.main, barrier=self.barrier
            )
        elif self.main:
            state["model"] = model.state_dict()
            state["optimizer"] = optimizer.state_dict()
            save_checkpoint(state, run.last)
        if best and self.main:
            self.copy_best(run)
        self.barrier()  # the checkpoint is complete when save returns on any rank

    def load_states(
        self,
        checkpoint: dict[str, Any],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        path: Path,
    ) -> None:
        """Put the checkpoint's weights and optimizer state into place."""
        if self.sharded:
            from .sharded import load_sharded

            load_sharded(path, model, optimizer, checkpoint)
            return
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])

    def copy_best(self, run: RunDir) -> None:
        """Copy the last checkpoint to the best one (rank 0)."""
        if run.sharded:
            copy_directory(run.last, run.best)
        else:
            copy_checkpoint(run.last, run.best)

    def restore_rng(self, checkpoint: dict[str, Any], seed: int) -> None:
        """This rank's random states: its own when the world has the size it had,
        else rank 0's, and ranks other than 0 draw afresh from (seed, rank, step)."""
        ranks = checkpoint.get("rank_rng")
        if self.distributed and ranks and len(ranks) == self.world.size:
            restore_rng(ranks[self.world.rank])
            return
        restore_rng(checkpoint["rng"])
        if self.distributed and not self.main:
            _seed_rank(seed + checkpoint["step"], self.world.rank)

    def _gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value``, on rank 0 (None elsewhere)."""
        gathered: list[Any] | None = [None] * self.world.size if self.main else None
        dist.gather_object(value, gathered, dst=0, group=self._control)
        return gathered


class _StopVote:
    """Ranks stop together. After each step every rank sends whether it was asked
    to stop (Ctrl-C, SIGTERM) into an all-reduce that runs while the next step
    computes, and reads the result after that step: every rank gets the same
    answer at the same step, and no step waits for it."""

    def __init__(self, signals: Any, group: Any) -> None:
        self.signals = signals
        self.group = group
        self.requested: str | None = None
        self._pending: tuple[Any, Tensor] | None = None

    def step(self) -> None:
        self.finish()
        flag = torch.tensor([_STOP_CODES[self.signals.requested]], dtype=torch.int32)
        work = dist.all_reduce(
            flag, op=dist.ReduceOp.MAX, group=self.group, async_op=True
        )
        self._pending = (work, flag)

    def finish(self) -> None:
        if self._pending is None:
            return
        work, flag = self._pending
        self._pending = None
        work.wait()
        code = int(flag.item())
        if code and self.requested is None:
            self.requested = _STOP_NAMES[code]


def _seed_rank(seed: int, rank: int) -> None:
    derived = (seed * 1_000_003 + rank * 7919) % (1 << 62)
    torch.manual_seed(derived)
    random.seed(derived)


def _fully_shard(model: nn.Module, block_classes: set[str]) -> nn.Module:
    """FSDP2 units: each block instance and each top-level layer with parameters
    (inner ones first), then the whole model, which keeps the rest."""
    from torch.distributed.fsdp import fully_shard

    containers = (nn.ModuleList, nn.ModuleDict)  # no forward: not a unit
    units = {
        id(m)
        for m in model.modules()
        if m is not model and type(m).__name__ in block_classes
    }
    units |= {id(m) for m in model.children()}
    for module in reversed(list(model.modules())):
        if (
            id(module) in units
            and not isinstance(module, containers)
            and any(True for _ in module.parameters())
        ):
            fully_shard(module)
    fully_shard(model)
    return model
