"""Training on several processes with ``torch.distributed`` (gloo on CPUs, NCCL on GPUs).

``mindsight train --devices N`` starts N processes on this node with PyTorch's own launcher
(``torch.distributed.launcher``, the engine of ``torchrun``); under ``torchrun --nnodes M
--nproc-per-node N`` the same command joins the process group torchrun set up. Two ways to use
the processes (``--parallel``):

``model``  every fold is trained by all processes together: each takes its shard of the global
           batch (``train.batch_size`` per process), the brain and image embeddings are
           all-gathered *with gradient* (``torch.distributed.nn.functional.all_gather``, as
           open_clip does) and the loss is computed on the whole global batch, so the
           contrastive negatives are those of a single process with batch ``N × batch_size``;
           DistributedDataParallel averages the gradients. Data order comes from the seed alone,
           whatever the world size; rank 0 alone writes checkpoints.
``folds``  folds are dealt out to the processes, one model each; a fold that fails is reported
           and the others go on (the default when there are at least as many folds as processes).

Batch norm keeps per-process statistics (DDP broadcasts rank 0's buffers); on GPUs
``--sync-bn`` would be the fix, and the equality of a distributed run with a single-process one
holds for encoders without batch norm or dropout (the tests use the MLP without dropout).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import record

from mindsight.errors import ConfigError, MindsightError

__all__ = ["LossStep", "World", "gather_rows", "generator_worker", "launch", "shard", "train_worker"]

PARALLEL_MODES = ("auto", "model", "folds")


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` processes (``rank`` 0 writes the outputs)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str:
        """``cuda:<local_rank>`` where GPUs are, else ``cpu``."""
        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    @classmethod
    def from_env(cls) -> World:
        """The process group set up by ``torchrun`` or :func:`launch` (initialised here on first
        use); a single process when neither ran."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def part(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's equal share of a tensor drawn for the whole global batch (all of it
        for one process): how the generators shard their indices, noise and dropout."""
        return batch if self.size == 1 else batch.tensor_split(self.size)[self.rank]

    def mean(self, value: torch.Tensor) -> float:
        """A scalar averaged over the processes (for logging one loss per step)."""
        return value.item() if self.size == 1 else all_mean(value)

    def all_gather_object(self, obj: Any) -> list[Any]:
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


def shard(batch: torch.Tensor, world: World) -> tuple[torch.Tensor, list[int]]:
    """This process's part of the global ``batch`` (contiguous, so gathering the parts gives the
    batch back in order), padded to the largest part's size with copies of its first row
    (all-gather needs equal sizes; the copies are dropped after gathering), and every part's
    true size."""
    parts = batch.tensor_split(world.size)
    sizes = [len(p) for p in parts]
    mine = parts[world.rank]
    if len(mine) == 0:
        mine = batch[:1]
    pad = max(sizes) - len(mine)
    if pad > 0:
        mine = torch.cat([mine, mine[:1].expand(pad, *mine.shape[1:])])
    return mine, sizes


def gather_rows(x: torch.Tensor, sizes: list[int], world: World) -> torch.Tensor:
    """Every process's ``x`` (padded shards, see :func:`shard`), concatenated without the
    padding, keeping the autograd graph so each gradient flows back to the process that made
    the row."""
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(x.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


class DistributedStep(nn.Module):
    """One training step's forward as a module, so DistributedDataParallel can wrap it: the
    local shard through the model's heads, the global batch gathered, the loss on it."""

    def __init__(self, model: nn.Module, world: World) -> None:
        super().__init__()
        self.model, self.world = model, world

    def forward(self, x: torch.Tensor, subject: torch.Tensor, sizes: list[int], compute_loss: Any
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        emb, txt, mse = self.model.heads(x, subject)
        emb, txt, mse = (gather_rows(t, sizes, self.world) for t in (emb, txt, mse))
        return compute_loss(emb, txt, mse)


def wrap(model: nn.Module, world: World) -> nn.Module:
    """:class:`DistributedStep` of ``model`` in DistributedDataParallel (unused parameters
    allowed: a text head with the text loss off gets no gradient)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.local_rank] if torch.cuda.is_available() else None
    return DistributedDataParallel(DistributedStep(model, world), device_ids=ids,
                                   find_unused_parameters=True)


def ddp(module: nn.Module, world: World) -> nn.Module:
    """``module`` in DistributedDataParallel (for models whose loss needs no gathering: the
    generators, whose losses are means over their samples)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.local_rank] if torch.cuda.is_available() else None
    return DistributedDataParallel(module, device_ids=ids)


class LossStep(nn.Module):
    """A model's ``loss`` method as a module's forward, so DDP sees the step (VAR's loss)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.model.loss(*args, **kwargs)


def all_mean(value: torch.Tensor) -> float:
    """The mean of a scalar over the processes (for logging one loss per step)."""
    value = value.detach().clone().float()
    dist.all_reduce(value)
    return float(value) / dist.get_world_size()


def check_parallel(mode: str) -> str:
    if mode not in PARALLEL_MODES:
        raise ConfigError(f"--parallel must be one of {', '.join(PARALLEL_MODES)}, got {mode!r}")
    return mode


def launch(fn: Any, n: int, *args: Any, run_id: str = "mindsight") -> dict[int, Any]:
    """Run ``fn(*args)`` in ``n`` processes on this node with PyTorch's launcher (what
    ``torchrun --nproc-per-node n`` runs), each with its ``RANK`` / ``WORLD_SIZE`` /
    ``LOCAL_RANK``; returns each rank's return value."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if n < 1:
        raise ConfigError(f"--devices must be at least 1, got {n}")
    if torch.cuda.is_available() and n > torch.cuda.device_count():
        raise ConfigError(f"--devices {n} but this node has {torch.cuda.device_count()} GPU(s)")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=run_id,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.2, start_method="spawn")
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # errors: one line below
    try:
        return elastic_launch(config, fn)(*args)
    except ChildFailedError as exc:  # one line: the first process's own error
        rank, failure = min(exc.failures.items())
        message = failure.message
        if isinstance(message, dict):
            message = message.get("message", str(message))
        last = [line for line in str(message).strip().splitlines() if line.strip()][-1:] or ["unknown error"]
        raise MindsightError(f"process {rank} of {n} failed: {last[0]}") from None


@contextlib.contextmanager
def joined() -> Iterator[World]:
    """This launched process in its group (CPU processes share the cores between them); the
    group is left on the way out, error or not."""
    world = World.from_env()
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(world.size, 1)))
    try:
        yield world
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@record
def train_worker(config: dict[str, Any], out: str, resume: bool, cache_dir: str | None,
                 parallel: str) -> str:
    """One process of ``mindsight train --devices N`` (or of torchrun)."""
    from mindsight.config import RunConfig
    from mindsight.train.run import train_run

    with joined() as world:
        train_run(RunConfig.from_dict(config), out, resume=resume, cache_dir=cache_dir, world=world,
                  parallel=parallel)
    return out


@record
def generator_worker(kind: str, work: str, config: dict[str, Any], resume: bool) -> str:
    """One process of ``mindsight train-generator --devices N`` (``kind``: ``diffusion`` or ``var``)."""
    with joined() as world:
        if kind == "var":
            from mindsight.generate.train_var import VarTrainConfig, train_var

            return str(train_var(work, VarTrainConfig.from_dict(config), device=world.device, resume=resume,
                                 world=world))
        from mindsight.generate.train_builtin import GeneratorTrainConfig, train_builtin

        return str(train_builtin(work, GeneratorTrainConfig.from_dict(config), device=world.device,
                                 resume=resume, world=world))
