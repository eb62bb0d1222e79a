"""Tuning records: where the MetaSchedule database of a model on a target lives, and the
pass that applies its records to a build (`apply_database_pass`). Builds read this
module; the search that writes records (`mutatenn.tuning.search`) builds through
`mutatenn.build`, so the two never import each other."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, ModelError, first_line
from ..schedules import SCHEDULED_ATTR, with_functions

__all__ = ["Records", "TuneStats", "apply_database_pass", "cache_root", "database_dir", "has_database",
           "open_records", "require_database"]

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
INFO_FILE = "tuning.json"
# How workloads are matched: TVM's structural hash and equality of the whole PrimFunc
# (MetaSchedule's default). Tuning and lookup must use the same.
MODULE_EQUALITY = "structural"
BUILD_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 30.0
_MISSING_RUN = 1e9  # MetaSchedule records a failed build or run as 1e10 seconds


# ---------------------------------------------------------------- where records live

def cache_root() -> Path:
    """MutateNN's cache folder: ``$MUTATENN_CACHE_DIR``, else ``~/.cache/mutatenn``."""
    env = os.environ.get("MUTATENN_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mutatenn"


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:limit] or "model"


def _short_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=6).hexdigest()


def model_key(model_spec: str) -> str:
    """The model part of a database folder name. A model file is keyed by its bytes, so an
    edited file never reuses the records of its earlier version (and a copy elsewhere
    shares them); a name (``digits``, ``torchvision:resnet18``) by the name. Weights and
    preprocessing are not part of it: they do not change the PrimFuncs."""
    from ..models.formats import find_format

    spec = "digits" if model_spec == "bundled:digits" else model_spec
    fmt = find_format(spec)
    path = fmt.model_file(spec) if fmt is not None else None  # a folder form: keyed by its marker file
    if path is not None:
        try:
            digest = hashlib.blake2b(path.read_bytes(), digest_size=6).hexdigest()
        except OSError as err:
            raise ModelError(f"model file {spec!r} cannot be read: {err.strerror or err}") from None
        return f"{_slug(path.stem)}-{digest}"
    return f"{_slug(spec)}-{_short_hash(spec.encode())}"


def _target_name(target) -> str:
    """The CPU target a database belongs to. An RPC target builds for one of the named
    CPU targets; it shares that target's records (tuned on this machine for that CPU)."""
    if getattr(target, "device", "") != "rpc":
        return target.name
    from ..build.targets import CPU_TARGETS, parse_target

    for name in CPU_TARGETS:
        if name != "cpu" and parse_target(name).key() == target.key():
            return name
    return target.name


def database_dir(model_spec: str, target, via: str = "") -> Path:
    """Where the tuning database of one model on one target (`build.Target`) lives:
    ``cache_root()/tuning/<model>-<hash>[-via-<path>]/<target>-<hash of its spec>-tvm<version>``
    (an import path other than the framework's default gives other kernels: its own records).
    Records of another TVM version are never reused (traces and workloads change)."""
    import tvm

    target_part = f"{_slug(_target_name(target))}-{_short_hash(target.key().encode())}-tvm{tvm.__version__}"
    return cache_root() / "tuning" / (model_key(model_spec) + _via_part(model_spec, via)) / target_part


def _via_part(model_spec: str, via: str) -> str:
    """"" for the framework's default path (records made before paths existed stay valid)."""
    from ..loading import source_framework
    from ..models.formats import default_via

    if not via or via == default_via(source_framework(model_spec)):
        return ""
    return f"-via-{_slug(via)}"


def has_database(db_dir: str | Path) -> bool:
    """Whether ``db_dir`` holds a complete tuning database (both record files)."""
    folder = Path(db_dir)
    return (folder / WORKLOAD_FILE).is_file() and (folder / RECORD_FILE).is_file()


def _no_records(model_spec: str, target_name: str, where: str) -> ConfigError:
    return ConfigError(f"no tuning records for model {model_spec!r} on target {target_name!r} ({where}): "
                       f"run `mutatenn tune --model {model_spec} --target {target_name} --trials N`")


def require_database(model_spec: str, target, via: str = "") -> Path:
    """The database folder of ``model_spec`` (along ``via``) on ``target``; `ConfigError` when not tuned yet."""
    folder = database_dir(model_spec, target, via)
    if not has_database(folder):
        raise _no_records(model_spec, _target_name(target), str(folder))
    return folder



@dataclass
class TuneStats:
    """Which PrimFuncs got a tuned schedule (hits) and which were left to the default
    schedule (misses: no record, a record that would not apply, or one slower than the
    default schedule when tuning measured both)."""

    hits: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    kept_default: list[str] = field(default_factory=list)  # misses that have a record, slower than the default
    failed: dict[str, str] = field(default_factory=dict)  # misses whose record would not apply: why

    def merge(self, other: "TuneStats") -> None:
        self.hits += other.hits
        self.misses += other.misses
        self.kept_default += other.kept_default
        self.failed.update(other.failed)

    def summary(self) -> str:
        return (f"{len(self.hits)} PrimFuncs tuned from records, {len(self.misses)} left to the default schedule "
                f"({len(self.kept_default)} of them because it measured faster)")


@dataclass(frozen=True)
class Records:
    """A loaded tuning database and the workloads (hashes) that keep the default schedule."""

    database: object  # meta_schedule.database.JSONDatabase
    prefer_default: frozenset


@functools.lru_cache(maxsize=8)
def _load_records(folder: str, stamp: tuple) -> Records:
    """The records in ``folder``, loaded once per content (``stamp``: the files' sizes and
    times): a campaign builds hundreds of mutants against them."""
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.JSONDatabase(path_workload=os.path.join(folder, WORKLOAD_FILE),
                                        path_tuning_record=os.path.join(folder, RECORD_FILE),
                                        allow_missing=False, module_equality=MODULE_EQUALITY)
    return Records(database, frozenset(_read_info(Path(folder)).get("prefer_default", {})))


def open_records(db_dir: str | Path) -> Records:
    """The records in ``db_dir``; `ConfigError` with what to run when there are none."""
    folder = Path(db_dir) if db_dir else None
    if folder is None or not has_database(folder):
        info = _read_info(folder)
        model, target = info.get("model") or "MODEL", info.get("target") or "TARGET"
        raise _no_records(model, target, str(folder) if folder else "no database given")
    files = [folder / WORKLOAD_FILE, folder / RECORD_FILE, folder / INFO_FILE]
    stamp = tuple((f.stat().st_size, f.stat().st_mtime_ns) if f.exists() else None for f in files)
    return _load_records(str(folder.resolve()), stamp)


def _read_info(folder: Path | None) -> dict:
    try:
        return json.loads((folder / INFO_FILE).read_text()) if folder else {}
    except (OSError, ValueError):
        return {}


def apply_records(mod, records: Records, tvm_target) -> tuple:
    """``(module, TuneStats)``: every PrimFunc of ``mod`` with a usable record replaced by
    its tuned schedule and marked scheduled; the others as they were."""
    import tvm_ffi
    from tvm import tirx

    normalize = tvm_ffi.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    database = records.database
    stats, updates = TuneStats(), {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        name = gv.name_hint
        if func.attrs is not None and SCHEDULED_ATTR in func.attrs and int(func.attrs[SCHEDULED_ATTR]):
            continue  # scheduled before this pass (not by the records): not ours to count
        try:
            workload = normalize(func)
            record = _best_record(database, workload, tvm_target, name)
            usable = record is not None and _mean_run(record) is not None
            if usable and _workload_hash(workload) in records.prefer_default:
                stats.kept_default.append(name)
                usable = False
            schedule = database.query_schedule(workload, tvm_target, name) if usable else None
        except Exception as err:  # noqa: BLE001 - a record that does not replay is a miss
            stats.misses.append(name)
            stats.failed[name] = first_line(err, 300)
            continue
        if schedule is None:
            stats.misses.append(name)
            continue
        updates[gv] = _with_attrs_of(schedule.mod["main"], func)
        stats.hits.append(name)
    return with_functions(mod, updates), stats


def _with_attrs_of(tuned, original):
    """The tuned PrimFunc with exactly the original's attributes plus "scheduled": the
    workload was normalised with ``global_symbol = "main"``, which must not reach the
    build (AttachGlobalSymbol keeps a symbol it finds, and two kernels would be "main")."""
    kept = dict(original.attrs) if original.attrs is not None else {}
    for key in list(tuned.attrs.keys()) if tuned.attrs is not None else []:
        if key not in kept:
            tuned = tuned.without_attr(key)
    return tuned.with_attrs({**kept, SCHEDULED_ATTR: True})


def apply_database_pass(db_dir: str | Path, target_spec, stats: TuneStats | None = None):
    """A module pass (``tvm.transform.Pass``) applying the tuning records in ``db_dir`` to
    the PrimFuncs of a module just after FuseTIR; each run merges its hits and misses into
    ``stats`` (anything with ``merge(TuneStats)``). A missing database raises
    `ConfigError` now, when the pipeline is made, not halfway through a build."""
    import tvm

    from ..schedules import resolve_target

    records = open_records(db_dir)
    tvm_target = resolve_target(target_spec)

    @tvm.transform.module_pass(opt_level=0, name="MutateNNApplyTuningRecords")
    def _apply(mod, _ctx):
        new_mod, run = apply_records(mod, records, tvm_target)
        if stats is not None:
            stats.merge(run)
        return new_mod

    return _apply

def _workload_hash(workload) -> str:
    """How `tuning.json` names a workload (an IRModule as MetaSchedule normalises it)."""
    import tvm_ffi

    return f"{tvm_ffi.structural_hash(workload) & 0xFFFFFFFFFFFFFFFF:016x}"

def _mean_run(record) -> float | None:
    """A record's mean measured run time in seconds; None for a failed build or run."""
    runs = [float(v) for v in (record.run_secs or [])]
    if not runs or all(v >= _MISSING_RUN for v in runs):
        return None
    return sum(runs) / len(runs)

def _best_record(database, mod, tvm_target, name: str):
    """The database's best record for workload ``mod``, or None (without adding it)."""
    if not database.has_workload(mod):
        return None
    return database.query_tuning_record(mod, tvm_target, name)
