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

import os
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

from .campaign_job import log_tail, run_job
from .errors import UserError
from .isolation import CRASHED, DONE, run_isolated

CONNECT_TIMEOUT_S = 10


@dataclass
class JobResult:
    index: int
    status: str  # done, crashed or timed_out
    value: Any = None
    reason: str = ""
    log_tail: str = ""


def _settle(status: str, value, reason: str, log_path: str) -> tuple[str, Any, str, str]:
    """A job whose worker lived but whose build or run raised is a crash too."""
    if status == DONE and isinstance(value, dict) and value.get("error"):
        return CRASHED, None, value["error"], value.get("log_tail", "")
    if status == DONE:
        return status, value, reason, ""
    tail = log_tail(log_path) if log_path else ""
    return status, None, _crash_reason(reason, tail), tail


def _crash_reason(reason: str, tail: str) -> str:
    """The worker's own last words ('Fatal Python error: Segmentation fault') say more than the pool's."""
    if not reason.startswith("worker process died"):
        return reason
    fatal = [line.split(":", 1)[1].strip() for line in tail.splitlines() if line.startswith("Fatal Python error:")]
    if not fatal and "Segfault encountered" in tail:  # TVM's own SIGSEGV handler, when it was installed last
        fatal = ["Segmentation fault"]
    cause = fatal[-1] if fatal else "segfault, abort or out-of-memory kill"
    return f"worker process died: {cause}"


def run_local(jobs: list[dict], workers: int, timeout: float) -> Iterator[JobResult]:
    """Jobs in loky worker processes on this machine."""
    for outcome in run_isolated(run_job, [(job,) for job in jobs], jobs=workers, timeout=timeout):
        status, value, reason, tail = _settle(outcome.status, outcome.value, outcome.reason,
                                              jobs[outcome.index].get("log_path", ""))
        yield JobResult(outcome.index, status, value, reason, tail)


def isolated_on_worker(job: dict, timeout: float) -> tuple[str, Any, str, str]:
    """Run one job in a loky process spawned by a Dask worker; the log stays on that machine."""
    import multiprocessing

    # Dask's worker processes are daemonic, and Python refuses children of daemonic
    # processes; loky's workers exit by themselves when their parent dies, so the flag
    # that guards against orphans is not needed here.
    multiprocessing.current_process()._config["daemon"] = False
    with tempfile.TemporaryDirectory(prefix="mutatenn-job-") as tmp:
        job = {**job, "log_path": os.path.join(tmp, "job.log")}
        outcome = next(iter(run_isolated(run_job, [(job,)], jobs=1, timeout=timeout)))
        return _settle(outcome.status, outcome.value, outcome.reason, job["log_path"])


def connect(address: str):
    """A Dask client for ``tcp://HOST:PORT``, or one clear line when there is none."""
    if not address.startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://")):
        raise UserError(f"--scheduler {address!r}: expected an address like tcp://HOST:PORT")
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs the 'distributed' package (pip install 'dask[distributed]')") from None
    _probe(address)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot reach the Dask scheduler at {address}: {first}") from None
    if not client.scheduler_info().get("workers"):
        client.close()
        raise UserError(f"the Dask scheduler at {address} has no workers")
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
        raise UserError(f"--scheduler {address!r}: expected an address like tcp://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise UserError(f"cannot reach the Dask scheduler at {address}: {err.strerror or err}") from None


def run_dask(client, jobs: list[dict], timeout: float) -> Iterator[JobResult]:
    """Jobs as futures on the cluster; each worker isolates its job as `isolated_on_worker` says."""
    from distributed import as_completed

    remote_jobs = [{**job, "log_path": "", "cache_dir": job.get("cache_dir", "")} for job in jobs]
    futures = {client.submit(isolated_on_worker, job, timeout, key=f"mutatenn-{job['key']}-{i}", pure=False): i
               for i, job in enumerate(remote_jobs)}
    try:
        for future in as_completed(futures, loop=client.loop):
            index = futures[future]
            try:
                status, value, reason, tail = future.result()
            except Exception as err:  # the Dask worker itself died or the task was lost
                status, value, reason, tail = CRASHED, None, f"{type(err).__name__}: {err}"[:500], ""
            yield JobResult(index, status, value, reason, tail)
    finally:
        client.cancel(list(futures))
