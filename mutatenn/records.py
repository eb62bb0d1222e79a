"""The engine's typed records: verdicts, job statuses, a job, its result, a verdict row.

Each record is built in one place (`campaign.plan` builds jobs, `campaign.job` and
`campaign.dispatch` build job results, `campaign.judge` builds verdict rows) and read
everywhere else by attribute. `Verdict` is the run folder's own word list
(`reports.schema`), so the engine, the store, the tables and the report share one set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from runfolder.verdicts import SCORED, Verdict

__all__ = ["SCORED", "Verdict", "JobStatus", "Job", "JobResult", "VerdictRow"]


class JobStatus(str, Enum):
    """How a job in a worker process ended."""

    DONE = "done"
    CRASHED = "crashed"  # the run raised, or the worker died (segfault, abort, OOM kill)
    MEMORY_ERROR = "memory_error"  # the run failed a bounds check (`mutatenn.bounds`)
    UNINITIALIZED_READ = "uninitialized_read"  # a kernel left output elements unwritten (`mutatenn.poison`)
    TIMED_OUT = "timed_out"  # no result within the timeout; the worker was killed
    BUILD_ERROR = "build_error"  # the build raised: the compiler refused the program
    # A TIR mutant whose changed kernels compiled to the original's machine code
    # (`build.equivalence`): the verdict `equivalent`, without running it.
    EQUIVALENT = "equivalent"
    # MutateNN's own failure before anything was built (the mutant rebuilt differently from
    # the plan, a program that no longer loads): never a verdict; the coordinator stops.
    INTERNAL_ERROR = "internal_error"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Job:
    """One build-and-run in a worker: plain values only (no IRModule: they cannot be
    serialised in TVM 0.27; the worker rebuilds program and mutant from them). ``variant``
    is the stack as a `runners.Variant` with every build option (a pass mutant's own)."""

    key: str  # the artifact key (build identity)
    model: str
    pretrained: str
    preset: str | None
    images: str
    variant: Any  # mutatenn.runners.Variant: runner, target, import path and full build options
    runner: str  # "module:Class" of the runner, so extensions registered here reach workers
    operator: str = ""  # empty: the original program
    site: int = 0
    program_hash: str = ""  # the mutant's planned hash, checked when the worker rebuilds it
    cache_dir: str = ""
    log_path: str = ""
    repeats: int = 1
    pairs: tuple[tuple[str, str], ...] = ()  # (mutant id, stack name) this build settles
    share_kernels: bool = False  # build against the original's compiled kernels (same options)
    fast_kill: str = ""  # the kill criterion, when images stop once it is met (mutants only)
    reference: str = ""  # the original's stored outputs (.npz), which fast kill compares with
    stack: str = ""  # the stack's name (logs, test fault injection)
    host_cpu: str = ""  # target "cpu" as the coordinator resolved it (a Dask worker may have another CPU)
    repeat_in: str = "worker"  # passes 2..N in this worker, or each in a fresh process ("process")
    keep_passes: bool = False  # return every pass's logits (a verdict over passes needs them)
    timing_calls: int = 1  # timed calls per image (the latency is their median)
    threads: int = 0  # pin the runtime's thread pool to this many threads and cores (0: as it is)
    run_threads: int = 0  # threads every runtime uses ([run] threads; 0: the runtime's own choice)
    trusted: bool = False  # the user trusts the model file: its safety check is skipped (`models.safety`)

    @property
    def is_original(self) -> bool:
        return not self.operator


@dataclass
class JobResult:
    """What came back from one job. ``logits``/``latencies`` are set when ``status`` is DONE."""

    status: JobStatus
    reason: str = ""
    log_tail: str = ""
    logits: np.ndarray | None = field(default=None, repr=False)
    latencies: np.ndarray | None = field(default=None, repr=False)
    build_s: float | None = None
    run_s: float | None = None
    cached: bool = False
    unstable_images: list[int] | None = None  # None: not measured (one pass)
    build_info: dict | None = None  # what the build did: schedule, tuned hits, kernels compiled/reused
    images_run: int | None = None  # None: every image; else fast kill stopped after this many
    passes: np.ndarray | None = field(default=None, repr=False)  # logits of passes 2..N (Job.keep_passes)
    index: int = -1  # position in the submitted batch (set by the dispatcher)

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.DONE


@dataclass(frozen=True)
class VerdictRow:
    """The fate of one mutant on one stack, as stored and tabulated."""

    mutant_id: str
    stack: str
    verdict: Verdict
    reason: str = ""
    artifact: str | None = None
    values: dict = field(default_factory=dict)  # metric name -> value
    flipped: int | None = None
    flipped_images: tuple[int, ...] = ()
    build_s: float | None = None
    run_s: float | None = None
    log_tail: str = ""
    unstable: int | None = None  # 1 / 0, None when not measured
    unstable_images: tuple[int, ...] | None = None
    images_run: int | None = None  # None: every image; else fast kill stopped after this many
    passes_killed: int | None = None  # passes that met the kill criterion on their own (None: one pass)
    triage: str | None = None  # a survivor's kind (`runfolder.schema.TRIAGE`); None for other verdicts

    @property
    def is_killed(self) -> bool:
        return self.verdict is Verdict.KILLED

    def to_store(self) -> dict:
        """The row as `store.ResultStore` keeps it (plain values)."""
        return {"mutant_id": self.mutant_id, "stack": self.stack, "verdict": self.verdict.value,
                "reason": self.reason, "artifact": self.artifact, "values": dict(self.values),
                "flipped": self.flipped, "flipped_images": list(self.flipped_images), "build_s": self.build_s,
                "run_s": self.run_s, "log_tail": self.log_tail, "unstable": self.unstable,
                "unstable_images": None if self.unstable_images is None else list(self.unstable_images),
                "images_run": self.images_run, "passes_killed": self.passes_killed, "triage": self.triage}

    @classmethod
    def from_store(cls, row: dict) -> "VerdictRow":
        images = row.get("unstable_images")
        return cls(row["mutant_id"], row["stack"], Verdict(row["verdict"]), row.get("reason") or "",
                   row.get("artifact"), dict(row.get("values") or {}), row.get("flipped"),
                   tuple(row.get("flipped_images") or ()), row.get("build_s"), row.get("run_s"),
                   row.get("log_tail") or "", row.get("unstable"), None if images is None else tuple(images),
                   row.get("images_run"), row.get("passes_killed"), row.get("triage"))
