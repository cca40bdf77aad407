"""Where this process stands: data-parallel training across processes (torchrun +
DistributedDataParallel), the device choice and the thread count.

`recdistill pipeline --nproc N` re-launches itself under `torch.distributed.run` (torchrun); each
worker then joins a process group here (gloo on loopback for CPU, nccl when the device is a GPU).
The rest of the pipeline asks this module where it stands (`world_size()`, `is_main()`, `barrier()`)
instead of carrying a context through every stage; torch.distributed already holds that state per
process, so there is no state of our own to keep in sync.

The split of work:
  * training: every rank builds the same model (same seed; DDP also broadcasts rank 0's weights),
    takes a rank-strided share of every global batch of the same seeded per-epoch permutation, and
    DDP averages the gradients: with equal shares each step is the single-process step on the same
    global batch. Only rank 0 validates and decides early stopping; the decision and, at the end, the
    best weights are broadcast so every rank leaves the loop with the same model.
  * soft labels: each rank computes a strided share of the cache chunks; all ranks then read all.
  * checkpoints, records, export and publish: rank 0 only.

The loop itself is training.fit.loop.train_loop, one loop for both cases: in a single process (no
WORLD_SIZE in the environment, or 1) nothing here changes behaviour: the helpers return rank 0 /
world size 1, and sharding, broadcasts and reductions are identities.

torch is imported inside functions: the CLI re-launches under torchrun without paying for it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from training.config import ConfigError, PipelineConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]
LOOPBACK = "127.0.0.1"
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# ---- device ------------------------------------------------------------------------------------------
def resolve_device(choice: str = "auto", local_rank: int = 0) -> torch.device:
    """Device "auto" is the GPU when one is visible, else the CPU; "cuda" without a GPU is a config error."""
    import torch

    if choice not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda', got {choice!r}")
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise ConfigError(
            "device = 'cuda' but no GPU is visible to torch (no device, or a CPU-only build); "
            "use device = 'auto' or 'cpu'"
        )
    if choice == "cpu" or not has_cuda:
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"LOCAL_RANK {local_rank} needs GPU {local_rank}, but only {torch.cuda.device_count()} visible: "
            "start at most one process per GPU, or set device = 'cpu'"
        )
    return torch.device("cuda", local_rank)


# ---- the context ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among world_size, its GPU index on the node, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, indices: Sequence[int] | np.ndarray, pad: bool = False) -> np.ndarray:
        """This rank's rank-strided share: indices[rank::world_size].

        pad=True first repeats from the start until the length divides world_size, so every rank gets
        the same count (ranks in DDP lockstep must run the same number of steps, and a zero-size share
        would average a NaN into the gradients).
        """
        arr = np.asarray(indices)
        if self.world_size == 1:
            return arr
        if pad and len(arr) % self.world_size:
            arr = np.resize(arr, -(-len(arr) // self.world_size) * self.world_size)
        return arr[self.rank :: self.world_size]

    def barrier(self) -> None:
        barrier()

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        return broadcast_object(obj, src)

    def all_gather_object(self, obj: Any) -> list[Any]:
        return all_gather_object(obj)


def _active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes in the group; 1 when no process group is initialised."""
    if not _active():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def rank() -> int:
    if not _active():
        return 0
    import torch.distributed as dist

    return dist.get_rank()


def is_main() -> bool:
    """True on rank 0 and in a single process: the one that writes checkpoints and publishes."""
    return rank() == 0


def current(device: str = "auto") -> DistContext:
    """This process's context, read from the initialised process group (single process when none)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if _active() else 0
    r = rank()
    return DistContext(r, world_size(), local_rank, resolve_device(device, local_rank), r == 0)


def _comm_device() -> torch.device:
    """Tensors for collectives live where the backend wants them: nccl on the GPU, gloo on the CPU."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank; a no-op in a single process."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` as rank `src` holds it (picklable objects; small: decisions, metrics, curves)."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order; [obj] in a single process."""
    if world_size() == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (e.g. one rank ran out of time)."""
    if world_size() == 1:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_module(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers into every rank's `model`, in place."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    dev = _comm_device()
    for tensor in model.state_dict().values():  # state_dict tensors share storage with the module
        if tensor.device == dev:
            dist.broadcast(tensor, src=src)
        else:
            staged = tensor.to(dev)
            dist.broadcast(staged, src=src)
            tensor.copy_(staged)


# ---- process group ----------------------------------------------------------------------------------
def _env_int(name: str) -> int:
    raw = os.environ.get(name)
    if raw is None:
        raise ConfigError(
            f"environment variable {name} is not set (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)"
        )
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}: expected an integer") from None


def init_from_env(device: str = "auto", threads: int | None = None) -> DistContext:
    """Join the process group torchrun describes in the environment; a single process when there is none.

    Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Backend: nccl when the resolved
    device is a GPU, else gloo, pinned to the loopback interface when the master is local. With
    `threads` None each rank gets an equal share of the cores (torch's default would give every rank
    all of them and the ranks would fight).
    """
    if os.environ.get("WORLD_SIZE", "1") == "1":
        return DistContext(0, 1, 0, resolve_device(device), True)
    import torch
    import torch.distributed as dist

    missing = [name for name in _ENV_VARS if name not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE is set but {', '.join(missing)} not: start the workers with torchrun")
    r, n, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if not 0 <= r < n:
        raise ConfigError(f"RANK={r} outside 0..WORLD_SIZE-1 ({n})")
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    elif os.environ["MASTER_ADDR"] in _LOOPBACK_NAMES and _has_interface("lo"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # keep gloo's sockets on loopback
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=r, world_size=n)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(n)))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local_world))
    log.info("rank %d of %d (local %d) on %s, %d threads", r, n, local, dev, torch.get_num_threads())
    if r != 0:  # one log, rank 0's: the others only speak up for warnings and errors
        logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    return DistContext(r, n, local, dev, r == 0)


def _has_interface(name: str) -> bool:
    try:
        return any(iface == name for _, iface in socket.if_nameindex())
    except OSError:
        return False


@contextmanager
def session(device: str = "auto", threads: int | None = None) -> Iterator[DistContext]:
    """init_from_env for the duration of a block; leaves the process group it created."""
    import torch.distributed as dist

    was_initialized = dist.is_available() and dist.is_initialized()
    ctx = init_from_env(device, threads)
    finished = False
    try:
        yield ctx
        finished = True
    finally:
        if ctx.distributed and not was_initialized and dist.is_initialized():
            if finished:  # leave together; after an error a peer may sit in a collective: torchrun ends it
                dist.barrier()
            dist.destroy_process_group()


# ---- the launcher -------------------------------------------------------------------------------------
def torchrun_command(nproc: int, cli_args: Sequence[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone ... -m recdistill.cli <cli_args>` on loopback."""
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: expected a positive number of processes")
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone", "--local-addr", LOOPBACK, "--nproc_per_node", str(nproc),
        "-m", "recdistill.cli", *cli_args,
    ]  # fmt: skip


def torchrun_env(nproc: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The workers' environment: the cores divided among ranks (OMP_NUM_THREADS), unless already set."""
    env = dict(os.environ if base is None else base)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def relaunch(nproc: int, cli_args: Sequence[str]) -> int:
    """Run the CLI under torchrun with `nproc` workers; returns the first failing worker's exit status.

    torchrun's own entry point (`torch.distributed.run.run`, what `python -m torch.distributed.run`
    calls) runs here in the launching process, so no extra interpreter starts, and a worker's
    failure comes back as its exit status (2 for bad input, which that worker has already explained
    on stderr) instead of torchrun's traceback.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    cmd = torchrun_command(nproc, cli_args)
    for key, value in torchrun_env(nproc, {}).items():  # the workers inherit this process's environment
        os.environ.setdefault(key, value)
    log.info("launching %d processes: %s", nproc, " ".join(cmd))
    try:
        run(get_args_parser().parse_args(cmd[3:]))
    except ChildFailedError as exc:
        failed_rank, failure = exc.get_first_failure()
        log.error("rank %d exited with status %d (its message is above)", failed_rank, failure.exitcode)
        return failure.exitcode if failure.exitcode > 0 else 1  # < 0: killed by a signal
    return 0


# ---- the data-parallel training step -------------------------------------------------------------------
def _loss_module(model: torch.nn.Module, batch_loss: Callable[[np.ndarray], torch.Tensor]) -> torch.nn.Module:
    """A module whose forward is `batch_loss`: DDP only syncs gradients of losses computed in forward."""
    from torch import nn

    class LossModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, idx: np.ndarray) -> torch.Tensor:
            return batch_loss(idx)

    return LossModule()


def wrap_ddp(model: torch.nn.Module, ctx: DistContext | None = None) -> torch.nn.Module:
    """DistributedDataParallel around `model` (rank 0's weights are broadcast); `model` itself when alone."""
    ctx = ctx or current()
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    # Buffers (item features) are built identically on every rank: no need to re-send them each step.
    return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def loss_step(
    model: torch.nn.Module, batch_loss: Callable[[np.ndarray], torch.Tensor], ctx: DistContext | None = None
) -> torch.nn.Module:
    """What training.fit.loop.train_loop calls per batch: `batch_loss` as a module, in DDP across ranks.

    Alone it is a plain module around `model` whose forward is `batch_loss` (same loss, same
    gradients); under torchrun DDP averages the gradients of every rank's share of the batch.
    """
    return wrap_ddp(_loss_module(model, batch_loss), ctx)


def mean_over_ranks(total: float, count: int) -> float:
    """(sum of `total`) / max(sum of `count`, 1) over the ranks: e.g. the epoch's mean batch loss.

    A collective under torchrun: every rank must call it.
    """
    if world_size() == 1:
        return total / max(count, 1)
    import torch
    import torch.distributed as dist

    sums = torch.tensor([total, count], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(sums)
    return float(sums[0] / sums[1].clamp(min=1))


def set_threads(cfg: PipelineConfig) -> None:
    """torch's intra-op threads as `threads` says (None: torch's default). Every stage sets them, so
    a stage run on its own uses the same threads as the whole pipeline."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
