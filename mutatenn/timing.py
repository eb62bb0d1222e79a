"""Timing a build so that its latency means something: pinned threads, repeated calls.

One timed call per image on cores shared with other jobs measures the neighbours as much
as the build. A latency kill criterion (a catalogue metric whose inputs are latencies)
therefore needs ``[run] timing = { calls = N, threads = T }``: each job's TVM thread pool
is T threads pinned to the first T cores, each image is timed N times and its latency is
their median, and the campaign runs one job at a time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_CALLS, MIN_CALLS = 10, 3


@dataclass(frozen=True)
class Timing:
    calls: int = DEFAULT_CALLS
    threads: int = 1


def uses_latency(criterion) -> bool:
    """Whether any term of ``criterion`` reads latencies."""
    from operators import CATALOGUE

    return any(t.metric in CATALOGUE and CATALOGUE[t.metric].inputs == "latencies" for t in criterion.terms())


def pin_threads(threads: int) -> set[int]:
    """TVM's thread pool: ``threads`` workers pinned (TVM's big-core affinity mode) and this
    process kept on the first ``threads`` cores it may use; returns those cores."""
    import tvm

    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, set(cores))
    tvm.get_global_func("runtime.config_threadpool")(1, threads)
    return set(cores)
