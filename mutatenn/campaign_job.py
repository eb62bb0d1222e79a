"""One campaign job, run in a worker process: build one artifact (or load it from the
build cache) and run it over the image set.

A job is a plain dict of strings and numbers (IRModules cannot be serialised in TVM
0.27): the worker rebuilds the program from the model spec and the mutant from
(operator, site index), both cached per worker process by `execute.cached_program`.
"""
from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import time
import traceback
from pathlib import Path

LOG_TAIL_CHARS = 4000


def run_job(job: dict) -> dict:
    """Build and run one artifact; Python errors come back as ``error`` (a crash kills the worker)."""
    log_path = job.get("log_path") or ""
    with _captured_stderr(log_path):
        started = time.perf_counter()
        try:
            return _run(job)
        except Exception as err:  # a build or run failure is this job's verdict, not the worker's end
            text = str(err).strip().splitlines()
            detail = text[0] if text else ""
            tb = traceback.format_exc()
            sys.stderr.write(tb)
            return {"error": f"{type(err).__name__}: {detail}"[:500], "log_tail": tb[-LOG_TAIL_CHARS:],
                    "build_s": 0.0, "run_s": time.perf_counter() - started}


def _run(job: dict) -> dict:
    from .build import BuildOptions, parse_target
    from .execute import cached_images, cached_program, input_batch
    from .runners import run_tvm

    fault = job.get("fault") or ""
    if fault == "segfault":
        sys.stderr.write(f"fault injection: segfault in job {job['key']}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    if fault == "hang":
        time.sleep(10 ** 6)
    if fault == "raise":
        raise RuntimeError(f"fault injection: exception in job {job['key']}")

    target = parse_target(job["target"])
    options = BuildOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["options"].items()})
    program = cached_program(job["model"], job["pretrained"], job["preset"])
    batch = input_batch(program, cached_images(job["images"]))
    cache_file = Path(job["cache_dir"]) / f"{job['key']}.so" if job.get("cache_dir") and target.device != "rpc" else None

    start = time.perf_counter()
    cached = cache_file is not None and cache_file.is_file()
    if cached:
        import tvm

        executable = tvm.runtime.load_module(str(cache_file))
    else:
        executable = _build(job, program, target, options)
        if cache_file is not None:
            _save_artifact(executable, cache_file)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    output = run_tvm(executable, target, batch)
    unstable_images = None
    repeats = int(job.get("repeats") or 1)
    if repeats > 1:
        # Each pass after the first gets a fresh VM; a build whose outputs are not the
        # same bits every time (out-of-bounds reads, uninitialised memory) is unstable.
        passes = []
        for number in range(1, repeats):
            logits = run_tvm(executable, target, batch).logits
            if fault == "unstable":
                import numpy as np

                logits = logits.copy()
                logits[0] = np.where(np.isfinite(logits[0]), logits[0] + number, float(number))
            passes.append(logits)
        unstable_images = differing_rows(output.logits, passes)
    return {"logits": output.logits, "latencies": output.latencies, "build_s": build_s,
            "run_s": time.perf_counter() - start, "cached": cached, "error": "", "log_tail": "",
            "unstable_images": unstable_images}


def differing_rows(first, others) -> list[int]:
    """Indices of the images whose outputs are not identical in every pass (NaN equals NaN)."""
    import numpy as np

    differ = np.zeros(len(first), dtype=bool)
    for other in others:
        same = (first == other) | (np.isnan(first) & np.isnan(other))
        differ |= ~same.reshape(len(first), -1).all(axis=1)
    return [int(i) for i in np.flatnonzero(differ)]


def _build(job: dict, program, target, options):
    from .build import build_artifact

    mod = program.mod
    if job.get("operator"):
        import mutators

        mutant = mutators.make_mutant(program.mod, job["operator"], int(job["site"]), with_diff=False)
        if mutant.mod is None:
            raise RuntimeError(f"mutant {mutant.id} is {mutant.status}: {mutant.reason}")
        if job.get("hash") and mutant.hash != job["hash"]:
            # The coordinator planned another program: building this one would file results under a wrong key.
            raise RuntimeError(f"mutant {mutant.id} rebuilt with hash {mutant.hash}, planned {job['hash']}")
        mod = mutant.mod
    return build_artifact(mod, target, options)


def _save_artifact(executable, path: Path) -> None:
    """Export to a temporary name and rename, so a cache file that exists is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.so")
    try:
        executable.export_library(str(tmp))
        os.replace(tmp, path)
    except Exception as err:  # the cache only saves time; a full disk must not fail the job
        sys.stderr.write(f"build cache: not saved ({err})\n")
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
