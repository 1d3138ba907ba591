"""One training job over several processes: torch.distributed data parallelism through the HF Trainer.

A job whose spec asks for `gpus` > 1 (a fine-tune or a student) is run by the worker that claimed it
as `torchrun --nproc_per_node N -m bertq.worker.data_parallel JOB ATTEMPT` on its own machine:

- every rank runs the job's ordinary function; the Trainer sees torchrun's RANK/WORLD_SIZE and trains
  with DistributedDataParallel (NCCL on GPUs, one device per rank; gloo on a CPU-only machine);
- rank 0 reports through a `DbContext` fenced by the claimed attempt (progress, metrics, checkpoints,
  the final model); the other ranks report nothing (`QuietContext`);
- the claiming worker keeps the lease (its heartbeat) and watches: a cancel or a lost lease stops the
  ranks, a worker shutdown stops them and requeues the job (it resumes from the last complete
  checkpoint, i.e. the last epoch).

Each rank leaves its outcome in the attempt's folder: `rank-R.done`, `rank-R.error` (it raised:
the job fails with that error) or `rank-R.terminated` (torchrun stopped it because a peer failed).
A rank that left none was killed outright (SIGKILL, the kernel's out-of-memory killer): the attempt
stops as a passing fault, and the job goes back to the queue and resumes from its last complete
checkpoint. A peer's collective failing because of that kill is the kill's doing, not an error.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bertq.errors import AttemptSuperseded, BertqError, Preempted
from bertq.worker.context import JobContext

log = logging.getLogger("bertq.worker")

WATCH_SECONDS = 0.5


class RankDied(BertqError):
    """A training process ended without an error of its own (killed): the attempt may be retried."""


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return world()[0] == 0


def run_ranks(ctx: JobContext, processes: int) -> dict[str, Any]:
    """Run the claimed job as `processes` DDP ranks on this machine and return rank 0's result."""
    attempt_folder = ctx.workdir / "ranks" / str(ctx.attempt)
    attempt_folder.mkdir(parents=True, exist_ok=True)
    for stale in attempt_folder.glob("*"):
        stale.unlink()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={processes}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "--max_restarts=0",
        "-m",
        "bertq.worker.data_parallel",
        str(ctx.job_id),
        str(ctx.attempt),
        str(attempt_folder),
    ]
    ctx.log.info("training with %d data-parallel processes: %s", processes, " ".join(command[2:]))
    with open(ctx.workdir / f"ranks-{ctx.attempt}.log", "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while process.poll() is None:
                if ctx.should_stop or ctx.preempted:
                    _stop(process)
                    if ctx.preempted:
                        raise Preempted(f"job {ctx.job_id}: the worker is shutting down; the ranks were stopped")
                    raise AttemptSuperseded(f"job {ctx.job_id}: attempt {ctx.attempt} was superseded")
                time.sleep(WATCH_SECONDS)
        finally:
            if process.poll() is None:
                _stop(process)
    outcomes = {path.stem: path.suffix for path in attempt_folder.glob("rank-*.*")}
    killed = [rank for rank in range(processes) if f"rank-{rank}" not in outcomes]
    result = attempt_folder / "result.json"
    if killed or (process.returncode != 0 and not any(o == ".error" for o in outcomes.values())):
        raise RankDied(
            f"training process {', '.join(map(str, killed)) or '?'} of {processes} died without an error of its "
            f"own (killed, or out of memory; torchrun exit code {process.returncode}); see ranks-{ctx.attempt}.log "
            "in the job folder"
        )
    for rank in range(processes):
        error = attempt_folder / f"rank-{rank}.error"
        if error.is_file():
            raise BertqError(error.read_text(encoding="utf-8").strip().splitlines()[-1])
    return dict(json.loads(result.read_text(encoding="utf-8")))


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str]) -> None:
    """One rank (started by torchrun): run the job's function with this rank's context."""
    from bertq.config import load_settings
    from bertq.db.engine import sessions
    from bertq.db.models import Job
    from bertq.worker.runner import DbContext, QuietContext, load_job_function

    job_id, attempt, folder = int(argv[0]), int(argv[1]), Path(argv[2])
    rank, size = world()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank}/{size} %(name)s: %(message)s")
    settings = load_settings()
    with sessions(settings)() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise SystemExit(f"job {job_id} does not exist")
        kind, spec = job.kind, dict(job.spec)
    if os.environ.get("LOCAL_RANK") is not None:
        import torch

        if torch.cuda.is_available():  # "cuda" means this rank's own device from here on
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))

    def terminated(signum: int, frame: Any) -> None:
        (folder / f"rank-{rank}.terminated").write_text(str(signum))
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    context = DbContext if rank == 0 else QuietContext
    ctx = context(settings=settings, job_id=job_id, attempt=attempt, kind=kind, spec=spec)
    try:
        result = load_job_function(kind)(spec, ctx) or {}
    except Exception as error:
        message = str(error) if isinstance(error, BertqError) else f"{type(error).__name__}: {error}"
        (folder / f"rank-{rank}.error").write_text(f"{traceback.format_exc()}\n{message}\n", encoding="utf-8")
        raise
    if rank == 0:
        (folder / "result.json").write_text(json.dumps({**result, "data_parallel_processes": size}), encoding="utf-8")
    (folder / f"rank-{rank}.done").write_text("")


if __name__ == "__main__":
    main(sys.argv[1:])
