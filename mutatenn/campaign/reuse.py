"""Incremental runs (`mutatenn run --reuse OLD_RUN`, ``[run] reuse``): the builds of an
earlier run folder whose inputs are the same are taken over, with their stored outputs,
and only the rest are built.

What is reused is a *build*: one artifact (program structural hash + target + build
options, `plan.artifact_key`) run over the image set. Its outputs depend on that key and
on the run's inputs recorded here (`run_inputs`): the model's bytes, the image batch as the
model sees it, the passes run and kept, the timing settings and timeout, fast kill with its
criterion and reference (fast kill stops images by them), and the TVM, LLVM, CPU and
MutateNN versions. When every one is the same, each build of the new plan whose key the
old run finished is copied (store row and outputs file); when one differs, nothing is.

No verdict is copied: every pair is judged again in this run, from the outputs, with this
run's criterion, reference and pass verdict, so a changed criterion reuses builds but never
an old survivor, and a reused run gives the verdicts of a fresh one.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from runfolder import schema

from ..build import BuildOptions
from ..config import CampaignConfig
from ..errors import InputError
from ..store import ResultStore
from . import rundir
from .plan import Plan, artifact_key

FORMAT = 1  # of the inputs record; a store with another (or none) cannot be reused
META_KEY = "reuse_inputs"  # the store's meta key holding `run_inputs`
SUMMARY_KEY = rundir.REUSE_SUMMARY_KEY  # the store's meta key holding this run's `ReuseSummary`

# Input -> how a user reads it when it differs (the model is refused apart, see `check_old_run`).
INPUT_NAMES = {
    "format": "the record of inputs (an older MutateNN)", "image_set": "the image set", "repeats": "run.repeats",
    "repeat_in": "run.repeat_in", "kept_passes": "the passes kept (run.verdict)", "fast_kill": "fast kill and its "
    "criterion", "fast_kill_reference": "the reference fast kill compares with", "timing": "run.timing",
    "timeout_s": "run.timeout", "tvm": "the TVM version", "llvm": "the LLVM version", "cpu": "the CPU",
    "mutatenn": "the MutateNN version",
}


class ReuseError(InputError):
    """OLD_RUN cannot be reused at all (not a run folder, another model, an unreadable or older store)."""


@dataclass
class ReuseSummary:
    """What this run took from OLD_RUN (run.json ``reuse``; the report says it)."""

    source: str  # OLD_RUN, resolved
    builds_reused: int = 0
    builds_planned: int = 0
    verdicts_from_reused: int = 0  # mutant x stack pairs judged from reused outputs
    reason: str = ""  # why nothing was reused (empty when something was, or when nothing matched)

    def to_json(self) -> dict:
        out = asdict(self)
        out["from"] = out.pop("source")
        return out


def run_inputs(config: CampaignConfig, program, images) -> dict:
    """Everything a build's outputs depend on besides its artifact key (see the module doc)."""
    from ..golden import environment, image_fingerprint, model_fingerprint

    env = environment()
    method = config.passes.method if config.passes is not None else "first"
    return {
        "format": FORMAT,
        "model": model_fingerprint(program.source, config.pretrained)["hash"],
        "model_spec": config.model,
        "image_set": image_fingerprint(program.source, config.images, images)["batch_hash"],
        "repeats": config.repeats, "repeat_in": config.repeat_in,
        "kept_passes": config.repeats > 1 and method != "first",
        "fast_kill": str(config.criterion) if config.fast_kill else "",
        "fast_kill_reference": config.reference if config.fast_kill else "",
        "timing": None if config.timing is None else [config.timing.calls, config.timing.threads],
        "timeout_s": config.timeout_s,
        "tvm": env["tvm"], "llvm": env["llvm"], "cpu": env["cpu"], "mutatenn": env["mutatenn"],
    }


def differing_inputs(old: dict, new: dict) -> list[str]:
    """The inputs (in words) that differ between two records, the model aside."""
    return [INPUT_NAMES[k] for k in INPUT_NAMES if old.get(k) != new.get(k)]


def read_old_run(old_dir: Path, new: dict) -> tuple[dict, dict]:
    """(its finished artifacts, its inputs record) of OLD_RUN; ReuseError in one line when
    it is not a campaign folder, its store cannot be read or is older than the record of
    inputs, or it holds another model."""
    store_path = Path(old_dir) / schema.RESULTS_SQLITE
    if not store_path.is_file():
        raise ReuseError(f"--reuse {str(old_dir)!r} is not a campaign run folder ({schema.RESULTS_SQLITE} missing): "
                         "nothing can be reused")
    try:
        db = sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
            names = [r[1] for r in db.execute("PRAGMA table_info(artifacts)")]
            artifacts = {r[0]: dict(zip(names, r)) for r in db.execute("SELECT * FROM artifacts")}
        finally:
            db.close()
    except sqlite3.Error as err:
        raise ReuseError(f"--reuse {str(old_dir)!r}: its result store cannot be read ({err}): nothing can be reused") \
            from None
    old = json.loads(row[0]) if row else None
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise ReuseError(f"--reuse {str(old_dir)!r} was written by an older MutateNN (its store records no inputs "
                         "to check): nothing can be reused")
    if old.get("model") != new["model"]:
        raise ReuseError(f"--reuse {str(old_dir)!r} is a campaign of another model ({old.get('model_spec')!r}, "
                         f"hash {str(old.get('model'))[:12]}; this run: {new['model_spec']!r}, hash "
                         f"{new['model'][:12]}): nothing can be reused")
    return artifacts, old


def wanted_keys(plan: Plan) -> set[str]:
    """Every build this plan may run: its artifacts and their bounds-checked rebuilds
    (`engine.Rejudge`, keyed the same way)."""
    keys = set(plan.artifacts)
    for artifact in plan.artifacts.values():
        options: BuildOptions = artifact.options
        if not options.bounds_check and artifact.stack.target.spec.get("kind") == "llvm":
            keys.add(artifact_key(artifact.program_hash, artifact.stack,
                                  options.with_overrides({"bounds_check": True})))
    return keys


def reuse_builds(config: CampaignConfig, plan: Plan, store: ResultStore, out_dir: Path, inputs: dict,
                 quiet: bool = False) -> ReuseSummary | None:
    """Record this run's inputs; with ``config.reuse``, copy OLD_RUN's finished builds that
    this plan needs (store rows and outputs) into this run folder before anything is built.
    A ReuseError stops the run unless ``config.reuse_or_fresh``; then the run goes on fresh."""
    store.set_meta(META_KEY, inputs)
    if not config.reuse:
        return None
    old_dir = Path(config.reuse)
    summary = ReuseSummary(str(old_dir.resolve()), builds_planned=len(plan.artifacts))
    if old_dir.resolve() == Path(out_dir).resolve():
        raise ReuseError(f"--reuse {str(old_dir)!r} is this run's own folder (an interrupted run resumes there "
                         "without --reuse)")
    try:
        old_artifacts, old_inputs = read_old_run(old_dir, inputs)
    except ReuseError as err:
        if not config.reuse_or_fresh:
            raise
        summary.reason = str(err)
        print(f"note: {err}; running fresh (--reuse-or-fresh)", file=sys.stderr)
        store.set_meta(SUMMARY_KEY, summary.to_json())
        return summary
    changed = differing_inputs(old_inputs, inputs)
    if changed:
        summary.reason = f"{', '.join(changed)} changed"
        print(f"note: --reuse {str(old_dir)!r}: {summary.reason}; no build of it is reused", file=sys.stderr)
        store.set_meta(SUMMARY_KEY, summary.to_json())
        return summary
    have = store.finished_artifacts()
    reused = [key for key in sorted(wanted_keys(plan)) if key in old_artifacts and key not in have
              and _copy_build(old_artifacts[key], old_dir, Path(out_dir), store)]
    previous = store.get_meta(SUMMARY_KEY) or {}  # a resumed run keeps the count of its first start
    summary.builds_reused = len(reused) + int(previous.get("builds_reused", 0))
    taken = set(reused) | set(previous.get("keys", []))
    summary.verdicts_from_reused = sum(key in taken for key in plan.pairs.values())
    store.set_meta(SUMMARY_KEY, {**summary.to_json(), "keys": sorted(taken)})
    if not quiet:
        print(f"reusing {summary.builds_reused} of {len(plan.artifacts)} builds from {old_dir} "
              f"({summary.verdicts_from_reused} verdicts are judged from their outputs)", file=sys.stderr)
    return summary


def _copy_build(row: dict, old_dir: Path, out_dir: Path, store: ResultStore) -> bool:
    """One finished build of OLD_RUN into this run: its outputs file and its store row
    (no verdicts: this run judges them). False when its outputs file is gone."""
    info = {**row, "unstable_images": _loads(row.get("unstable_images")), "build_info": _loads(row.get("build_info"))}
    if row.get("outputs"):
        source = old_dir / row["outputs"]
        if not source.is_file():
            return False
        target = rundir.outputs_path(out_dir, row["key"])
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.tmp.npz")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
        info["outputs"] = str(target.relative_to(out_dir))
    store.record_artifact(info, [], row.get("finished") or rundir.now())
    return True


def _loads(text):
    return None if text is None else json.loads(text)
