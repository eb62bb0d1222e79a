"""Reproducing one mutant × stack of a campaign run folder (`mutatenn repro`).

The mutant is rebuilt as a campaign worker rebuilds it (program from the model spec along
the stack's import path, mutant from operator and site index) for the stack's target and
build options, and run on the images that killed it, in a worker process
(`isolation.run_isolated`): a mutant that segfaults or hangs is reported, not fatal.

With a script folder the worker also saves what a standalone script needs to do the same
with nothing but TVM and NumPy (`write_script`): the mutated Relax module
(``mutant_relax.json``, `tvm.ir.save_json`, constants included), the module after
MutateNN's Relax pipeline (``lowered.json``: fusion, the stack's passes, the loop schedule,
VM lowering; the script compiles it with ``tvm.compile(..., relax_pipeline=None)`` in the
stack's PassContext, which is what the campaign's build does after that pipeline), the
exported library (``program.so``, run by ``--prebuilt``), the input batch and the
original's and the campaign's outputs.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runfolder import schema
from runfolder.verdicts import CHECKED, REPRODUCIBLE, VERDICT_NAMES

from .errors import InputError, OutputFolderError
from .store import ResultStore

# Verdicts with nothing to reproduce (the verdict table's ``repro``); every other one
# (killed, and each way a build or run can fail) is rebuilt and run again.
NOTHING_TO_REPRODUCE = tuple(v for v in VERDICT_NAMES if v not in REPRODUCIBLE)
SCRIPT_FILES = {
    "build": "build.json", "relax": "mutant_relax.json", "relax_text": "mutant_relax.py", "lowered": "lowered.json",
    "library": "program.so", "inputs": "inputs.npy", "original": "original_logits.npy",
    "campaign": "campaign_logits.npy", "script_out": "script_logits.npy", "log": "repro.log",
}
LOG_HEAD, LOG_TAIL, LOG_CHARS = 6, 6, 20000


class ReproError(InputError):
    """The mutant × stack asked for cannot be reproduced from this run folder (exit 2)."""


@dataclass
class Case:
    """One mutant × stack of a campaign run folder, as the folder records it."""

    run_dir: Path
    mutant_id: str
    stack: object  # config.StackSpec, ``via`` resolved
    options: object  # build.BuildOptions the artifact was built with (a pass mutant's own)
    config: object  # config.CampaignConfig
    mutant: dict  # the store's mutants row
    verdict: dict  # the store's verdicts row
    indices: list[int]  # the images to run (positions in the campaign's image set)
    image_choice: str  # how they were chosen, in words
    image_names: list[str]
    image_labels: list
    original_logits: np.ndarray | None  # the campaign's original outputs on these images
    original_latencies: np.ndarray | None
    campaign_logits: np.ndarray | None  # the campaign's stored mutant outputs on these images


@dataclass(frozen=True)
class ReproTask:
    """What the worker needs: plain strings, numbers and a BuildOptions (no IRModules)."""

    model: str
    pretrained: str
    preset: str | None
    images: str
    indices: tuple[int, ...]
    variant: str
    options: object
    via: str
    operator: str  # empty: the original program (a pass mutant: the original with its options)
    site: int
    mutant_hash: str
    mutant_id: str
    stack: str
    key: str
    files: str  # the script's data folder, or ""
    log_path: str
    trusted: bool = False  # the campaign's config, or the command, trusts the model file


@dataclass
class Reproduction:
    case: Case
    status: str  # a verdict's word: what happened now (killed, survived, crashed, build_error, memory_error, ...)
    reason: str = ""
    log_tail: str = ""
    logits: np.ndarray | None = None
    latencies: np.ndarray | None = None
    labels: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)  # metrics over the images run
    build_s: float = 0.0
    run_s: float = 0.0
    identical: bool | None = None  # bit-for-bit equal to the campaign's stored outputs (None: none stored)
    max_diff: float | None = None
    script: Path | None = None
    log: Path | None = None  # the worker's full log, kept when it failed

    @property
    def reproduced(self) -> bool:
        then = self.case.verdict["verdict"]
        # Folders written before build_error existed called a failed build crashed.
        return self.status == then or (then == "crashed" and self.status == "build_error")


# ---------------------------------------------------------------- reading the run folder
def case_preprocessing(case) -> str:
    """The preprocessing the campaign ran with, as its run.json says."""
    meta = _campaign_meta(case.run_dir)
    return str(meta.get("preprocessing") or meta.get("preset") or case.config.preset or "the model's own")


def open_case(run_dir: Path, mutant_id: str, stack_name: str | None, all_images: bool = False,
              allow: tuple[str, ...] = ()) -> Case:
    """The mutant × stack of ``run_dir`` to reproduce, or one ReproError line saying why not;
    ``allow``: verdicts of `NOTHING_TO_REPRODUCE` the caller takes all the same (localize
    compares a survived mutant's outputs too)."""
    from .config import parse_config
    from .execute import cached_images
    from .preflight import preflight

    run_dir = Path(run_dir)
    meta = _campaign_meta(run_dir)
    raw = json.loads(json.dumps(meta.get("config") or {}))
    # run.json holds the model and image specs resolved against the config's folder.
    model = raw.get("model")
    raw["model"] = {**model, "spec": meta["model"]} if isinstance(model, dict) else {"spec": meta["model"]}
    raw["images"] = {"spec": meta["images"]}
    # The stored config reads anywhere; rebuilding needs its model file and records here.
    config = preflight(parse_config(raw, base_dir=run_dir), local_devices=False)
    stacks = {s.name: s for s in config.stacks}
    described = {s["name"]: s for s in meta.get("stacks", [])}
    if stack_name is None:
        if len(stacks) != 1:
            raise ReproError(f"run {str(run_dir)!r} has {len(stacks)} stacks: name one with --stack "
                             f"({', '.join(stacks)})")
        stack_name = next(iter(stacks))
    if stack_name not in stacks:
        raise ReproError(f"stack {stack_name!r} is not in run {str(run_dir)!r} (its stacks: {', '.join(stacks)})")
    stack = dataclasses.replace(stacks[stack_name], via=described.get(stack_name, {}).get("via", ""))
    store = ResultStore(run_dir / schema.RESULTS_SQLITE, read_only=True)  # repro writes nothing there
    try:
        mutant = store.mutant(mutant_id)
        if mutant is None:
            known = [m["id"] for m in store.mutants()]
            near = [m for m in known if m.endswith("/" + mutant_id) or m.split("/")[-1].startswith(mutant_id)]
            hint = f"; did you mean {', '.join(near[:5])}?" if near else f" (it has {len(known)} mutants: see mutants.json)"
            raise ReproError(f"mutant {mutant_id!r} is not in run {str(run_dir)!r}{hint}")
        found = store.verdicts(mutant_id, stack_name)
        verdict = found[0] if found else None
    finally:
        store.close()
    left_out = (meta.get("failed_stacks") or {}).get(stack_name)
    if verdict is None and left_out:
        raise ReproError(f"stack {stack_name!r} was left out of the campaign: {left_out}")
    if verdict is None:
        raise ReproError(f"mutant {mutant_id!r} was not judged on stack {stack_name!r} (it mutates the "
                         f"{mutant.get('via') or 'default'} program; stacks of other import paths never build it)")
    word = verdict["verdict"]
    if word in NOTHING_TO_REPRODUCE and word not in allow:
        raise ReproError(f"mutant {mutant_id!r} is {word} on stack {stack_name!r}: nothing to reproduce "
                         f"(repro takes killed mutants and those whose build or run failed)")
    overrides = json.loads(mutant.get("build_options") or "{}")
    options = stack.options.with_overrides(overrides) if overrides else stack.options
    if word in CHECKED and not options.bounds_check:
        # Found by the bounds-checked rebuild of an unstable pair ([run] rejudge_unstable):
        # reproduced the same way, or the read outside (or before) the buffer goes unseen again.
        options = options.with_overrides({"bounds_check": True})
    images = cached_images(config.images)
    _check_images(run_dir, meta, images)
    indices, choice = _killing_images(run_dir, mutant_id, stack_name, verdict, images.names)
    if all_images or not indices:
        indices = list(range(len(images)))
        choice = f"all {len(indices)} images" + ("" if all_images else f" ({choice})")
    original = _stored(run_dir, (meta.get("originals") or {}).get(stack_name, ""), indices)
    mutant_out = _stored(run_dir, verdict.get("artifact") or "", indices)
    return Case(run_dir, mutant_id, stack, options, config, mutant, verdict, indices, choice,
                [images.names[i] for i in indices], [images.labels[i] for i in indices],
                None if original is None else original["logits"], None if original is None else original["latencies"],
                None if mutant_out is None else mutant_out["logits"])


def _campaign_meta(run_dir: Path) -> dict:
    path = run_dir / schema.RUN_JSON
    if not run_dir.is_dir():
        raise OutputFolderError(f"run folder {str(run_dir)!r} does not exist")
    if not path.is_file():
        raise OutputFolderError(f"{str(run_dir)!r} is not a campaign run folder (no {schema.RUN_JSON}; "
                                "an interrupted campaign writes it when it finishes)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise OutputFolderError(f"cannot read {str(path)!r}: {err}") from None
    if not isinstance(meta, dict) or meta.get("kind") != "campaign":
        kind = meta.get("kind") if isinstance(meta, dict) else None
        raise OutputFolderError(f"{str(run_dir)!r} is not a campaign run folder (run.json kind: {kind!r}); "
                                "repro reproduces a campaign's mutants")
    if not (run_dir / schema.RESULTS_SQLITE).is_file():
        raise OutputFolderError(f"campaign run folder {str(run_dir)!r} has no {schema.RESULTS_SQLITE}")
    return meta


def _check_images(run_dir: Path, meta: dict, images) -> None:
    """The image set must still be the campaign's (a folder may have changed since)."""
    stored = run_dir / schema.IMAGES_JSON
    names = [r["name"] for r in json.loads(stored.read_text())] if stored.is_file() else None
    if len(images) != meta.get("image_count", len(images)) or (names is not None and names != images.names):
        raise ReproError(f"image set {meta['images']!r} is not the one the campaign ran "
                         f"({meta.get('image_count')} images then, {len(images)} now)")


def _killing_images(run_dir: Path, mutant_id: str, stack: str, verdict: dict, names: list[str]):
    """Indices of the images that killed the mutant: kill_matrix.csv's killing images, else
    the flipped images the store keeps; ([], why) when there are none."""
    if verdict["verdict"] != "killed":
        return [], f"the mutant {verdict['verdict'].replace('_', ' ')}"
    matrix = run_dir / schema.KILL_MATRIX_CSV
    if matrix.is_file():
        import pandas as pd

        table = pd.read_csv(matrix, dtype=str, keep_default_na=False)
        rows = table[(table["mutant_id"] == mutant_id) & (table["stack"] == stack) & (table["killed_by_image"] == "1")]
        position = {n: i for i, n in reversed(list(enumerate(names)))}
        found = sorted(position[n] for n in rows["image"] if n in position)
        if found:
            return found, f"the {len(found)} image(s) that kill it alone (kill_matrix.csv)"
    flipped = verdict.get("flipped_images") or []
    if flipped:
        return [int(i) for i in flipped], f"the {len(flipped)} image(s) whose top-1 label changed"
    return [], "no single image kills it"


def _stored(run_dir: Path, key: str, indices: list[int]) -> dict | None:
    """The campaign's stored outputs of one artifact on ``indices`` (None when absent)."""
    from .campaign.rundir import outputs_path

    if not key or not outputs_path(run_dir, key).is_file():
        return None
    with np.load(outputs_path(run_dir, key)) as data:
        return {"logits": data["logits"][indices], "latencies": data["latencies"][indices]}


# ---------------------------------------------------------------- reproducing
def reproduce(case: Case, script: Path | None = None, timeout: float | None = None,
              trusted: bool = False) -> Reproduction:
    """Rebuild and run the mutant in a worker process; ``script``: also write a standalone
    script there (and its data folder beside it). The model is trusted when the campaign's
    config trusted it, or ``trusted``."""
    from .isolation import CRASHED, DONE, TIMED_OUT, run_isolated
    from .loading import source_family
    from .runners import parse_variant, runner_class

    variant = dataclasses.replace(parse_variant(case.stack.variant_text), options=case.options)
    if not runner_class(variant.kind).builds:
        raise ReproError(f"stack {case.stack.name!r} runs {variant.kind}, which builds no mutant")
    runner_class(variant.kind).preflight(variant)
    files = _prepare_script(case, variant, Path(script)) if script is not None else None
    log_dir = None if files is not None else Path(tempfile.mkdtemp(prefix="mutatenn-repro-"))
    log_path = (files or log_dir) / SCRIPT_FILES["log"]
    pass_mutant = bool(json.loads(case.mutant.get("build_options") or "{}"))
    task = ReproTask(case.config.model, case.config.pretrained, case.config.preset, case.config.images,
                     tuple(case.indices), case.stack.variant_text, case.options, case.stack.via,
                     "" if pass_mutant else case.mutant["operator"], int(case.mutant["site_index"]),
                     "" if pass_mutant else case.mutant["hash"], case.mutant_id, case.stack.name,
                     case.verdict.get("artifact") or "", str(files or ""), str(log_path),
                     trusted or case.config.trusted)
    limit = timeout if timeout is not None else case.config.timeout_s
    outcome = next(run_isolated(reproduce_job, [(task,)], timeout=limit, family=source_family(task.model)))
    from .campaign.job import log_tail

    failed = outcome.status != DONE or outcome.value["status"] != "done"
    tail = _log_excerpt(log_tail(log_path, LOG_CHARS))
    if log_path.is_file() and not log_path.stat().st_size:
        log_path.unlink()
    if log_dir is not None and not failed:
        import shutil

        shutil.rmtree(log_dir, ignore_errors=True)
    result = Reproduction(case, "crashed", script=Path(script) if script is not None else None,
                          log=log_path if failed and log_path.is_file() else None)
    if outcome.status == TIMED_OUT:
        result.status, result.reason, result.log_tail = "timed_out", outcome.reason, tail
        return result
    if outcome.status == CRASHED:
        result.reason, result.log_tail = outcome.reason, tail
        return result
    value = outcome.value
    if value["status"] == "input_error":
        raise ReproError(value["reason"])
    if value["status"] != "done":
        result.status, result.reason, result.log_tail = value["status"], value["reason"], tail
        return result
    result.logits, result.latencies = value["logits"], value["latencies"]
    result.labels, result.build_s, result.run_s = value["labels"], value["build_s"], value["run_s"]
    _judge(result)
    return result


def _judge(result: Reproduction) -> None:
    """Killed or survived on the images run, by the campaign's criterion; bits compared
    with the campaign's stored outputs."""
    from .campaign.judge import judge_outputs
    from .compare import label_indices
    from .images import ImageSet

    case = result.case
    ran = None if case.campaign_logits is None else ~np.isnan(case.campaign_logits).all(axis=1)
    if ran is not None and ran.any():  # rows fast kill never ran are NaN there: not compared
        stored, now = case.campaign_logits[ran], result.logits[ran]
        result.identical = bool((stored.view(np.uint32) == now.view(np.uint32)).all())
        with np.errstate(all="ignore"):
            result.max_diff = float(np.nanmax(np.abs(stored - now)))
    if case.original_logits is None:
        result.status = "ran"  # the campaign stored no original outputs here: nothing to judge against
        return
    ref = {"logits": case.original_logits, "latencies": case.original_latencies}
    out = {"logits": result.logits, "latencies": result.latencies}
    truth = label_indices(ImageSet("repro", case.image_names, [], case.image_labels), result.labels)
    row = judge_outputs((case.mutant_id, case.stack.name), {"key": "", "build_s": 0, "run_s": 0}, ref, out,
                        case.config.criterion, truth)
    result.status = row.verdict.value
    result.values = {k: float(v) for k, v in row.values.items()}
    result.values["flipped"] = row.flipped


def _log_excerpt(text: str, head: int = LOG_HEAD, tail: int = LOG_TAIL) -> str:
    """The first and last lines of a worker's log (a fault handler's native backtrace is
    long; what went wrong is usually said at its start, where it died at its end)."""
    lines = text.strip().splitlines()
    if len(lines) <= head + tail:
        return "\n".join(lines)
    return "\n".join(lines[:head] + [f"... ({len(lines) - head - tail} lines)"] + lines[-tail:])


def reproduce_job(task: ReproTask) -> dict:
    """Worker entry point: rebuild, (save,) build and run; a Python error is this job's
    crash (its traceback in the log), an InputError the user's (a model file gone)."""
    from .campaign.job import run_logged

    return run_logged(_reproduce, task, task.log_path)


def _reproduce(task: ReproTask, stage: list) -> dict:
    import time
    from types import SimpleNamespace

    import tvm

    from .campaign import faults
    from .execute import cached_images, cached_program, input_batch
    from .runners import make_runner, parse_variant

    # The engine's test hook (MUTATENN_TEST_FAULTS) reaches this build as it reached the campaign's.
    kind = faults.fault_for(SimpleNamespace(pairs=((task.mutant_id, task.stack),)))
    stage[0] = "run"  # an injected exception stands for a run that raised, as in a campaign job
    faults.inject_before_build(kind, task.key)
    stage[0] = "setup"
    program = cached_program(task.model, task.pretrained, task.preset, task.via, True, task.trusted)
    batch = input_batch(program, cached_images(task.images))[list(task.indices)]
    mod = _mutant_module(task, program)
    files = Path(task.files) if task.files else None
    if files is not None:
        _add_labels(files, program.labels)
        np.save(files / SCRIPT_FILES["inputs"], batch)
        (files / SCRIPT_FILES["relax"]).write_text(tvm.ir.save_json(mod))
        (files / SCRIPT_FILES["relax_text"]).write_text(mod.script(show_meta=False))
    variant = dataclasses.replace(parse_variant(task.variant), options=task.options)
    target = variant.target
    stage[0] = "build"
    start = time.perf_counter()
    lowered = lower_for_build(mod, target, task.options)
    if files is not None:
        (files / SCRIPT_FILES["lowered"]).write_text(tvm.ir.save_json(lowered))
    executable = compile_lowered(lowered, target, task.options)
    if files is not None:
        executable.export_library(str(files / SCRIPT_FILES["library"]))
    build_s = time.perf_counter() - start
    runner = make_runner(variant, program, mod=mod)
    runner.use_executable(executable)
    stage[0] = "run"
    start = time.perf_counter()
    output = runner.run(batch)
    return {"status": "done", "logits": output.logits, "latencies": output.latencies, "labels": list(program.labels),
            "build_s": build_s, "run_s": time.perf_counter() - start}


def _mutant_module(task: ReproTask, program):
    """The mutant's IRModule (the program's own for a pass mutant, which changes the build
    options only), checked against the hash the campaign planned."""
    from .campaign.job import MutantMismatch, rebuild_mutant

    try:
        mod = rebuild_mutant(program, task.operator, task.site, task.mutant_hash)
    except MutantMismatch as err:
        raise ReproError(f"{err} by the campaign: the model is not the one the campaign ran") from None
    return program.mod if mod is None else mod


def lower_for_build(mod, target, options, instruments=()):
    """``mod`` after MutateNN's Relax pipeline for ``options`` (what the build compiles);
    ``instruments``: TVM pass instruments, as `build.build_artifact` takes them."""
    from .build import BuildStats, pass_context, relax_pipeline

    with pass_context(options, instruments):
        with target.tvm_target():
            return relax_pipeline(target, options, BuildStats(options.schedule))(mod)


def compile_lowered(lowered, target, options):
    """The executable of a module that went through `lower_for_build`: VM code generation,
    TIR lowering and LLVM/CUDA code generation in the stack's PassContext (the TIR options)."""
    import tvm

    from .build import pass_context

    with pass_context(options):
        return tvm.compile(lowered, target=target.tvm_target(), relax_pipeline=None)


# ---------------------------------------------------------------- the standalone script
def files_folder(script: Path) -> Path:
    return script.with_name(f"{script.stem}_files")


def _prepare_script(case: Case, variant, script: Path) -> Path:
    """Write the script, build.json and the stored outputs; return the data folder (the
    worker adds the IR, the library and the inputs). Nothing existing is overwritten."""
    from mutators.passes import tir_config

    from . import __version__
    from .build.pipeline import skipped_passes, table_passes
    from .outputs import prepare_out_dir

    if script.suffix != ".py":
        raise ReproError(f"--script {str(script)!r}: give a .py file name")
    files = files_folder(script)
    if script.exists() or (files.exists() and (not files.is_dir() or any(files.iterdir()))):
        taken = script if script.exists() else files
        raise OutputFolderError(f"--script: {str(taken)!r} already exists (nothing was overwritten)")
    prepare_out_dir(files)
    options = case.options
    build = {
        "mutant": case.mutant_id, "stack": case.stack.name, "variant": variant.text, "run_dir": str(case.run_dir),
        "verdict": case.verdict["verdict"], "reason": case.verdict.get("reason") or "",
        "operator": case.mutant["operator"], "site": case.mutant["site"], "artifact": case.verdict.get("artifact"),
        "model": case.config.model, "via": case.stack.via, "images": case.config.images,
        "image_names": case.image_names, "image_indices": case.indices, "labels": None,
        "target": _plain(variant.target.tvm_target().export()), "device": variant.target.device,
        "build": options.label(), "opt_level": options.opt_level, "switchable_passes_run": list(options.passes()),
        "relax_passes": [s.name for s in table_passes(options)],
        "schedule": options.schedule,
        "pass_context": {"opt_level": 3, "disabled_pass": skipped_passes(options),
                         "config": tir_config(options.tir_options)},
        "tvm_version": _tvm_version(), "mutatenn_version": __version__,
    }
    (files / SCRIPT_FILES["build"]).write_text(json.dumps(build, indent=2, default=str) + "\n")
    if case.original_logits is not None:
        np.save(files / SCRIPT_FILES["original"], case.original_logits)
    if case.campaign_logits is not None:
        np.save(files / SCRIPT_FILES["campaign"], case.campaign_logits)
    header = (f"Reproduces mutant {case.mutant_id} on stack {case.stack.name} ({variant.text}, "
              f"{options.label()}) of the MutateNN campaign {case.run_dir}.")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(script_template().replace("@HEADER@", header).replace("@FILES@", files.name))
    return files


def _add_labels(files: Path, labels: list[str]) -> None:
    """The program's class names (known once the worker loaded it) into build.json."""
    path = files / SCRIPT_FILES["build"]
    data = json.loads(path.read_text())
    data["labels"] = list(labels)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _plain(value):
    """A TVM Map / Array (a target's export) as JSON-able dicts and lists."""
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    try:
        return [_plain(v) for v in value]
    except TypeError:
        return str(value)


def _tvm_version() -> str:
    import tvm

    return tvm.__version__


def script_template() -> str:
    """The standalone repro script, with ``@HEADER@`` and ``@FILES@`` to fill in (a package
    data file: it is read, never imported)."""
    return (Path(__file__).parent / "data" / "repro_script.py.in").read_text(encoding="utf-8")


# ---------------------------------------------------------------- text
def format_reproduction(r: Reproduction) -> str:
    """What `mutatenn repro` prints."""
    from .compare import softmax

    case = r.case
    v = case.verdict
    lines = [f"mutant {case.mutant_id} ({case.mutant['operator']}, {case.mutant['level']}) on stack "
             f"{case.stack.name} ({case.stack.variant_text}, {case.options.label()})",
             f"  site: {case.mutant['site']}",
             f"  campaign verdict: {v['verdict']}" + (f" ({v['reason']})" if v.get("reason") else ""),
             f"  images: {case.image_choice}"]
    if v.get("unstable"):
        lines.append("  note: the campaign flagged this build unstable (outputs differed between passes)")
    if r.logits is not None:
        labels = r.labels

        def name(c: int) -> str:
            return labels[c] if 0 <= c < len(labels) else str(c)

        mutant_p = softmax(r.logits)
        rows = [("image", "label", "original top-1", "mutant top-1", "flipped")]
        original_p = softmax(case.original_logits) if case.original_logits is not None else None
        for i, image in enumerate(case.image_names):
            m = int(np.nanargmax(r.logits[i])) if np.isfinite(r.logits[i]).any() else -1
            mutant = f"{name(m)} {mutant_p[i, m]:.4f}" if m >= 0 else "nan"
            if original_p is not None:
                o = int(np.argmax(case.original_logits[i]))
                rows.append((image, str(case.image_labels[i] or "-"), f"{name(o)} {original_p[i, o]:.4f}", mutant,
                             "yes" if o != m else "no"))
            else:
                rows.append((image, str(case.image_labels[i] or "-"), "-", mutant, "-"))
        widths = [max(len(row[c]) for row in rows) for c in range(5)]
        lines += ["", *("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows), ""]
        if r.values:
            shown = ", ".join(f"{k} {r.values[k]:.6g}" for k in r.values)
            lines.append(f"metrics over these {len(case.indices)} images: {shown}")
        if r.identical is not None:
            lines.append("outputs: identical to the campaign's stored outputs, bit for bit" if r.identical else
                         f"outputs: differ from the campaign's stored outputs (max abs difference {r.max_diff:.6g})")
        lines.append(f"build {r.build_s:.2f} s, run {r.run_s:.3f} s")
    else:
        lines.append(f"  now: {r.status.replace('_', ' ')}: {r.reason}")
        if r.log_tail:
            lines += ["  log:", *("    " + line for line in r.log_tail.splitlines())]
        if r.log is not None:
            lines.append(f"  full log: {r.log}")
    lines.append(f"reproduced: {'yes' if r.reproduced else 'no'} (campaign: {v['verdict']}, now: {r.status})")
    if r.script is not None:
        lines.append(f"script: {r.script} (python {r.script} [--prebuilt]; data in {files_folder(r.script)}/)")
    return "\n".join(lines)
