"""Where and in what precision a model runs: the one place for device and precision choices.

Training, evaluation and translation all pick their device with ``pick_device``,
their precision with ``pick_precision`` and wrap the forward pass in ``autocast``.
"""

from __future__ import annotations

import contextlib
import platform

import torch

from seq2seq.errors import UserError


def pick_device(name: str, key: str = "trainer.device") -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` as named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{key}={name}: no CUDA device is available; use {key}=cpu")
    return torch.device(name)


def cpuinfo(field: str) -> str:
    """The first ``field`` of Linux's /proc/cpuinfo ("model name", "flags"); "" elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return ""


def cpu_name() -> str:
    """The CPU as ``lscpu`` names it ("Model name"), for benchmark reports."""
    return cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices on AMX tiles (Linux's ``amx_bf16`` flag)."""
    return "amx_bf16" in cpuinfo("flags").split()


def pick_precision(
    name: str, device: torch.device, key: str = "trainer.precision", train: bool = True
) -> str:
    """``auto``: bf16 autocast on CUDA (fp16 where bf16 is missing); on the CPU bf16 for
    training where the CPU has AMX (measured 1.7-2x fp32, ``scripts/bench_train.py``), else fp32.
    Decoding (``train=False``) stays fp32 on every CPU."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if train and cpu_has_amx_bf16() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise UserError(f"{key}=fp16 needs CUDA; on CPU use bf16 or fp32")
    return name


def output_rows_multiple(device: torch.device, precision: str) -> int:
    """Training pads the rows of its output layer, (N, D) x (D, V) with N the batch's target
    tokens, to a multiple of this. On the CPU under autocast, oneDNN caches what it built for
    each matrix-product shape (up to 1,024 of them), tens of MB apiece for this product; N is
    new at nearly every step, so without padding a process grew by about 40 MB a step until
    it ran out of memory. With 256 there are at most max_tokens / 256 shapes; the extra rows
    cost about 1% of a step. Elsewhere: 1 (no padding)."""
    return 256 if device.type == "cpu" and precision in ("bf16", "fp16") else 1


def autocast(device: torch.device, precision: str):
    """The autocast context for a precision name (fp32: none)."""
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


def set_threads(num_threads: int) -> None:
    """Use ``num_threads`` CPU threads for torch (0: keep torch's default)."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)
