"""Running a campaign: plan, run the pending builds (originals first) in worker
processes, judge each as it finishes, store it at once, then write the run folder.

Verdicts are decided here in the coordinator from the stored outputs, so a resumed
run judges exactly as an uninterrupted one.
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from runfolder.verdicts import PROGRESS

from ..config import CampaignConfig
from ..errors import CampaignError, InputError
from ..records import JobResult, JobStatus, Verdict, VerdictRow
from ..store import ResultStore
from . import rundir
from .judge import is_rejudged, judge_failure, judge_outputs, judge_rejudged
from .plan import Artifact, Plan, artifact_key, enumerate_selected, make_job, make_plan
from .reuse import reuse_builds, run_inputs


@dataclass
class CampaignResult:
    out_dir: Path
    scores: pd.DataFrame
    verdicts: pd.DataFrame
    report: Path | None
    report_error: str = ""


def run_campaign(config: CampaignConfig, out_dir: Path, jobs: int | None = None, scheduler: str | None = None,
                 quiet: bool = False, render: bool = True) -> CampaignResult:
    """Preflight (a config not checked yet: this machine and its files), plan, run (resuming
    what a previous run left), judge, store and write the run folder."""
    from ..compare import announce_inputs
    from ..execute import cached_images
    from ..loading import check_model_isolated
    from ..preflight import preflight

    # Jobs sent to a Dask cluster run on its machines: this one's CPU and GPU are not asked for.
    config = preflight(config, local_devices=not scheduler)
    clock = time.perf_counter()
    workers = jobs or config.jobs
    if workers < 1:
        raise InputError("--jobs must be at least 1")
    if config.timing is not None and workers > 1 and not scheduler:
        raise InputError(f"[run] timing pins each job's threads to the first cores: run one job at a time "
                         f"(--jobs 1), not {workers}, or the jobs time each other")
    client = None
    if scheduler:
        from .dispatch import connect

        client = connect(scheduler)
    out_dir = Path(out_dir)
    check_model_isolated(config.model, config.trusted)  # an untrusted file is refused before the run folder
    before = rundir.folder_state(out_dir)
    store = rundir.open_run_folder(out_dir, config)
    jobs_started = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config, paths = load_paths(config)
            images = cached_images(config.images)
        program = next(iter(paths.programs.values()), None)
        if program is None:
            raise CampaignError("no stack's import path could be loaded: "
                                + "; ".join(f"{via}: {reason}" for via, reason in paths.failed.items()))
        for stack, reason in paths.failed_stacks(config).items():
            print(f"warning: stack {stack!r} left out: {reason}", file=sys.stderr)
        say(quiet, f"planning: {program.name}, {len(images)} images, {len(config.stacks)} stacks"
                   + (f", import paths {', '.join(paths.programs)}" if len(paths.programs) > 1 else ""))
        mutants, plan = plan_paths(config, paths)
        records = [rundir.mutant_record(i, m, via) for i, (m, via) in enumerate(mutants)]
        store.record_mutants(records)
        rundir.write_programs(out_dir, paths.programs, records)
        mutants = [m for m, _ in mutants]
        store.record_verdicts([row.to_store() for row in plan.fixed])
        pending = sum(m.status.value == "pending" for m in mutants)
        say(quiet, f"{len(mutants)} mutants ({pending} to build) x {len(config.stacks)} stacks = "
                   f"{len(plan.artifacts)} distinct builds (originals included)")
        reuse_builds(config, plan, store, out_dir, run_inputs(config, program, images), quiet)
        load_reference(config, program, images, out_dir)
        truth = image_truth(config, program, images)
        announce_inputs(program.source, images)  # every input checked: the work starts
        orchestrator = Orchestrator(config, plan, store, out_dir, workers, client, quiet, truth=truth)
        jobs_started = True
        orchestrator.run()
        if config.rejudge_unstable:
            Rejudge(orchestrator).run()
        store.set_meta("finished", rundir.now())
        # A resumed run adds its time to what the interrupted runs spent.
        elapsed = (store.get_meta("duration_s") or 0) + (time.perf_counter() - clock)
        store.set_meta("duration_s", round(elapsed, 3))
        failed = {**paths.failed_stacks(config), **orchestrator.failed}
        verdicts, scores = rundir.write_outputs(out_dir, config, program, images, plan, store, failed)
        rundir.write_exports(out_dir, config.exports)
    except BaseException:
        store.close()
        if not jobs_started:  # nothing ran: leave the folder as it was found, so a corrected rerun starts clean
            rundir.restore_folder(out_dir, before)
        raise
    finally:
        store.close()
        if client is not None:
            client.close()
    report, report_error = rundir.render_run_report(out_dir) if render else (None, "")
    return CampaignResult(out_dir, scores, verdicts, report, report_error)


@dataclass
class Paths:
    """The campaign's import paths: a program per path, and paths that failed to load."""

    programs: dict  # via -> Program
    failed: dict[str, str]  # via -> the one-line reason (stage and framework named)

    def failed_stacks(self, config: CampaignConfig) -> dict[str, str]:
        return {s.name: self.failed[s.via] for s in config.stacks if s.via in self.failed}


def load_paths(config: CampaignConfig) -> tuple[CampaignConfig, Paths]:
    """Each stack's import path resolved against the model's framework (a path that cannot
    take this model is the user's error: exit 2) and one program per path. A path that
    fails to convert or import leaves its stacks out, not the campaign."""
    import dataclasses

    from ..errors import ModelError
    from ..frameworks import resolve_via
    from ..loading import load_source_isolated, program_from_source

    # TensorFlow models are converted in a worker: this process may import torchvision later.
    asked = tuple(dict.fromkeys(config.stack_via(s) for s in config.stacks))
    source, failed_conversions = load_source_isolated(config.model, config.pretrained, config.preset, asked,
                                                      config.trusted)
    stacks, programs, failed = [], {}, {}
    for stack in config.stacks:
        via = resolve_via(source.framework, config.stack_via(stack), who=f"stack {stack.name!r}")
        stacks.append(dataclasses.replace(stack, via=via))
        if via in programs or via in failed:
            continue
        if config.stack_via(stack) in failed_conversions:  # converted (and failed) in the worker
            failed[via] = failed_conversions[config.stack_via(stack)]
            continue
        try:
            programs[via] = program_from_source(source, via)
        except ModelError as err:
            failed[via] = str(err)
    return dataclasses.replace(config, stacks=stacks), Paths(programs, failed)


def plan_paths(config: CampaignConfig, paths: Paths):
    """Mutants enumerated on each path's own program, and one plan over all stacks. With
    several paths, mutant ids carry the path (``tflite/OPERATOR#SITE``): the same operator
    and site mean different code on different programs."""
    import dataclasses

    several = len(paths.programs) > 1
    found, parts = [], []
    for via, program in paths.programs.items():
        mutants = enumerate_selected(program, config)
        if several:
            mutants = [dataclasses.replace(m, id=f"{via}/{m.id}") for m in mutants]
        found += [(m, via) for m in mutants]
        parts.append(make_plan(program, config, mutants, [s for s in config.stacks if s.via == via]))
    return found, Plan.merge(parts)


def image_truth(config: CampaignConfig, program, images):
    """The images' class indices, or None without labels; a criterion on accuracy needs them."""
    from operators.criteria import needs_labels

    from ..compare import label_indices
    from ..errors import ConfigError

    truth = label_indices(images, program.labels)
    if truth is None and needs_labels(config.criterion):
        raise ConfigError(f"config key 'kill.criterion': {config.criterion} needs labelled images; "
                          f"{config.images!r} has none that name the model's classes")
    return truth


def load_reference(config: CampaignConfig, program, images, out_dir: Path) -> None:
    """``[run] reference``: saved outputs of this model and image set (refused otherwise,
    in one line), stored in the run folder as the outputs every mutant is judged against."""
    if not config.reference:
        return
    from ..golden import parse_saved_baseline

    saved = parse_saved_baseline(config.reference, "config key 'run.reference':")
    for note in saved.check(program.source, config.pretrained, config.images, images):
        print(f"note: {note}", file=sys.stderr)
    output = saved.result().output
    rundir.save_outputs(out_dir, rundir.REFERENCE_KEY, output.logits, output.latencies)


ORIGINAL_FAILED = "original program "  # how a pair crashed by its stack's original begins


class Orchestrator:
    """Runs the pending artifacts (originals first) and records each one as it finishes."""

    def __init__(self, config: CampaignConfig, plan: Plan, store: ResultStore, out_dir: Path, workers: int,
                 client, quiet: bool, truth=None):
        self.config, self.plan, self.store, self.out_dir = config, plan, store, out_dir
        self.truth = truth  # the images' class indices (accuracy_drop criteria), None without labels
        self.workers, self.client, self.quiet = workers, client, quiet
        self.finished = store.finished_artifacts()
        self.counts = {v: 0 for v in Verdict}
        self.outputs_cache: dict[str, dict] = {}
        self.failed: dict[str, str] = {}  # stack -> why its original failed: its pairs are crashed, not built
        # What each stack's mutants are judged against: its original, or the saved reference.
        self.judge_keys = rundir.judge_keys(config, plan.originals)

    def run(self) -> None:
        original_keys = self.plan.original_keys
        pending_originals = [k for k in original_keys if k not in self.finished]
        pending_mutants = _full_builds_first(
            self.plan, [k for k in self.plan.artifacts if k not in self.finished and k not in original_keys])
        total = len(pending_originals) + len(pending_mutants)
        done_before = len(self.plan.artifacts) - total
        if done_before:
            say(self.quiet, f"resuming: {done_before} of {len(self.plan.artifacts)} builds already done")
        for row in self.store.verdicts():
            self.counts[Verdict(row["verdict"])] += 1
        bar = _progress(total, self.quiet)
        try:
            self._run_keys(pending_originals, bar, originals=True)
            self._check_originals()
            self._warn_unstable_originals()
            # Verdicts whose artifact finished earlier (a resumed run, or another stack's original).
            self._judge_pending_pairs()
            useful = [k for k in pending_mutants if any(s not in self.failed for _, s in self.plan.artifacts[k].pairs)]
            bar.total -= len(pending_mutants) - len(useful)
            self._run_keys(useful, bar, originals=False)
        finally:
            bar.close()

    def _check_originals(self) -> None:
        """A stack whose original failed (build or run) cannot judge its mutants: each of its
        pairs is `crashed` with the original's line, and the campaign goes on with the other
        stacks; it stops only when every stack's original failed."""
        failed = self.failed_originals()
        self.failed = failed
        if failed and len(failed) == len(self.plan.originals):
            raise CampaignError("the original program failed on every stack: "
                                + "; ".join(f"{s}: {r}" for s, r in failed.items()))
        rows = []
        for stack, reason in failed.items():
            print(f"warning: stack {stack!r}: {reason}; its mutants are recorded as crashed", file=sys.stderr)
            rows += [VerdictRow(m, s, Verdict.CRASHED, reason, key) for (m, s), key in self.plan.pairs.items()
                     if s == stack]
        if rows:
            self.store.record_verdicts([r.to_store() for r in rows])
            self._count(rows)

    def _warn_unstable_originals(self) -> None:
        """An original whose repeated passes differ is said before any mutant is judged:
        each verdict on its stack compares with a moving reference."""
        moving = rundir.unstable_originals(self.plan.originals, self.finished)
        if not moving:
            return
        method = self.config.passes.method if self.config.passes is not None else "first"
        how = ("the statistical verdict counts its variation as noise" if method == "statistical"
               else f"verdicts there ({method} pass verdict) are judged against a moving reference")
        print(f"warning: the original program is non-deterministic: its outputs changed between repeated runs on "
              f"{', '.join(moving)}; {how}", file=sys.stderr)

    def failed_originals(self) -> dict[str, str]:
        """Stack -> why its original failed (nothing for stacks whose original ran)."""
        out = {}
        for stack, key in self.plan.originals.items():
            info = self.finished.get(key, {})
            if info.get("status") != "done":
                out[stack] = f"{ORIGINAL_FAILED}{info.get('status', 'not run')}: {info.get('reason', '')}"
        return out

    def _run_keys(self, keys: list[str], bar, originals: bool) -> None:
        if not keys:
            return
        from .dispatch import run_dask, run_local

        jobs = [make_job(self.plan.artifacts[k], self.config, self.out_dir,
                         self.judge_keys[self.plan.artifacts[k].stack.name]) for k in keys]
        if self.client is not None:
            results = run_dask(self.client, jobs, self.config.timeout_s)
        else:
            results = run_local(jobs, self.workers, self.config.timeout_s)
        for result in results:
            self._record(keys[result.index], result, originals)
            bar.set_postfix_str(self._postfix(), refresh=False)
            bar.update(1)

    def _record(self, key: str, result: JobResult, original: bool) -> None:
        """Store one finished build with the verdicts it settles, in one transaction."""
        artifact = self.plan.artifacts[key]
        check_internal(key, artifact, result, self.out_dir)
        info = {"key": key, "stack": artifact.stack.name, "status": result.status.value, "reason": result.reason,
                "log_tail": result.log_tail, "build_s": None, "run_s": None, "outputs": None,
                "unstable_images": None, "build_info": {"cached": True} if result.cached else result.build_info,
                "images_run": result.images_run}
        if result.ok:
            path = rundir.save_outputs(self.out_dir, key, result.logits, result.latencies, result.passes)
            self.outputs_cache[key] = {"logits": result.logits, "latencies": result.latencies,
                                       **({} if result.passes is None else {"passes": result.passes})}
            info.update(build_s=round(result.build_s, 4), run_s=round(result.run_s, 4),
                        outputs=str(path.relative_to(self.out_dir)), unstable_images=result.unstable_images)
        elif result.status is JobStatus.EQUIVALENT:  # built, found equivalent, never run
            info.update(build_s=round(result.build_s, 4), run_s=0.0)
        if original and not result.ok:
            # Not stored: the campaign stops, and a rerun tries the original again.
            self.finished[key] = info
            return
        rows = [] if original else [self._judge(pair, info) for pair in artifact.pairs if pair[1] not in self.failed]
        self.store.record_artifact(info, [r.to_store() for r in rows], rundir.now())
        self.finished[key] = info
        self._count(rows)

    def _judge_pending_pairs(self) -> None:
        # A pair crashed because its original failed in an earlier run is judged again once it ran.
        judged = {(r["mutant_id"], r["stack"]) for r in self.store.verdicts()
                  if r["stack"] in self.failed or not (r["reason"] or "").startswith(ORIGINAL_FAILED)}
        rows = [self._judge(pair, self.finished[key]) for pair, key in self.plan.pairs.items()
                if pair not in judged and key in self.finished and pair[1] not in self.failed]
        if rows:
            self.store.record_verdicts([r.to_store() for r in rows])
            self._count(rows)

    def _judge(self, pair: tuple[str, str], info: dict) -> VerdictRow:
        if info["status"] != "done":
            return judge_failure(pair, info)
        ref = self._reference(pair[1])
        return judge_outputs(pair, info, ref, self._outputs(info["key"]), self.config.criterion, self.truth,
                             self.config.passes)

    def _reference(self, stack: str) -> dict:
        """The outputs ``stack``'s mutants are judged against. A saved reference borrows the
        original's passes (all of them) as the noise a statistical verdict measures."""
        original = self._outputs(self.plan.originals[stack])
        if not self.config.reference:
            return original
        key = f"{rundir.REFERENCE_KEY}@{stack}"  # built once per stack, not once per judged pair
        if key in self.outputs_cache:
            return self.outputs_cache[key]
        ref = dict(self._outputs(rundir.REFERENCE_KEY))
        if ref["logits"].shape != original["logits"].shape:
            raise CampaignError(f"config key 'run.reference': the saved outputs are {ref['logits'].shape[0]} images x "
                                f"{ref['logits'].shape[1]} classes; the original on stack {stack!r} gives "
                                f"{original['logits'].shape[0]} x {original['logits'].shape[1]}")
        if "passes" in original:
            ref["passes"] = np.concatenate([original["logits"][None], original["passes"]])
        self.outputs_cache[key] = ref
        return ref

    def _outputs(self, key: str) -> dict:
        if key not in self.outputs_cache:
            self.outputs_cache[key] = rundir.load_outputs(self.out_dir, key)
        return self.outputs_cache[key]

    def _count(self, rows: list[VerdictRow]) -> None:
        for row in rows:
            self.counts[row.verdict] += 1

    def _postfix(self) -> str:
        return " ".join(f"{v.value}={self.counts[v]}" for v in PROGRESS)


def check_internal(key: str, artifact: Artifact, result: JobResult, out_dir: Path) -> None:
    """MutateNN's own failure in a job (internal_error) stops the campaign, naming the job:
    it is no verdict of the mutant's."""
    if result.status is not JobStatus.INTERNAL_ERROR:
        return
    program = f"{artifact.operator}#{artifact.site}" if artifact.operator else "the original program"
    settles = ", ".join(f"{m}@{s}" for m, s in artifact.pairs) or "no verdict"
    raise CampaignError(f"internal error in job {key} ({program} on stack {artifact.stack.name!r}, settling "
                        f"{settles}): {result.reason}; log: {out_dir / 'logs' / f'{key}.log'}")


class Rejudge:
    """``[run] rejudge_unstable = "bounds_check"``: after the campaign, each mutant × stack
    pair flagged unstable (its repeated runs differed) is rebuilt with bounds checks
    (`mutatenn.bounds`, `mutatenn.poison`) and run again. A check that fires makes its
    verdict (``memory_error``, ``uninitialized_read``); otherwise the verdict stays. Either way the reason says so and keeps
    the first verdict (`judge.judge_rejudged`). Each rebuild is an artifact of its own
    (the pair's build options plus ``bounds_check``), stored like any other: a resumed run
    does not build it again, and builds.csv lists it. Pairs on non-LLVM stacks stay as they are."""

    def __init__(self, orchestrator: Orchestrator):
        self.orc = orchestrator

    def candidates(self) -> tuple[dict[str, Artifact], list[tuple[str, str]]]:
        """(rebuild key -> its artifact, the unstable pairs on stacks that cannot be checked)."""
        orc = self.orc
        stacks = {s.name: s for s in orc.config.stacks}
        chosen: dict[str, Artifact] = {}
        left: list[tuple[str, str]] = []
        for stored in orc.store.verdicts():
            row = VerdictRow.from_store(stored)
            pair = (row.mutant_id, row.stack)
            if row.unstable != 1 or not row.verdict.is_judged or is_rejudged(row) or pair not in orc.plan.pairs:
                continue
            stack = stacks[row.stack]
            if stack.target.spec["kind"] != "llvm":
                left.append(pair)
                continue
            built = orc.plan.artifacts[orc.plan.pairs[pair]]
            options = built.options.with_overrides({"bounds_check": True})
            key = artifact_key(built.program_hash, stack, options)
            if key not in chosen:
                chosen[key] = Artifact(key, stack, options, built.program_hash, built.operator, built.site)
            chosen[key].pairs.append(pair)
        return chosen, left

    def run(self) -> None:
        orc = self.orc
        chosen, left = self.candidates()
        if left:
            print(f"warning: {len(left)} unstable pair(s) on non-LLVM stacks are not rejudged (bounds checks are "
                  "for CPU code)", file=sys.stderr)
        if not chosen:
            return
        for key, artifact in chosen.items():  # builds.csv lists the checked rebuilds
            if key in orc.plan.artifacts:  # a bounds-checked stack's own build: settles these too
                orc.plan.artifacts[key].pairs.extend(p for p in artifact.pairs if p not in orc.plan.artifacts[key].pairs)
            else:
                orc.plan.artifacts[key] = artifact
        pairs = sum(len(a.pairs) for a in chosen.values())
        say(orc.quiet, f"rejudging {pairs} unstable mutant x stack pair(s) with bounds checks: {len(chosen)} builds")
        finished = orc.store.finished_artifacts()
        for key in [k for k in chosen if k in finished]:  # built by an interrupted run
            self._record(chosen[key].pairs, finished[key], store=False)
        keys = [k for k in chosen if k not in finished]
        if not keys:
            return
        from .dispatch import run_dask, run_local

        jobs = [make_job(chosen[k], orc.config, orc.out_dir) for k in keys]  # no original key: no fast kill
        results = (run_dask(orc.client, jobs, orc.config.timeout_s) if orc.client is not None
                   else run_local(jobs, orc.workers, orc.config.timeout_s))
        bar = _progress(len(keys), orc.quiet)
        try:
            for result in results:
                key = keys[result.index]
                check_internal(key, chosen[key], result, orc.out_dir)
                info = {"key": key, "stack": chosen[key].stack.name, "status": result.status.value,
                        "reason": result.reason, "log_tail": result.log_tail, "build_s": result.build_s,
                        "run_s": result.run_s, "outputs": None, "unstable_images": result.unstable_images,
                        "build_info": {"cached": True} if result.cached else result.build_info,
                        "images_run": result.images_run}
                if result.ok:
                    path = rundir.save_outputs(orc.out_dir, key, result.logits, result.latencies)
                    info["outputs"] = str(path.relative_to(orc.out_dir))
                self._record(chosen[key].pairs, info, store=True)
                bar.update(1)
        finally:
            bar.close()

    def _record(self, pairs: list, info: dict, store: bool) -> None:
        """The rebuilt pairs judged again (`judge_rejudged`), stored with the build in one transaction."""
        orc = self.orc
        key = info["key"]
        current = {(r["mutant_id"], r["stack"]): VerdictRow.from_store(r) for r in orc.store.verdicts()}
        before = [current[p] for p in pairs if p in current and not is_rejudged(current[p])]
        rows = [judge_rejudged(row, info) for row in before]
        if store:
            orc.store.record_artifact(info, [r.to_store() for r in rows], rundir.now())
        elif rows:
            orc.store.record_verdicts([r.to_store() for r in rows])
        orc.finished[key] = info
        for old, new in zip(before, rows):
            orc.counts[old.verdict] -= 1
            orc.counts[new.verdict] += 1


def _full_builds_first(plan, keys: list[str]) -> list[str]:
    """Builds with their own options (pass mutants) compile every kernel and run slowest:
    started first, they do not leave one worker busy at the end while the others idle."""
    def shares(key: str) -> bool:
        artifact = plan.artifacts[key]
        return artifact.options.key() == artifact.stack.options.key()

    return sorted(keys, key=shares)  # stable: enumeration order within each group


def _progress(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="builds", unit="build", file=sys.stderr, disable=quiet or total == 0,
                dynamic_ncols=True, smoothing=0.1)


def say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr)
