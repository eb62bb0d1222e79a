"""The tuning search: MetaSchedule over the tasks of a default build, writing the
records that `mutatenn.tuning.records` applies (see the package docstring)."""
from __future__ import annotations

import contextlib
import datetime
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError, ModelError, MutateNNError, TargetError
from .records import (
    BUILD_TIMEOUT_S,
    INFO_FILE,
    MODULE_EQUALITY,
    RUN_TIMEOUT_S,
    _best_record,
    _mean_run,
    _slug,
    _workload_hash,
)

__all__ = ["TuneReport", "tune", "fuse", "front_passes", "check_tunable", "cost_model_kind"]

# ---------------------------------------------------------------- tuning

@dataclass
class TuneReport:
    """What one tuning run did."""

    tasks: int  # tuning tasks (distinct fused PrimFuncs)
    trials: int  # candidates measured (failed builds and runs included)
    seconds: float
    cost_model: str  # "xgb" or "random"
    strategy: str  # MetaSchedule search strategy
    db_dir: Path
    records: int = 0  # tuning records stored
    failed_trials: int = 0  # candidates that did not build or run
    best_us: dict[str, float] = field(default_factory=dict)  # task -> best latency (µs), tuned tasks only
    untuned: list[str] = field(default_factory=list)  # tasks with no successful measurement
    default_us: dict[str, float] = field(default_factory=dict)  # task -> latency with the default schedule
    kept_default: list[str] = field(default_factory=list)  # tuned tasks the default schedule runs faster

    def summary(self) -> str:
        tuned = sum(self.best_us.values())
        default = sum(self.default_us.get(name, 0.0) for name in self.best_us)
        versus = f" against {default:.0f} µs with the default schedule" if default else ""
        return (f"{self.tasks} tasks, {self.trials} trials ({self.failed_trials} failed) in {self.seconds:.0f} s "
                f"[{self.strategy}, {self.cost_model} cost model]; {len(self.best_us)} tasks tuned "
                f"(sum of best latencies {tuned:.0f} µs{versus}), {len(self.untuned)} without a record; "
                f"{len(self.kept_default)} keep the default schedule (it measured faster)")


def _num_cores() -> int:
    """Physical cores (MetaSchedule's own choice for its target's "num-cores"), else logical."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
    except ImportError:
        count = None
    return int(count or os.cpu_count() or 1)


def check_tunable(target) -> None:
    """Tuning measures on this machine's CPU: LLVM targets only, with one clear line otherwise."""
    if target.device == "rpc":
        raise TargetError(f"target {target.name!r}: tuning runs on this machine, not over RPC; "
                          "tune for the remote's CPU target (cpu-generic, cpu-avx2, cpu-avx512) here instead")
    if target.spec.get("kind") != "llvm":
        raise TargetError(f"target {target.name!r}: tuning is for CPU (LLVM) targets only: "
                          "cpu, cpu-generic, cpu-avx2, cpu-avx512")


def cost_model_kind() -> str:
    """"xgb" (MetaSchedule's default) when xgboost imports, else "random"."""
    try:
        import xgboost  # noqa: F401
    except Exception:  # noqa: BLE001 - missing or broken: either way not usable
        return "random"
    return "xgb"


def front_passes(target=None) -> list:
    """The passes of a default build up to FuseTIR (`build.pipeline_passes`): tuning tasks
    are the PrimFuncs a default build has where the records are applied."""
    from ..build.options import BuildOptions
    from ..build.pipeline import pipeline_passes
    from ..build.targets import parse_target

    return pipeline_passes(target or parse_target("cpu-generic"), BuildOptions(), stop_after="FuseTIR")


def fuse(mod, tvm_target, instruments=()):
    """``mod`` legalised and fused as a default build has it after FuseTIR, in the
    default build's PassContext (``instruments``: TVM pass instruments)."""
    import tvm

    from ..build.options import BuildOptions
    from ..build.pipeline import pass_context

    with tvm_target, pass_context(BuildOptions(), instruments):
        return tvm.transform.Sequential(front_passes())(mod)


def tune(mod, target, trials: int, db_dir: Path, *, max_trials_per_task: int | None = None, seed: int = 0,
         log: Callable[[str], None] = print, strategy: str = "auto", model_spec: str = "",
         keep_faster_default: bool = True) -> TuneReport:
    """Tune the PrimFuncs of ``mod`` (an imported Relax module, params bound) for
    ``target`` (`build.Target`, LLVM) with ``trials`` measured candidates in all; store
    the database in ``db_dir``. The database is written to a temporary folder beside it
    and moved into place only when tuning succeeded, so an interrupted run leaves any
    earlier database as it was and never a half-written one. ``strategy``: "auto"
    (evolutionary with xgboost, replay-trace without), or a MetaSchedule strategy name.

    Each task is also measured with MutateNN's default schedule, the one a build without
    records gets; with ``keep_faster_default``, tasks whose best record is slower than
    that are listed in ``tuning.json`` and keep the default schedule in tuned builds
    (a short random search often loses to it)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    check_tunable(target)
    if trials < 1:
        raise InputError(f"--trials must be at least 1, not {trials}")
    cores = _num_cores()
    tvm_target = tvm.target.Target({**target.spec, "num-cores": cores})
    cost_model = cost_model_kind()
    if strategy == "auto":
        strategy = "evolutionary" if cost_model == "xgb" else "replay-trace"
    start = time.monotonic()
    tasks = ms.relax_integration.extract_tasks(fuse(mod, tvm_target), tvm_target, module_equality=MODULE_EQUALITY)
    if not tasks:
        raise ModelError("the model has no TensorIR functions to tune")
    db_dir = Path(db_dir)
    db_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{db_dir.name}.tuning-", dir=db_dir.parent))
    try:
        log(f"tuning {len(tasks)} tasks with {trials} trials on {target.name} ({tvm_target.attrs['mcpu']}, "
            f"{cores} cores; {strategy} search, {cost_model} cost model)")
        database, names, progress, default_secs = _run_tuning(tasks, tvm_target, work, trials, max_trials_per_task,
                                                              seed, strategy, cost_model, cores, log)
        report = _report(database, tasks, names, tvm_target, strategy, cost_model, db_dir)
        prefer_default = _compare_with_default(report, tasks, names, default_secs, keep_faster_default)
        report.seconds = time.monotonic() - start
        if not report.best_us:
            raise MutateNNError(f"tuning measured no candidate successfully ({report.trials} trials failed); "
                                f"first error: {_error_line(progress.first_error)}")
        _write_info(work, report, model_spec, target, trials, seed, prefer_default)
        _move_into_place(work, db_dir)
    except BaseException:  # interrupted too: the earlier database stays, the half-written one goes
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


def _run_tuning(tasks, tvm_target, work: Path, trials: int, max_trials_per_task, seed: int, strategy: str,
                cost_model: str, cores: int, log):
    """MetaSchedule's task scheduler over ``tasks``, then each task once with the default
    schedule; returns (database, task names, the progress callback with the first error
    seen, the default schedule's run time per task)."""
    from tvm.s_tir import meta_schedule as ms

    loggers = _task_loggers(work / "logs", [task.task_name for task in tasks])
    builder = runner = None
    try:
        contexts = _tune_contexts(tasks, loggers, strategy, cores, seed)
        names = [ctx.task_name for ctx in contexts]
        # The scheduler visits the tasks in turn, one batch each, before it prefers any:
        # batches of trials // tasks give every task a first batch (when trials >= tasks).
        per_iter = max(1, min(64, trials // len(contexts)))
        builder = _pooled_builder(max_workers=cores, timeout_sec=BUILD_TIMEOUT_S)
        runner = ms.runner.LocalRunner(timeout_sec=RUN_TIMEOUT_S)
        progress = _progress_callback(names, trials, log)
        callbacks = ms.measure_callback.MeasureCallback.create("default") + [progress]
        database = ms.tune_tasks(tasks=contexts, task_weights=[float(task.weight) for task in tasks],
                                 work_dir=str(work), max_trials_global=trials,
                                 max_trials_per_task=max_trials_per_task, num_trials_per_iter=per_iter,
                                 builder=builder, runner=runner, cost_model=cost_model,
                                 measure_callbacks=callbacks, module_equality=MODULE_EQUALITY)
        log(f"measuring the default schedule of the {len(tasks)} tasks")
        default_secs = _measure_default_schedule(tasks, tvm_target, builder, runner)
    finally:
        if builder is not None:
            builder.shutdown()
        if runner is not None:
            runner.pool.shutdown()
        for logger in loggers:
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()
    return database, names, progress, default_secs


def _measure_default_schedule(tasks, tvm_target, builder, runner) -> list:
    """Per task, the mean run time (s) of its PrimFunc with `mutatenn.schedules`' default
    schedule, built and measured exactly as the candidates were (None where that failed)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ..schedules import schedule_prim_func

    funcs = [schedule_prim_func(task.dispatched[0]["main"], tvm_target) for task in tasks]
    built = builder.build([ms.builder.BuilderInput(tvm.IRModule({"main": f}), tvm_target) for f in funcs])
    secs: list = [None] * len(tasks)
    ready = [i for i, b in enumerate(built) if b.error_msg is None]
    futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, "cpu",
                                                ms.arg_info.ArgInfo.from_prim_func(funcs[i])) for i in ready])
    for i, future in zip(ready, futures):
        secs[i] = _mean_run(future.result())
        shutil.rmtree(os.path.dirname(built[i].artifact_path), ignore_errors=True)
    return secs


def _compare_with_default(report: TuneReport, tasks, names, default_secs, keep: bool) -> dict:
    """Fill in the report's default latencies; returns ``{workload hash: task}`` of the
    tuned tasks the default schedule runs faster (empty unless ``keep``)."""
    prefer = {}
    for task, name, secs in zip(tasks, names, default_secs):
        if secs is None:
            continue
        report.default_us[name] = round(secs * 1e6, 3)
        if name in report.best_us and report.default_us[name] < report.best_us[name]:
            report.kept_default.append(name)
            if keep:
                prefer[_workload_hash(task.dispatched[0])] = name
    return prefer



def _tune_contexts(tasks, loggers, strategy: str, cores: int, seed: int) -> list:
    """One TuneContext per task, as ``relax_integration.extracted_tasks_to_tune_contexts``
    makes them but with our own loggers: that function reconfigures Python logging
    (``dictConfig``) for MetaSchedule's loggers, prints every task's table to stdout, and
    fails on a second call in a process whose MetaSchedule logger has a handler without a
    name (pytest's log capture adds two)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.utils import fork_seed

    with _cpu_intrinsics_only():
        return [ms.TuneContext(mod=task.dispatched[0], target=task.target, space_generator="post-order-apply",
                               search_strategy=strategy, task_name=task.task_name, logger=logger,
                               rand_state=rand_state, num_threads=cores).clone()
                for task, logger, rand_state in zip(tasks, loggers, fork_seed(seed, n=len(tasks)))]


def _task_loggers(folder: Path, names: list[str]) -> list:
    """A logger per task writing MetaSchedule's messages (design spaces, traces, errors)
    to ``folder/task_NN_NAME.log`` only."""
    import logging

    folder.mkdir(parents=True, exist_ok=True)
    loggers = []
    for number, name in enumerate(names):
        logger = logging.getLogger(f"mutatenn.tuning.{folder.parent.name}.task_{number}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        handler = logging.FileHandler(folder / f"task_{number:02d}_{_slug(name, 60)}.log")
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
        logger.addHandler(handler)
        loggers.append(logger)
    return loggers


def _error_line(text: str) -> str:
    """The telling line of a build or run error: a traceback's last line, else the first."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "(none recorded)"
    return (lines[-1] if lines[0].startswith(("Traceback", "build failed")) else lines[0])[:300]


def _report(database, tasks, names, tvm_target, strategy, cost_model, db_dir) -> TuneReport:
    """Best latency per task from the records (failed candidates excluded)."""
    records = database.get_all_tuning_records()
    failed = sum(1 for r in records if _mean_run(r) is None)
    report = TuneReport(len(tasks), len(records), 0.0, cost_model, strategy, Path(db_dir), len(records), failed)
    for task, name in zip(tasks, names):
        best = _best_record(database, task.dispatched[0], tvm_target, name)
        seconds = _mean_run(best) if best is not None else None
        if seconds is None:
            report.untuned.append(name)
        else:
            report.best_us[name] = round(seconds * 1e6, 3)
    return report




def _write_info(work: Path, report: TuneReport, model_spec: str, target, trials: int, seed: int,
                prefer_default: dict) -> None:
    """tuning.json: what was tuned, how, when, and which workloads keep the default schedule."""
    import tvm

    info = {"model": model_spec, "target": target.name, "target_spec": target.spec, "tvm": tvm.__version__,
            "trials": trials, "seed": seed, "module_equality": MODULE_EQUALITY,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **{k: v for k, v in asdict(report).items() if k not in ("db_dir", "trials")}, "measured": report.trials,
            "prefer_default": prefer_default}
    (work / INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")


def _move_into_place(work: Path, db_dir: Path) -> None:
    """Replace ``db_dir`` by ``work`` with renames (same folder, so each is atomic): an
    earlier database is moved aside first and deleted only once the new one is in place."""
    old = None
    if db_dir.exists():
        old = db_dir.with_name(f".{db_dir.name}.old-{os.getpid()}-{time.time_ns()}")
        db_dir.rename(old)
    try:
        work.rename(db_dir)
    except OSError:
        if old is not None:
            old.rename(db_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _cpu_intrinsics_only():
    """Import ``tvm.s_tir.tensor_intrin`` without its GPU and DSP parts (CUDA alone takes
    20 s; CPU tuning needs only the x86, ARM and RISC-V intrinsics). The stand-ins are
    removed afterwards, so a later ``import tvm.s_tir.tensor_intrin.cuda`` (dlight's GPU
    rules) imports the real module."""
    package = "tvm.s_tir.tensor_intrin"
    if package in sys.modules:
        yield
        return
    import importlib
    import types

    stubs = {f"{package}.{part}": types.ModuleType(f"{package}.{part}") for part in ("cuda", "rocm", "hexagon")}
    sys.modules.update(stubs)
    try:
        importlib.import_module(package)
        yield
    finally:
        parent = sys.modules.get(package)
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]
            short = name.rsplit(".", 1)[1]
            if parent is not None and getattr(parent, short, None) is stub:
                delattr(parent, short)


def _build_in_worker(mod, target) -> str:
    """Build one candidate and export it (what LocalBuilder's default build and export do,
    without importing every tensor intrinsic); returns the artifact's path."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    from tvm.support.tar import tar

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    lib = tvm_build(mod, target=target)
    path = os.path.join(tempfile.mkdtemp(), "tvm_tmp_mod." + tar.output_format)
    lib.export_library(path, fcompile=tar)
    return path


@functools.cache
def _pooled_builder_class():
    """`_pooled_builder`'s class, made on first use (TVM's object registry needs TVM)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    @derived_object
    class PooledBuilder(PyBuilder):
        """LocalBuilder with one pool of workers for the whole tuning; each worker builds
        up to 64 candidates before it is replaced (LocalBuilder restarts its pool per batch
        because workers leak memory)."""

        def __init__(self, max_workers: int, timeout_sec: float):
            super().__init__()
            self.timeout_sec = timeout_sec
            self.pool = PopenPoolExecutor(max_workers=max_workers, timeout=timeout_sec, maximum_process_uses=64)

        def build(self, build_inputs):
            results = []
            for result in self.pool.map_with_error_catching(
                    lambda x: _build_in_worker(*x), [(b.mod, b.target) for b in build_inputs]):
                if result.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(result.value, None))
                elif result.status == StatusKind.TIMEOUT:
                    results.append(BuilderResult(None, f"build timed out after {self.timeout_sec} s"))
                else:
                    results.append(BuilderResult(None, f"build failed\n{result.value}"))
            return results

        def shutdown(self) -> None:
            self.pool.shutdown()

    return PooledBuilder


def _pooled_builder(max_workers: int, timeout_sec: float):
    """A `PooledBuilder` (see `_pooled_builder_class`)."""
    return _pooled_builder_class()(max_workers, timeout_sec)


def _progress_callback(names: list[str], trials: int, log):
    """A measure callback printing one line per measured batch: task, trials so far, best."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Progress(PyMeasureCallback):
        def __init__(self):
            super().__init__()
            self.done = 0
            self.best: dict[int, float] = {}
            self.first_error = ""

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            self.done += len(runner_results)
            for result in list(builder_results) + list(runner_results):
                if result.error_msg and not self.first_error:
                    self.first_error = str(result.error_msg).strip()
            runs = [_mean_run(r) for r in runner_results]
            good = [r for r in runs if r is not None]
            if good:
                self.best[task_id] = min(good + [self.best.get(task_id, math.inf)])
            best = f"best {self.best[task_id] * 1e6:.1f} µs" if task_id in self.best else "no valid candidate yet"
            log(f"  [{self.done}/{trials}] {names[task_id]}: {len(good)}/{len(runs)} candidates ran, {best}")

    return Progress()


# ---------------------------------------------------------------- applying records

