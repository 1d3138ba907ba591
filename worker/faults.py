"""Fault injection for the test suite: real faults, triggered inside real worker processes.

Each is off unless its environment variable is set on the worker; production never sets them.

- BERTQ_FAULT_KILL_JOBS="7,9": the process dies by SIGKILL as soon as it has claimed job 7 or 9
  (a job that kills its worker every time).
- BERTQ_FAULT_KILL_IN_SAVE="7:2": the process running job 7's first attempt dies by SIGKILL in the
  middle of its second checkpoint save: the files are written, the completeness marker is not.
- BERTQ_FAULT_OOM_ABOVE_BATCH=4: every forward pass of more than 4 inputs raises the error CUDA
  raises when memory runs out (torch.cuda.OutOfMemoryError, "CUDA out of memory."), on any device.
- BERTQ_FAULT_KILL_RANK="1:12": data-parallel rank 1 of a training job's first attempt dies by
  SIGKILL at optimiser step 12 (its peers see their collective fail).
- BERTQ_FAULT_STEP_SECONDS=0.05: every training step and every inference batch takes at least this
  long, so that a test's fault reliably lands while a tiny model still runs (it trains ~100 steps a
  second otherwise).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_on_claim(job_id: int) -> None:
    doomed = os.environ.get("BERTQ_FAULT_KILL_JOBS", "")
    if doomed and str(job_id) in doomed.split(","):
        _die()


def slow_step() -> None:
    seconds = os.environ.get("BERTQ_FAULT_STEP_SECONDS")
    if seconds:
        time.sleep(float(seconds))


_saves: dict[int, int] = {}


def kill_in_save(job_id: int, attempt: int) -> None:
    """Called between writing a checkpoint's files and its completeness marker."""
    target = os.environ.get("BERTQ_FAULT_KILL_IN_SAVE", "")
    if not target or attempt != 1:
        return
    job, _, nth = target.partition(":")
    if job == str(job_id):
        _saves[job_id] = _saves.get(job_id, 0) + 1
        if _saves[job_id] == int(nth or 1):
            _die()


def arm_out_of_memory(model: Any) -> Any:
    """Make `model` fail like a full GPU for batches above BERTQ_FAULT_OOM_ABOVE_BATCH."""
    limit = os.environ.get("BERTQ_FAULT_OOM_ABOVE_BATCH")
    if not limit:
        return model
    import torch

    def hook(module: Any, args: tuple, kwargs: dict) -> None:
        inputs = kwargs.get("input_ids")
        if inputs is None and args:
            inputs = args[0]
        if inputs is not None and inputs.shape[0] > int(limit):
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate a batch of {inputs.shape[0]} "
                f"(simulated: BERTQ_FAULT_OOM_ABOVE_BATCH={limit})"
            )

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return model


def kill_rank(attempt: int, step: int) -> None:
    target = os.environ.get("BERTQ_FAULT_KILL_RANK", "")
    if target and attempt == 1:
        rank, _, at_step = target.partition(":")
        if os.environ.get("RANK") == rank and str(step) == at_step:
            _die()
