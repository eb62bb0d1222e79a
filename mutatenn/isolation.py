"""Running jobs in worker processes so a segfault, an out-of-memory kill or a hang in one
job becomes that job's outcome instead of the end of the whole run."""
from __future__ import annotations

import concurrent.futures as cf
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .errors import first_line
from .records import JobStatus

DONE, CRASHED, TIMED_OUT = JobStatus.DONE, JobStatus.CRASHED, JobStatus.TIMED_OUT


@dataclass
class Outcome:
    """How one call in a worker process ended; ``value`` is its return value when DONE."""

    index: int
    status: JobStatus
    value: Any = None
    reason: str = ""
    seconds: float = 0.0


_FAMILY: dict = {"current": None}  # the framework family the reusable workers have imported (None: no workers yet)


def _executor(jobs: int, restart: bool = False):
    from joblib.externals.loky import get_reusable_executor

    return get_reusable_executor(max_workers=jobs, timeout=300, kill_workers=restart, reuse=not restart)


def _switch_family(family: str, jobs: int) -> None:
    """Fresh workers when jobs of another framework family come: a worker that imported
    TensorFlow segfaults when it imports torchvision later (and the pool is reused)."""
    if family == "tensorflow":  # workers inherit the environment that keeps TensorFlow's banners off
        from .frameworks.quiet import quiet_tensorflow

        quiet_tensorflow()
    if _FAMILY["current"] is not None and family != _FAMILY["current"]:
        _executor(jobs, restart=True)
    _FAMILY["current"] = family


def _describe(err: BaseException) -> str:
    name = type(err).__name__
    if "TerminatedWorkerError" in name or "BrokenProcessPool" in name:
        text = str(err).strip().splitlines()
        detail = text[0] if text else "the worker process died"
        return f"worker process died (segfault, abort or out-of-memory kill): {detail}"[:500]
    return first_line(err)


def run_isolated(func: Callable, argument_lists: Iterable[tuple], jobs: int = 1,
                 timeout: float | None = None, family: str = "") -> Iterator[Outcome]:
    """Yield one Outcome per argument tuple, in completion order.

    Jobs run ``jobs`` at a time in loky worker processes. A job whose worker dies is run
    again alone, so the crash is pinned on the job that caused it; a job past ``timeout``
    seconds has its workers killed and is reported ``timed_out``. ``family`` names the
    framework family the jobs import (`mutatenn.loading.source_family`): workers are
    replaced when it changes.
    """
    _switch_family(family, jobs)
    pending = list(enumerate(argument_lists))
    suspects: list[tuple[int, tuple]] = []
    returned: set[int] = set()
    for outcome in _run_all(func, pending, jobs, timeout, suspects):
        if outcome.index in returned:
            raise RuntimeError(f"job {outcome.index} came back twice from the worker pool")
        returned.add(outcome.index)
        yield outcome
    lost = sorted({index for index, _ in pending} - returned)
    if lost:  # every submitted job ends in an outcome, or the run fails loudly
        raise RuntimeError(f"{len(lost)} of {len(pending)} jobs never came back from the worker pool: {lost[:10]}")


def _run_all(func, pending, jobs, timeout, suspects) -> Iterator[Outcome]:
    yield from _run_batch(func, pending, jobs, timeout, suspects)
    # Jobs that shared a pool with a dying worker run again, one at a time.
    for item in suspects:
        yield from _run_batch(func, [item], 1, timeout, blame=True)


def _run_batch(func, batch, jobs, timeout, suspects=None, blame=False) -> Iterator[Outcome]:
    executor = _executor(jobs)
    started = {}
    futures = {}
    queue = list(batch)

    def submit_next():
        index, args = queue[0]
        fut = executor.submit(func, *args)  # may raise on a broken pool: the job stays queued
        queue.pop(0)
        futures[fut] = (index, args)
        started[fut] = time.monotonic()

    while queue and len(futures) < jobs:
        submit_next()
    while futures:
        done, _ = cf.wait(list(futures), timeout=1.0, return_when=cf.FIRST_COMPLETED)
        now = time.monotonic()
        for fut in done:
            index, args = futures.pop(fut)
            elapsed = now - started.pop(fut)
            try:
                yield Outcome(index, DONE, fut.result(), seconds=elapsed)
            except Exception as err:  # the worker died, or the pool broke under it
                if blame or suspects is None:
                    yield Outcome(index, CRASHED, reason=_describe(err), seconds=elapsed)
                else:
                    suspects.append((index, args))
        if timeout is not None:
            late = [f for f in futures if now - started[f] > timeout]
            if late:
                for fut in late:
                    index, _ = futures.pop(fut)
                    yield Outcome(index, TIMED_OUT, reason=f"no result after {timeout:g} s; worker killed",
                                  seconds=now - started.pop(fut))
                # Killing is the only way to stop a hung native call; the others are retried.
                for fut in list(futures):
                    queue.insert(0, futures.pop(fut))
                    started.pop(fut)
                executor = _executor(jobs, restart=True)
        if any(isinstance(f.exception(timeout=0), Exception) for f in done if not f.cancelled()):
            # A broken pool must be replaced before more work goes in.
            executor = _executor(jobs, restart=False)
        while queue and len(futures) < jobs:
            try:
                submit_next()
            except Exception:  # pool broken by a crash just seen: start a fresh one
                executor = _executor(jobs, restart=True)
                submit_next()
