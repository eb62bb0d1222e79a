"""Tuned schedules: MetaSchedule records for one model on one CPU target, and a pass that
gives a build's PrimFuncs the tuned schedule recorded for them.

`tune` runs MetaSchedule on the original program and stores a JSON database under
`database_dir` (``mutatenn tune`` on the command line). `apply_database_pass` goes into a
Relax pipeline right after ``FuseTIR``: every PrimFunc whose workload is in the database
(same structural hash and structurally equal, MetaSchedule's own workload matching) gets
its tuned schedule and the ``tirx.is_scheduled`` attribute, so the default schedule pass
that follows (`mutatenn.schedules`) leaves it alone and schedules only the misses::

    passes.append(tuning.apply_database_pass(db, target.spec, stats))
    passes.append(schedules.default_schedule_pass(target.spec))

A TIR mutant changes one fused PrimFunc: that one misses (and gets the default schedule),
the unchanged ones hit. Graph and weight mutants keep most PrimFuncs as they are.

Tuning also measures every task with the default schedule, with the same builder and
runner as the candidates. A record slower than that is kept in the database but listed in
``tuning.json`` ("prefer_default", by workload hash), and tuned builds leave its PrimFunc
to the default schedule: a short search without xgboost rarely beats it (MetaSchedule's
random candidates parallelise even kernels of a few hundred nanoseconds, and a parallel
launch costs ~6 µs here), so "tuned" is, per kernel, the faster of the two as measured.

TVM traps met here (TVM-NOTES, "Schedules and tuning"):

* ``extract_tasks`` finds no task on a freshly imported module: legalise and fuse first,
  with the same passes as the build, or the workloads never match the build's PrimFuncs.
* Importing ``tvm.s_tir.tensor_intrin`` takes 20-30 s (its CUDA half builds hundreds of
  tensor-core intrinsics). ``TuneContext`` imports it, and ``LocalBuilder``'s default
  build function imports it again in every worker of a pool that ``LocalBuilder``
  restarts for each batch: on a busy 2-core machine every build then ran past the 30-s
  timeout and tuning recorded nothing. Here the GPU intrinsics are skipped while the
  tune contexts are made (`_cpu_intrinsics_only`), and builds run in one pool of workers
  kept for the whole tuning (`_pooled_builder`) with a build function that does not
  import them.
* MetaSchedule's default cost model needs ``xgboost``; without it a random cost model is
  used, and then the evolutionary search (2048 candidates per round, ~20 s per task and
  round on 2 cores) buys nothing over replaying random traces of the design space.
"""
from .records import (
    INFO_FILE,
    RECORD_FILE,
    WORKLOAD_FILE,
    Records,
    TuneStats,
    apply_database_pass,
    cache_root,
    database_dir,
    has_database,
    model_key,
    open_records,
    require_database,
)
from .search import TuneReport, check_tunable, cost_model_kind, front_passes, fuse, tune

__all__ = ["INFO_FILE", "RECORD_FILE", "WORKLOAD_FILE", "Records", "TuneReport", "TuneStats", "apply_database_pass",
           "cache_root", "database_dir",
           "has_database", "open_records", "require_database", "tune", "model_key", "check_tunable",
           "cost_model_kind", "front_passes", "fuse"]
