"""Where campaign jobs run: local loky worker processes, or an existing Dask cluster.

Both give the same `JobResult` per job, in completion order: ``done`` with the job's
value, ``crashed`` (segfault, abort, out-of-memory kill, exception) or ``timed_out``,
each with a reason and the tail of the job's log.

On Dask the jobs go out as `distributed.Client` futures, not through joblib's dask
backend: joblib's ``Parallel`` ends the whole call at the first failed task, and a
segfault kills the Dask worker process itself (the scheduler then retries the task on
other workers until it gives up). Instead each future runs its job through
`isolation.run_isolated` inside the Dask worker, so a crash or hang is contained in a
loky process there and comes back as an ordinary result, exactly as in a local run.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Iterator

from ..errors import InputError, first_line
from ..isolation import run_isolated
from ..records import Job, JobResult, JobStatus
from .job import log_tail, run_job

CONNECT_TIMEOUT_S = 10


def _settle(outcome, log_path: str) -> JobResult:
    """The one place a job's JobResult is completed: a finished job's own result, or the
    pool's word for a worker that died or hung, with the log's tail."""
    if outcome.status is JobStatus.DONE:
        return outcome.value
    tail = log_tail(log_path) if log_path else ""
    return JobResult(outcome.status, _crash_reason(outcome.reason, tail), tail)


def _crash_reason(reason: str, tail: str) -> str:
    """The worker's own last words ('Fatal Python error: Segmentation fault') say more than the pool's."""
    if not reason.startswith("worker process died"):
        return reason
    fatal = [line.split(":", 1)[1].strip() for line in tail.splitlines() if line.startswith("Fatal Python error:")]
    if not fatal and "Segfault encountered" in tail:  # TVM's own SIGSEGV handler, when it was installed last
        fatal = ["Segmentation fault"]
    cause = fatal[-1] if fatal else "segfault, abort or out-of-memory kill"
    return f"worker process died: {cause}"


def run_local(jobs: list[Job], workers: int, timeout: float, job_function=run_job) -> Iterator[JobResult]:
    """Jobs in loky worker processes on this machine, in completion order."""
    from ..loading import source_family

    family = source_family(jobs[0].model) if jobs else ""
    for outcome in run_isolated(job_function, [(job,) for job in jobs], jobs=workers, timeout=timeout, family=family):
        result = _settle(outcome, jobs[outcome.index].log_path)
        result.index = outcome.index
        yield result


def isolated_on_worker(job: Job, timeout: float) -> JobResult:
    """Run one job in a loky process spawned by a Dask worker; the log stays on that machine."""
    import multiprocessing

    # Dask's worker processes are daemonic, and Python refuses children of daemonic
    # processes; loky's workers exit by themselves when their parent dies, so the flag
    # that guards against orphans is not needed here.
    multiprocessing.current_process()._config["daemon"] = False
    with tempfile.TemporaryDirectory(prefix="mutatenn-job-") as tmp:
        job = dataclasses.replace(job, log_path=os.path.join(tmp, "job.log"))
        outcome = next(iter(run_isolated(run_job, [(job,)], jobs=1, timeout=timeout)))
        return _settle(outcome, job.log_path)


def connect(address: str):
    """A Dask client for ``tcp://HOST:PORT``, or one clear line when there is none."""
    if not address.startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://")):
        raise InputError(f"--scheduler {address!r}: expected an address like tcp://HOST:PORT")
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--scheduler needs the 'distributed' package (pip install 'dask[distributed]')") from None
    _probe(address)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {first_line(err)}") from None
    if not client.scheduler_info().get("workers"):
        client.close()
        raise InputError(f"the Dask scheduler at {address} has no workers")
    return client


def _probe(address: str) -> None:
    """Fail fast on a refused TCP address instead of waiting for the client's timeout."""
    import socket
    from urllib.parse import urlsplit

    if not address.startswith("tcp://"):
        return
    parts = urlsplit(address)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise InputError(f"--scheduler {address!r}: expected an address like tcp://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {err.strerror or err}") from None


def run_dask(client, jobs: list[Job], timeout: float) -> Iterator[JobResult]:
    """Jobs as futures on the cluster; each worker isolates its job as `isolated_on_worker` says."""
    from distributed import as_completed

    futures = {client.submit(isolated_on_worker, dataclasses.replace(job, log_path=""), timeout,
                             key=f"mutatenn-{job.key}-{i}", pure=False): i for i, job in enumerate(jobs)}
    try:
        for future in as_completed(futures, loop=client.loop):
            try:
                result = future.result()
            except Exception as err:  # the Dask worker itself died or the task was lost
                result = JobResult(JobStatus.CRASHED, first_line(err))
            result.index = futures[future]
            yield result
    finally:
        client.cancel(list(futures))
