"""Training on several processes with torch.distributed, started by ``torchrun``.

    torchrun --standalone --nproc_per_node=N -m seq2seq.train +model=transformer

starts N trainers. Each takes every N-th batch of the epoch's batch order; after
each backward pass DistributedDataParallel averages the gradients, so every
process applies the same update. Process 0 (the main process) alone validates,
logs and writes the run directory; the others follow its decisions.
Without torchrun's environment (``WORLD_SIZE`` unset or 1) every function here
is a no-op and training is the plain single-process loop.
"""

from __future__ import annotations

import datetime
import os
import time

import torch
import torch.distributed as dist

from seq2seq.errors import UserError

# Validation runs on the main process only while the others wait in a collective.
TIMEOUT = datetime.timedelta(hours=2)


def launched() -> bool:
    """True when torchrun started more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """This process's GPU (``cuda:LOCAL_RANK``) when training on CUDA, else ``device``."""
    if dist.is_initialized() and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def wants_cuda(device_name: str) -> bool:
    """Whether ``trainer.device`` (auto, cpu, cuda, cuda:N) trains on CUDA."""
    return device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())


def init(cuda: bool) -> None:
    """Join the process group torchrun prepared: NCCL for CUDA training, gloo on CPU."""
    if not launched() or dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ:
        raise UserError("WORLD_SIZE is set but MASTER_ADDR is not; start several processes with torchrun")
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        found = torch.cuda.device_count()
        if local_rank >= found:
            raise UserError(
                f"process {local_rank} of this machine has no CUDA device ({found} found); "
                f"start at most that many processes per machine, or train with trainer.device=cpu"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)


def shutdown(wait: bool) -> None:
    """Leave the process group; with ``wait``, only once every process got here (a process
    that tears gloo down while another is still using it can abort)."""
    if dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def run_dir_overrides(args: list[str]) -> list[str]:
    """Hydra overrides that give every process the main process's run directory.

    Hydra names the directory after the start time, which can differ by a second
    between processes; the main process picks it and sends it to the others. The
    others keep their own log file (``train_rank<R>.log``) and do not rewrite ``.hydra/``.
    """
    if not dist.is_initialized():
        return []
    extra = []
    if not any(a.lstrip("+").startswith("hydra.run.dir=") for a in args):
        name = time.strftime("outputs/%Y-%m-%d/%H-%M-%S") if is_main() else None
        extra.append(f"hydra.run.dir={from_main(name)}")
    if not is_main():
        extra += ["hydra.output_subdir=null", f"hydra.job.name=train_rank{rank()}"]
    return extra


def barrier() -> None:
    """Wait until every process gets here."""
    if dist.is_initialized():
        dist.barrier()


def from_main(value):
    """The main process's ``value`` (any picklable object), on every process."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all processes."""
    if not dist.is_initialized():
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def gather(value) -> list:
    """Every process's ``value``, in rank order, on every process."""
    if not dist.is_initialized():
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def shard(batches: list, start: int) -> list:
    """This process's share of an epoch's batch order from position ``start``: every
    world-th batch, as many on each process (the last fewer-than-world are left out)."""
    world = world_size()
    end = start + (len(batches) - start) // world * world
    return batches[start + rank() : end : world]


def rng_states(device: torch.device) -> list[dict]:
    """Every process's random state (CPU, and CUDA when training there), in rank order."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return gather({"torch": torch.get_rng_state(), "cuda": cuda})


def restore_rng(states: list[dict], device: torch.device) -> bool:
    """Take this process's random state from ``states`` (saved by every process of a
    run); False when that run had another number of processes and nothing was restored."""
    if len(states) != world_size():
        return False
    state = states[rank()]
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    return True
