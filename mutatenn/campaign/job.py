"""One campaign job, run in a worker process: build one artifact (or load it from the
build cache) through the stack's runner and run it over the image set.

A `Job` holds plain strings and numbers (IRModules cannot be serialised in TVM 0.27):
the worker rebuilds the program from the model spec and the mutant from (operator,
site index) on the program of the stack's import path (the variant's ``via``), both
cached per worker process by `execute.cached_program`.
"""
from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from ..errors import InputError, first_line
from ..records import Job, JobResult, JobStatus
from . import faults

LOG_TAIL_CHARS = 4000
# Per worker process: each original's compiled kernels, by (model, stack, build options).
_KERNELS: dict = {}


# Where a job's Python error happened decides what it is (a segfault kills the worker:
# the dispatcher calls that `crashed`): before the build, MutateNN's own failure; in the
# build, the compiler refusing the program; in the run, a crash, or a memory error when a
# bounds check (`mutatenn.bounds`) fired. A poison check (`mutatenn.poison`) that fired is
# an uninitialized read in the run, or in the build (FoldConstant runs constant kernels).
SETUP, BUILD, RUN = "setup", "build", "run"
STAGE_STATUS = {SETUP: JobStatus.INTERNAL_ERROR, BUILD: JobStatus.BUILD_ERROR, RUN: JobStatus.CRASHED}


def run_job(job: Job) -> JobResult:
    """Build and run one artifact; a Python error becomes the status of its stage (`STAGE_STATUS`)."""
    with _captured_stderr(job.log_path):
        started = time.perf_counter()
        stage = [SETUP]
        try:
            return _run(job, stage)
        except Exception as err:  # a build or run failure is this job's verdict, not the worker's end
            tb = traceback.format_exc()
            sys.stderr.write(tb)
            status, reason = classify_failure(stage[0], err)
            return JobResult(status, reason, tb[-LOG_TAIL_CHARS:], build_s=0.0,
                             run_s=time.perf_counter() - started)


def run_logged(body, task, log_path: str) -> dict:
    """The worker entry of a job outside the campaign (`repro`, `strengthen`):
    ``body(task, stage)`` with its stderr in ``log_path``. An InputError is the user's
    (``input_error``: a model file gone); any other error is the status of the stage it
    was raised in (`classify_failure`), its traceback in the log."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    stage = [SETUP]
    with _captured_stderr(log_path):
        try:
            return body(task, stage)
        except InputError as err:
            return {"status": "input_error", "reason": str(err)}
        except Exception as err:  # the build or run failed: its stage names it, as in a campaign job
            sys.stderr.write(traceback.format_exc())
            status, reason = classify_failure(stage[0], err)
            return {"status": status.value, "reason": reason}


def classify_failure(stage: str, err: BaseException) -> tuple[JobStatus, str]:
    """(status, one-line reason) of an error raised in ``stage``."""
    from ..bounds import bounds_message, is_bounds_error
    from ..poison import is_uninitialized_error, uninitialized_message

    reason = first_line(err)
    if stage == RUN and is_bounds_error(str(err)):
        return JobStatus.MEMORY_ERROR, (reason if is_bounds_error(reason) else bounds_message(str(err)))
    if stage in (BUILD, RUN) and is_uninitialized_error(str(err)):
        return JobStatus.UNINITIALIZED_READ, (reason if is_uninitialized_error(reason)
                                              else uninitialized_message(str(err)))
    return STAGE_STATUS[stage], reason


def _run(job: Job, stage: list) -> JobResult:
    from ..execute import cached_images, input_batch
    from ..runners import make_runner, variant_program, with_host_cpu

    fault = faults.fault_for(job)
    stage[0] = RUN  # an injected exception stands for a run that raised
    faults.inject_before_build(fault, job.key)
    stage[0] = SETUP
    variant = with_host_cpu(job.variant, job.host_cpu)
    program = variant_program(variant, job.model, job.pretrained, job.preset, job.runner, job.trusted)
    batch = input_batch(program, cached_images(job.images))
    runner = make_runner(variant, program, mod=_mutant_module(job, program), ref=job.runner)
    runner.use_images(batch)  # a stack's int8-static calibration draws from the run's images
    runner.use_threads(job.run_threads)

    stage[0] = BUILD
    start = time.perf_counter()
    cached = _load_cached(job, runner)
    if cached:
        equivalent = _cached_equivalence(job, runner)
    else:
        llvm = getattr(variant.target, "spec", {}).get("kind") == "llvm"
        wanted = not job.is_original and (job.share_kernels or (llvm and _tir_mutant(job)))
        base = _original_kernels(job, variant, program) if wanted else None
        if job.share_kernels and base is not None:
            runner.share_kernels(base)
        runner.prepare()
        _keep_kernels(job, variant, runner)
        equivalent = _compiler_equivalence(job, variant, runner, base)
        _save_cached(job, runner, equivalent)
    build_s = time.perf_counter() - start
    if equivalent:
        return JobResult(JobStatus.EQUIVALENT, equivalent, build_s=build_s, run_s=0.0, cached=cached,
                         build_info=None if cached else runner.build_info())
    stage[0] = SETUP  # the original's stored outputs (fast kill) are MutateNN's own
    stop = _fast_kill_stop(job)
    if job.threads:
        from ..timing import pin_threads

        cores = pin_threads(job.threads)
        sys.stderr.write(f"timing: {job.threads} thread(s) pinned to core(s) {sorted(cores)}, "
                         f"median of {job.timing_calls} calls per image\n")
    faults.slow_down(fault, runner)
    stage[0] = RUN
    start = time.perf_counter()
    output = runner.run(batch, stop, calls=job.timing_calls)
    logits = faults.perturb_pass(fault, 0, output.logits)
    unstable_images, passes = None, None
    if job.repeats > 1:
        # Each pass after the first opens a fresh session (a fresh VM for TVM), or runs in
        # a fresh process; a build whose outputs are not the same bits every time
        # (out-of-bounds reads, uninitialised memory) is unstable.
        runs = _passes_in_processes(job, runner, batch, cached) if job.repeat_in == "process" else \
            [runner.run(batch, stop).logits for _ in range(1, job.repeats)]
        passes = [faults.perturb_pass(fault, number, out) for number, out in enumerate(runs, start=1)]
        unstable_images = differing_rows(logits, passes)
    info = None if cached else runner.build_info()
    return JobResult(JobStatus.DONE, logits=logits, latencies=output.latencies, build_s=build_s,
                     run_s=time.perf_counter() - start, cached=cached, unstable_images=unstable_images,
                     build_info=info, images_run=output.images_run,
                     passes=np.stack(passes) if job.keep_passes and passes else None)


def _passes_in_processes(job: Job, runner, batch, cached: bool) -> list:
    """Passes 2..N, each in a fresh Python process that loads the exported build and runs
    the images once (`mutatenn.one_pass`): what one process's memory layout hides, another
    may show. A pass whose process dies makes the job a crash, naming the pass. A build
    loaded from the build cache is passed on as its cache file."""
    import shutil
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mutatenn-passes-") as tmp:
        folder = Path(tmp)
        sys.stderr.write(f"pass 1: worker process {os.getpid()}\n")
        if cached:
            shutil.copyfile(_cache_file(job, runner), folder / "build.so")
        else:
            runner.executable.export_library(str(folder / "build.so"))
        np.save(folder / "batch.npy", batch)
        (folder / "job.json").write_text(json.dumps({"variant": job.variant.canonical, "runner": job.runner,
                                                      "host_cpu": job.host_cpu}))
        out = []
        for number in range(1, job.repeats):
            result = subprocess.run([sys.executable, "-m", "mutatenn.one_pass", str(folder), str(number)],
                                    capture_output=True, text=True)
            sys.stderr.write(result.stderr)
            if result.returncode != 0:
                raise RuntimeError(f"pass {number + 1} of {job.repeats}, in a fresh process, "
                                   f"{_exit_words(result.returncode)}: {first_line(result.stderr) or 'no message'}")
            out.append(np.load(folder / f"pass-{number}.npy"))
        return out


def _exit_words(code: int) -> str:
    """'died: SIGSEGV' for a signal, 'exited with 3' otherwise."""
    import signal

    if code < 0:
        try:
            return f"died: {signal.Signals(-code).name}"
        except ValueError:
            return f"died: signal {-code}"
    return f"exited with {code}"


def _fast_kill_stop(job: Job):
    """The runner's early stop for a fast-kill job: the criterion met by the images so far."""
    if not job.fast_kill or not job.reference:
        return None

    import operators

    criterion = operators.parse_criterion(job.fast_kill)
    with np.load(job.reference) as data:
        ref = data["logits"]
    return lambda prefix: criterion.met_by_prefix(ref, prefix)


def _kernel_key(job: Job, variant) -> tuple:
    return (job.model, job.pretrained, job.preset, job.variant.canonical, job.runner, variant.options.key())


def _keep_kernels(job: Job, variant, runner) -> None:
    """An original's build: keep its kernels for the mutants this worker builds next."""
    if job.is_original and runner.kernels is not None:
        _KERNELS[_kernel_key(job, variant)] = runner.kernels


def _original_kernels(job: Job, variant, program):
    """The original's kernels for this stack, built here first when this worker has none
    (once per worker process: every later mutant of the stack links against them)."""
    from ..runners import make_runner

    key = _kernel_key(job, variant)
    if key not in _KERNELS:
        from ..execute import cached_images, input_batch

        original = make_runner(variant, program, ref=job.runner)
        original.use_images(input_batch(program, cached_images(job.images)))
        original.prepare()
        _KERNELS[key] = original.kernels  # one per stack: a worker runs one campaign
    return _KERNELS[key]


def _tir_mutant(job: Job) -> bool:
    """A TIR mutant changes kernels only (graph and weight mutants change the graph itself)."""
    if job.is_original:
        return False
    import mutators

    return mutators.operator_by_name(job.operator).level == "tir"


def _compiler_equivalence(job: Job, variant, runner, base) -> str:
    """Why a TIR mutant is equivalent without running it ("" when it is not): every kernel
    it changed has the machine code of the original's kernel of that name
    (`build.equivalence`), whether it was built against the original's kernels or in full."""
    if base is None or getattr(runner, "kernels", None) is None or not _tir_mutant(job):
        return ""
    from ..build.equivalence import changed_kernels, same_machine_code

    shared = runner.base_kernels is not None
    changed = runner.shared.compiled if shared else changed_kernels(base, runner.kernels)
    try:
        return same_machine_code(base, runner.kernels, changed, variant.target, variant.options, shared)
    except Exception as err:  # the check is an optimisation: a kernel it cannot compile alone is run instead
        sys.stderr.write(f"compiler equivalence not checked: {err}\n")
        return ""


def _mutant_module(job: Job, program):
    """The mutant's IRModule, rebuilt from (operator, site) and checked against the plan."""
    return rebuild_mutant(program, job.operator, job.site, job.program_hash)


class MutantMismatch(RuntimeError):
    """A mutant rebuilt from (operator, site) is not the one planned (another hash)."""


def rebuild_mutant(program, operator: str, site: int, planned_hash: str = ""):
    """The mutant's IRModule rebuilt from (operator, site), or None without an operator (an
    original, or a pass mutant: the program's own module). A mutant planned as pending that
    rebuilds non-viable, or with another hash, raises: its results would be filed under a
    wrong key."""
    if not operator:
        return None
    import mutators

    mutant = mutators.make_mutant(program.mod, operator, site, with_diff=False)
    if mutant.mod is None:
        raise RuntimeError(f"mutant {mutant.id} is {mutant.status}: {mutant.reason}")
    if planned_hash and mutant.hash != planned_hash:
        raise MutantMismatch(f"mutant {mutant.id} rebuilt with hash {mutant.hash}, planned {planned_hash}")
    return mutant.mod


def differing_rows(first, others) -> list[int]:
    """Indices of the images whose outputs are not identical in every pass (NaN equals NaN)."""
    differ = np.zeros(len(first), dtype=bool)
    for other in others:
        same = (first == other) | (np.isnan(first) & np.isnan(other))
        differ |= ~same.reshape(len(first), -1).all(axis=1)
    return [int(i) for i in np.flatnonzero(differ)]


def _cache_file(job: Job, runner) -> Path | None:
    """Where the build cache keeps this job's executable (only TVM builds for local devices)."""
    target = getattr(runner.variant, "target", None)
    if not job.cache_dir or not runner.builds or target is None or target.device == "rpc":
        return None
    return Path(job.cache_dir) / f"{job.key}-{_toolchain_tag()}.so"


def _toolchain_tag() -> str:
    """TVM's and MutateNN's versions: a cache shared between runs must not serve a build
    made by another compiler or other schedule rules."""
    import hashlib

    import tvm

    from .. import __version__

    return hashlib.blake2b(f"{tvm.__version__}|{__version__}".encode(), digest_size=4).hexdigest()


def _load_cached(job: Job, runner) -> bool:
    path = _cache_file(job, runner)
    if path is None or not path.is_file():
        return False
    import tvm

    runner.use_executable(tvm.runtime.load_module(str(path)))
    return True


def _equivalence_file(path: Path) -> Path:
    return path.with_name(f"{path.stem}.equivalent")


def _cached_equivalence(job: Job, runner) -> str:
    """The reason a cached build was found equivalent when it was built ("" when it was not)."""
    path = _equivalence_file(_cache_file(job, runner))
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _save_cached(job: Job, runner, equivalent: str = "") -> None:
    """Export to a temporary name and rename, so a cache file that exists is complete; an
    equivalent build keeps its reason beside it (its cached executable has no kernels to compare)."""
    path = _cache_file(job, runner)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if equivalent:
        from ..outputs import write_text_atomic

        write_text_atomic(_equivalence_file(path), equivalent)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.so")
    try:
        runner.executable.export_library(str(tmp))
        os.replace(tmp, path)
    except Exception as err:  # the cache only saves time; a full disk must not fail the job
        sys.stderr.write(f"build cache: not saved ({first_line(err)})\n")
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def _captured_stderr(log_path: str):
    """Send this job's stderr (Python, TVM's C++ logging, a fault handler's traceback) to its log."""
    if not log_path:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        os.dup2(log.fileno(), 2)
        faulthandler.enable(file=log, all_threads=False)
        try:
            yield
        finally:
            sys.stderr.flush()
            faulthandler.enable(file=sys.__stderr__ if sys.__stderr__ else sys.stderr)
            os.dup2(saved, 2)
            os.close(saved)


def log_tail(path: str | Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a job's log file ('' when there is none)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-chars:].decode("utf-8", errors="replace")
