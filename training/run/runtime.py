"""Where and how tensors run: device, DDP process group (torchrun), bf16 autocast, compile, seeding."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from training.config import RuntimeConfig

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    world_size: int
    local_rank: int
    bf16: bool
    compile: bool
    # A CPU (gloo) group for small control decisions, so asking "did any rank get SIGTERM?" each step never
    # syncs a GPU stream; None: not distributed, or the default group is already gloo.
    control_group: object | None = field(default=None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, status, checkpoints, caches and metrics; the others only compute."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        """bf16 autocast when enabled; a no-op context otherwise."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any: all ranks stop at the same step (a rank that stopped
        alone would leave the others waiting in their next gradient all-reduce, and rank 0 might not save)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control_group)
        return bool(value.item())

    def mean_across_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over ranks (each rank holds its slice of the global batch): the number one process would log."""
        if not self.distributed:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def maybe_compile(self, module: torch.nn.Module) -> torch.nn.Module:
        return torch.compile(module) if self.compile else module


def setup_runtime(cfg: RuntimeConfig) -> Runtime:
    """Read torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK), join the process group, pick the device.

    DDP only engages under torchrun (one process per GPU; gloo on CPU, nccl on CUDA). Each rank prints one
    `runtime: rank R of W joined ...` line once it is in the group; everything else is written by rank 0.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if "TORCHELASTIC_RUN_ID" in os.environ:
        _die_with_launcher()
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    if want == "cuda" and local_rank >= torch.cuda.device_count():
        raise RuntimeError(
            f"LOCAL_RANK={local_rank} but torch sees {torch.cuda.device_count()} CUDA device(s): start at most one "
            "process per GPU (torchrun --nproc_per_node, the supervisor's nproc_per_node)")
    device = torch.device(want, local_rank) if want == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # TF32 matmuls: ~free speed on Ampere/Hopper for the fp32 parts outside autocast.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    control_group = None
    if world_size > 1:
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        if dist.get_backend() != "gloo":
            control_group = dist.new_group(backend="gloo")  # a collective: every rank creates it
        print(f"runtime: rank {rank} of {world_size} joined ({dist.get_backend()}, {device}, pid {os.getpid()})",
              flush=True)
    on_gpu = device.type == "cuda"
    return Runtime(
        device=device,
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        bf16=on_gpu if cfg.bf16 is None else cfg.bf16,
        compile=on_gpu if cfg.compile is None else cfg.compile,
        control_group=control_group,
    )


def _die_with_launcher() -> None:
    """A torchrun worker runs in its own session, out of reach of the supervisor's signals to torchrun's
    process group: SIGKILL when torchrun dies (even by SIGKILL), so no rank trains on unsupervised. A SIGTERM
    still reaches every rank through torchrun, which forwards it."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no prctl
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # torchrun was gone before the line above (we were handed to init)
        print("runtime: torchrun, this worker's launcher, is gone: exiting", file=sys.stderr, flush=True)
        os._exit(1)


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG a stage may draw from, so a resumed run draws the same numbers."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # Plain lists and tensors only, so checkpoints load with torch.load(weights_only=True).
    state = {
        "python": list(random.getstate()),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
