"""Where folds compute: the one rule for ``train.use_gpu``, applied in one place.

- ``false``: the CPU.
- ``auto``: GPUs when there are some (on Ray: in the cluster; in this process: visible to
  torch), else the CPU.
- ``true``: GPUs; with none there, an error naming the setting (a run that asks for a GPU never
  waits forever for one, nor trains on the CPU without saying so).

The driver decides once (``use_gpus``); each fold's process then takes the device it was given
(``fold_device``): on a Ray worker, the GPU (or share of one) Ray assigned it, which is the only
one the worker sees. A fold sent to a GPU whose process sees no CUDA device is an error too,
except on a simulated cluster whose GPUs exist only in Ray's bookkeeping (``LOGICAL_GPUS``
set: the tests' multi-node cluster), where folds are scheduled by their GPU shares and compute
on the CPU.
"""

from __future__ import annotations

import os

import torch

LOGICAL_GPUS = "MER_RAY_LOGICAL_GPUS"


class DeviceError(ValueError):
    """A GPU asked for where there is none."""


def use_gpus(setting: str | bool, on_ray: bool = False) -> bool:
    """Whether folds train on GPUs, by ``train.use_gpu``. ``on_ray``: count the Ray cluster's
    GPUs (Ray must be initialised) instead of this process's."""
    if setting is False:
        return False
    if on_ray:
        import ray

        gpus = ray.cluster_resources().get("GPU", 0)
        where = "the Ray cluster"
    else:
        gpus = torch.cuda.device_count()
        where = "this machine (torch sees no CUDA device)"
    if setting is True and gpus <= 0:
        raise DeviceError(f"train.use_gpu is true but {where} has no GPU; set "
                          f"train.use_gpu=auto (GPUs when present) or false")
    return gpus > 0


def fold_device(use_gpu: bool) -> torch.device:
    """The device of a fold whose driver decided ``use_gpu``: the first GPU this process sees
    (on a Ray worker, the one Ray assigned it), or the CPU."""
    if not use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if os.environ.get(LOGICAL_GPUS) == "1":
            return torch.device("cpu")
        raise DeviceError("train.use_gpu: this fold was sent to a GPU but its process sees no "
                          "CUDA device (is CUDA_VISIBLE_DEVICES set?)")
    return torch.device("cuda", 0)


def cpu_bf16_units(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU multiplies bfloat16 numbers in hardware (``amx_bf16`` or
    ``avx512_bf16`` among /proc/cpuinfo's flags); None where the flags cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), None)
    if flags is None:
        return None
    return "amx_bf16" in flags or "avx512_bf16" in flags


def warn_if_bf16_emulated(precision: str, use_gpu: bool) -> None:
    """``train.precision=bf16`` on CPU folds of a CPU without bf16 arithmetic: torch emulates
    it there, slower than fp32. Said once per process; the run goes on as configured."""
    import warnings

    if precision == "bf16" and not use_gpu and cpu_bf16_units() is False:
        warnings.warn("train.precision=bf16 on a CPU without bf16 matrix units (no amx_bf16 or "
                      "avx512_bf16 flag): bfloat16 is emulated here and slower than fp32; "
                      "--set train.precision=fp32 trains in full precision", stacklevel=2)
