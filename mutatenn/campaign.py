"""A mutation campaign: the original program and its mutants, built for every stack, run
over an image set, compared with the original on the same stack, judged, stored, scored.

The unit of work is an *artifact*: one program built for one target with one set of
build options, keyed by the structural hash of the lowered module + target + options.
The original on each stack, every mutant with the same hash, and every pass mutant
whose build options coincide with another stack's are all one artifact, built and run
once. Verdicts are decided in the coordinator from the stored outputs.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .build import BuildOptions
from .config import FAULT_KINDS, CampaignConfig, StackSpec
from .errors import UserError
from .outputs import prepare_out_dir, write_csv, write_json
from .store import ResultStore

KILLED, SURVIVED, CRASHED, TIMED_OUT = "killed", "survived", "crashed", "timed_out"
NON_VIABLE, EQUIVALENT = "non_viable", "equivalent"
VERDICTS = (KILLED, SURVIVED, CRASHED, TIMED_OUT, NON_VIABLE, EQUIVALENT)
SCORED = (KILLED, SURVIVED, CRASHED, TIMED_OUT)
METRICS = ("top1_agreement", "topk_overlap", "kendall_tau", "rbo", "max_abs_error", "rel_l2", "cosine",
           "latency_ratio")
VERDICT_COLUMNS = ["mutant_id", "operator", "level", "site", "stack", "verdict", "reason", *METRICS, "flipped",
                   "build_s", "run_s", "log_tail", "unstable"]
DIFF_CHARS = 20000
ORIGINAL = "original"


class CampaignError(UserError):
    """The campaign cannot go on (the original program fails on a stack): exit 1."""

    exit_code = 1


@dataclass
class Artifact:
    """One build: a program (original or mutant) for one target with one set of options."""

    key: str
    stack: StackSpec  # the first stack that needs it (its target; options may differ)
    options: BuildOptions
    program_hash: str
    operator: str = ""  # empty: the original program
    site: int = 0
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (mutant id, stack name) it settles


@dataclass
class Plan:
    mutants: list  # mutators.Mutant, in enumeration order
    originals: dict[str, str]  # stack name -> artifact key
    artifacts: dict[str, Artifact]
    pairs: dict[tuple[str, str], str]  # (mutant id, stack name) -> artifact key
    fixed: list[dict]  # verdict rows decided without building (equivalent, non_viable)


@dataclass
class CampaignResult:
    out_dir: Path
    scores: pd.DataFrame
    verdicts: pd.DataFrame
    report: Path | None
    report_error: str = ""


# ------------------------------------------------------------------ planning

def artifact_key(program_hash: str, stack: StackSpec, options: BuildOptions) -> str:
    target = stack.target
    text = f"{program_hash}|{target.name}|{target.key()}|{options.key()}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def enumerate_selected(program, config: CampaignConfig) -> list:
    """Mutants of every chosen operator with its own site selection, in catalogue order."""
    import mutators

    by_selection: dict = {}
    for name, selection in config.operators.items():
        by_selection.setdefault(selection, []).append(name)
    found = {}
    for selection, names in by_selection.items():
        for m in mutators.enumerate_mutants(program.mod, operators=names, selection=selection, with_diff=True):
            found[m.id] = m
    order = {op.name: i for i, op in enumerate(mutators.catalogue())}
    return sorted(found.values(), key=lambda m: (order[m.operator], m.site_index))


def make_plan(program, config: CampaignConfig, mutants: list) -> Plan:
    from mutators.base import lower, structural_hash_hex

    original_hash = structural_hash_hex(lower(program.mod))
    artifacts: dict[str, Artifact] = {}
    originals, pairs, fixed = {}, {}, []

    def need(program_hash, stack, options, operator="", site=0) -> str:
        key = artifact_key(program_hash, stack, options)
        if key not in artifacts:
            artifacts[key] = Artifact(key, stack, options, program_hash, operator, site)
        return key

    for stack in config.stacks:
        originals[stack.name] = need(original_hash, stack, stack.options)
    for m in mutants:
        for stack in config.stacks:
            if m.status in (NON_VIABLE, EQUIVALENT):
                fixed.append(_fixed_row(m.id, stack.name, m.status, m.reason))
                continue
            if m.level == "pass":
                options = stack.options.with_overrides(m.build_options)
                if options.key() == stack.options.key():
                    fixed.append(_fixed_row(m.id, stack.name, EQUIVALENT,
                                            f"builds exactly as the stack does ({options.label()} = "
                                            f"{stack.options.label()})"))
                    continue
                key = need(original_hash, stack, options)
            else:
                key = need(m.hash, stack, stack.options, m.operator, m.site_index)
            artifacts[key].pairs.append((m.id, stack.name))
            pairs[(m.id, stack.name)] = key
    return Plan(mutants, originals, artifacts, pairs, fixed)


def _fixed_row(mutant_id: str, stack: str, verdict: str, reason: str) -> dict:
    return {"mutant_id": mutant_id, "stack": stack, "verdict": verdict, "reason": reason, "artifact": None,
            "values": {}, "flipped": None, "flipped_images": [], "build_s": None, "run_s": None, "log_tail": "",
            "unstable": None, "unstable_images": None}


def _job(artifact: Artifact, config: CampaignConfig, out_dir: Path) -> dict:
    fault = ""
    for kind in FAULT_KINDS:
        wanted = config.faults.get(kind, set())
        if any(mid in wanted or f"{mid}@{stack}" in wanted for mid, stack in artifact.pairs):
            fault = kind
    options = artifact.options
    return {
        "key": artifact.key, "model": config.model, "pretrained": config.pretrained, "preset": config.preset,
        "images": config.images, "operator": artifact.operator, "site": artifact.site,
        "hash": artifact.program_hash if artifact.operator else "", "target": artifact.stack.target_name,
        "options": {"opt_level": options.opt_level, "disabled_pass": list(options.disabled_pass),
                    "required_pass": list(options.required_pass), "fast_math": options.fast_math},
        "cache_dir": str(out_dir / "cache") if config.keep_artifacts else "", "log_path": str(out_dir / "logs" / f"{artifact.key}.log"),
        "fault": fault, "repeats": config.repeats,
    }


# ------------------------------------------------------------------ running

def open_run_folder(out_dir: Path, config: CampaignConfig) -> ResultStore:
    """A new folder, or the folder of an interrupted run of the same config (resumed)."""
    out_dir = Path(out_dir)
    store_path = out_dir / "results.sqlite"
    resuming = store_path.is_file()
    prepare_out_dir(out_dir, allow_existing=resuming)
    store = ResultStore(store_path)
    stored = store.get_meta("fingerprint")
    if stored is None:
        store.set_meta("fingerprint", config.fingerprint())
        store.set_meta("config", config.raw)
        store.set_meta("started", _now())
    elif stored != config.fingerprint():
        store.close()
        raise UserError(f"output folder {str(out_dir)!r} holds a campaign with a different config; "
                        "rerun with the same config to resume it, or choose a new --out")
    return store


def run_campaign(config: CampaignConfig, out_dir: Path, jobs: int | None = None, scheduler: str | None = None,
                 quiet: bool = False, render: bool = True) -> CampaignResult:
    """Plan, run (resuming what a previous run left), judge, store and write the run folder."""
    from .execute import cached_images, cached_program

    clock = time.perf_counter()
    workers = jobs or config.jobs
    if workers < 1:
        raise UserError("--jobs must be at least 1")
    client = None
    if scheduler:
        from .dispatch import connect

        client = connect(scheduler)
    out_dir = Path(out_dir)
    store = open_run_folder(out_dir, config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = cached_program(config.model, config.pretrained, config.preset)
            images = cached_images(config.images)
        _say(quiet, f"planning: {program.name}, {len(images)} images, {len(config.stacks)} stacks")
        mutants = enumerate_selected(program, config)
        plan = make_plan(program, config, mutants)
        store.record_mutants([_mutant_record(i, m) for i, m in enumerate(mutants)])
        store.record_verdicts(plan.fixed)
        _say(quiet, f"{len(mutants)} mutants ({sum(m.status == 'pending' for m in mutants)} to build) x "
                    f"{len(config.stacks)} stacks = {len(plan.artifacts)} distinct builds "
                    f"(originals included)")
        runner = _Runner(config, plan, store, out_dir, workers, client, quiet)
        runner.run()
        store.set_meta("finished", _now())
        # A resumed run adds its time to what the interrupted runs spent.
        elapsed = (store.get_meta("duration_s") or 0) + (time.perf_counter() - clock)
        store.set_meta("duration_s", round(elapsed, 3))
        verdicts, scores = write_outputs(out_dir, config, program, images, plan, store)
        moving = unstable_originals(plan, store.finished_artifacts())
        if moving:
            print(f"warning: the original program's outputs changed between repeated runs on "
                  f"{', '.join(moving)}; verdicts there are judged against a moving reference", file=sys.stderr)
    finally:
        store.close()
        if client is not None:
            client.close()
    report, report_error = None, ""
    if render:
        report, report_error = render_run_report(out_dir)
    return CampaignResult(out_dir, scores, verdicts, report, report_error)


class _Runner:
    """Runs the pending artifacts (originals first) and records each one as it finishes."""

    def __init__(self, config, plan: Plan, store: ResultStore, out_dir: Path, workers: int, client, quiet: bool):
        self.config, self.plan, self.store, self.out_dir = config, plan, store, out_dir
        self.workers, self.client, self.quiet = workers, client, quiet
        self.finished = store.finished_artifacts()
        self.counts = {v: 0 for v in VERDICTS}
        self.outputs_cache: dict[str, dict] = {}

    def run(self) -> None:
        original_keys = list(dict.fromkeys(self.plan.originals.values()))
        mutant_keys = [k for k in self.plan.artifacts if k not in set(original_keys)]
        pending_originals = [k for k in original_keys if k not in self.finished]
        pending_mutants = [k for k in mutant_keys if k not in self.finished]
        total = len(pending_originals) + len(pending_mutants)
        done_before = len(self.plan.artifacts) - total
        if done_before:
            _say(self.quiet, f"resuming: {done_before} of {len(self.plan.artifacts)} builds already done")
        for row in self.store.verdicts():
            self.counts[row["verdict"]] = self.counts.get(row["verdict"], 0) + 1
        bar = _progress(total, self.quiet)
        try:
            self._run_keys(pending_originals, bar, originals=True)
            failed = [(s, self.finished[k]) for s, k in self.plan.originals.items()
                      if self.finished.get(k, {}).get("status") != "done"]
            if failed:
                stack, info = failed[0]
                raise CampaignError(f"the original program failed on stack {stack!r} "
                                    f"({info.get('status', 'not run')}: {info.get('reason', '')}); "
                                    "its mutants cannot be judged")
            # Verdicts whose artifact finished earlier (a resumed run, or another stack's original).
            self._judge_pending_pairs()
            self._run_keys(pending_mutants, bar, originals=False)
        finally:
            bar.close()

    def _run_keys(self, keys: list[str], bar, originals: bool) -> None:
        if not keys:
            return
        from .dispatch import run_dask, run_local

        jobs = [_job(self.plan.artifacts[k], self.config, self.out_dir) for k in keys]
        if self.client is not None:
            results = run_dask(self.client, jobs, self.config.timeout_s)
        else:
            results = run_local(jobs, self.workers, self.config.timeout_s)
        for result in results:
            self._record(keys[result.index], result, originals)
            bar.set_postfix_str(self._postfix(), refresh=False)
            bar.update(1)

    def _record(self, key: str, result, original: bool) -> None:
        artifact = self.plan.artifacts[key]
        info = {"key": key, "stack": artifact.stack.name, "status": result.status, "reason": result.reason,
                "log_tail": result.log_tail, "build_s": None, "run_s": None, "outputs": None,
                "unstable_images": None}
        if result.status == "done":
            value = result.value
            path = self.out_dir / "outputs" / f"{key}.npz"
            _save_outputs(path, value["logits"], value["latencies"])
            self.outputs_cache[key] = {"logits": value["logits"], "latencies": value["latencies"]}
            info.update(build_s=round(value["build_s"], 4), run_s=round(value["run_s"], 4),
                        outputs=str(path.relative_to(self.out_dir)), unstable_images=value.get("unstable_images"))
        if original and result.status != "done":
            # Not stored: the campaign stops, and a rerun tries the original again.
            self.finished[key] = info
            return
        rows = [] if original else [self._judge(pair, info) for pair in artifact.pairs]
        self.store.record_artifact(info, rows, _now())
        self.finished[key] = info
        for row in rows:
            self.counts[row["verdict"]] += 1

    def _judge_pending_pairs(self) -> None:
        judged = {(r["mutant_id"], r["stack"]) for r in self.store.verdicts()}
        rows = []
        for pair, key in self.plan.pairs.items():
            if pair not in judged and key in self.finished:
                rows.append(self._judge(pair, self.finished[key]))
        if rows:
            self.store.record_verdicts(rows)
            for row in rows:
                self.counts[row["verdict"]] += 1

    def _outputs(self, key: str) -> dict:
        if key not in self.outputs_cache:
            with np.load(self.out_dir / "outputs" / f"{key}.npz") as data:
                self.outputs_cache[key] = {"logits": data["logits"], "latencies": data["latencies"]}
        return self.outputs_cache[key]

    def _judge(self, pair: tuple[str, str], info: dict) -> dict:
        import operators

        mutant_id, stack = pair
        row = {"mutant_id": mutant_id, "stack": stack, "artifact": info["key"], "values": {}, "flipped": None,
               "flipped_images": [], "build_s": info["build_s"], "run_s": info["run_s"], "log_tail": "",
               "unstable": None, "unstable_images": None}
        if info["status"] != "done":
            row.update(verdict=info["status"], reason=info["reason"], log_tail=info["log_tail"] or "")
            return row
        ref = self._outputs(self.plan.originals[stack])
        out = self._outputs(info["key"])
        with np.errstate(all="ignore"):
            values = operators.compare_outputs(ref["logits"], out["logits"], ref["latencies"], out["latencies"])
            flipped = np.flatnonzero(operators.flipped_images(ref["logits"], out["logits"]))
        values = {k: float(v) for k, v in values.items()}
        killed = self.config.criterion.is_killed(values)
        value = values[self.config.criterion.operator]
        reason = f"{self.config.criterion.operator} = {value:.6g} (killed when {self.config.criterion})"
        row.update(verdict=KILLED if killed else SURVIVED, reason=reason if killed else "", values=values,
                   flipped=int(len(flipped)), flipped_images=[int(i) for i in flipped])
        unstable = info.get("unstable_images")
        if unstable is not None:
            row.update(unstable=int(bool(unstable)), unstable_images=list(unstable))
        return row

    def _postfix(self) -> str:
        c = self.counts
        return f"killed={c[KILLED]} survived={c[SURVIVED]} crashed={c[CRASHED]} timed_out={c[TIMED_OUT]}"


def _progress(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="builds", unit="build", file=sys.stderr, disable=quiet or total == 0,
                dynamic_ncols=True, smoothing=0.1)


def _save_outputs(path: Path, logits, latencies) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, logits=np.asarray(logits, dtype=np.float32), latencies=np.asarray(latencies, dtype=np.float64))
    os.replace(tmp, path)


def _mutant_record(ordinal: int, m) -> dict:
    diff = m.diff_text or ""
    if len(diff) > DIFF_CHARS:
        diff = diff[:DIFF_CHARS] + f"\n… ({len(m.diff_text) - DIFF_CHARS} more characters)"
    return {"id": m.id, "ordinal": ordinal, "operator": m.operator, "level": m.level, "site_index": m.site_index,
            "site": m.site, "status": m.status, "reason": m.reason, "hash": m.hash,
            "build_options": json.dumps(m.build_options, sort_keys=True), "diff": diff}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr)


# ------------------------------------------------------------------ outputs

def verdict_table(store: ResultStore, stack_order: list[str]) -> pd.DataFrame:
    mutants = {m["id"]: m for m in store.mutants()}
    rows = []
    for v in store.verdicts():
        m = mutants.get(v["mutant_id"])
        if m is None:
            continue
        row = {"mutant_id": v["mutant_id"], "operator": m["operator"], "level": m["level"], "site": m["site"],
               "stack": v["stack"], "verdict": v["verdict"], "reason": v["reason"]}
        for name in METRICS:
            value = v["values"].get(name)
            row[name] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        row.update(flipped=v["flipped"], build_s=v["build_s"], run_s=v["run_s"], log_tail=v["log_tail"],
                   unstable=v["unstable"], _ordinal=m["ordinal"], _stack=stack_order.index(v["stack"]) if v["stack"] in stack_order else 99)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=VERDICT_COLUMNS + ["_ordinal", "_stack"])
    frame = frame.sort_values(["_ordinal", "_stack"], kind="stable").drop(columns=["_ordinal", "_stack"])
    frame["flipped"] = frame["flipped"].astype("Int64")
    frame["unstable"] = frame["unstable"].astype("Int64")  # empty: not measured (repeats = 1, or not run)
    return frame.reset_index(drop=True)


def score_table(verdicts: pd.DataFrame, stack_order: list[str]) -> pd.DataFrame:
    """Verdict counts and mutation score per stack: overall, per operator, per level."""
    rows = []
    for stack in stack_order:
        part = verdicts[verdicts["stack"] == stack]
        groups = [("all", "all", part)]
        groups += [("operator", name, g) for name, g in part.groupby("operator", sort=False)]
        groups += [("level", name, g) for name, g in part.groupby("level", sort=False)]
        for group, key, g in groups:
            counts = {v: int((g["verdict"] == v).sum()) for v in VERDICTS}
            denom = sum(counts[v] for v in SCORED)
            score = round(100.0 * counts[KILLED] / denom, 2) if denom else None
            measured = g["unstable"].dropna()
            unstable = int((measured == 1).sum()) if len(measured) else None  # None: not measured
            rows.append({"stack": stack, "group": group, "key": key, **counts, "score": score, "unstable": unstable})
    frame = pd.DataFrame(rows, columns=["stack", "group", "key", *VERDICTS, "score", "unstable"])
    frame["unstable"] = frame["unstable"].astype("Int64")
    return frame


def discrepancy_table(verdicts: pd.DataFrame, stack_order: list[str]) -> pd.DataFrame:
    """Mutants built and judged on several stacks with different outcomes there (killed on
    one, survived or crashed on another: the backend view). A pass mutant that is
    equivalent on the stack whose options it repeats is not a discrepancy. ``unstable_on``
    names the stacks where the mutant's outputs changed between repeated runs (its verdict
    there may be noise rather than the stack)."""
    if verdicts.empty:
        return pd.DataFrame(columns=["mutant_id", "operator", "level", "site", *stack_order, "unstable_on"])
    wide = verdicts.pivot(index="mutant_id", columns="stack", values="verdict")
    wide = wide.reindex(columns=[s for s in stack_order if s in wide.columns])
    differ = wide[wide.apply(lambda row: len({v for v in row if v in SCORED}) > 1, axis=1)]
    info = verdicts.drop_duplicates("mutant_id").set_index("mutant_id")[["operator", "level", "site"]]
    order = verdicts.drop_duplicates("mutant_id")["mutant_id"].tolist()
    table = info.join(differ, how="inner").reindex([m for m in order if m in differ.index])
    flagged = verdicts[verdicts["unstable"].fillna(0) == 1]
    unstable_on = flagged.groupby("mutant_id", sort=False)["stack"].agg(lambda s: ",".join(s))
    table["unstable_on"] = unstable_on.reindex(table.index).fillna("")
    return table.reset_index().rename(columns={"index": "mutant_id"})


def per_image_table(verdicts: pd.DataFrame, store: ResultStore, plan: Plan, out_dir: Path, images, labels,
                    cap: int) -> pd.DataFrame:
    """Top-5 of original and mutant per image; flipped images first, at most ``cap`` per mutant × stack."""
    from .compare import softmax

    judged = {(v["mutant_id"], v["stack"]): v for v in store.verdicts() if v["verdict"] in (KILLED, SURVIVED)}
    loaded: dict[str, tuple] = {}

    def top5(key: str):
        if key not in loaded:
            with np.load(out_dir / "outputs" / f"{key}.npz") as data:
                logits = data["logits"]
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # an all-NaN row of a broken mutant is expected here
                probs = softmax(logits)
            order = np.argsort(-np.nan_to_num(logits, nan=-np.inf), axis=1, kind="stable")[:, :5]
            loaded[key] = (probs, order)
        return loaded[key]

    def as_json(probs, order, i) -> str:
        return json.dumps([[labels[c] if c < len(labels) else str(c), round(float(probs[i, c]), 5)]
                           for c in (int(x) for x in order[i])])

    rows = []
    if cap <= 0:
        return pd.DataFrame(rows, columns=["mutant_id", "stack", "image", "original_top5", "mutant_top5", "flipped"])
    for r in verdicts.itertuples(index=False):
        v = judged.get((r.mutant_id, r.stack))
        if v is None:
            continue
        flipped = set(v["flipped_images"])
        chosen = sorted(flipped)[:cap]
        chosen += [i for i in range(len(images)) if i not in flipped][: cap - len(chosen)]
        op, oo = top5(plan.originals[r.stack])
        mp, mo = top5(v["artifact"])
        for i in chosen:
            rows.append({"mutant_id": r.mutant_id, "stack": r.stack, "image": images.names[i],
                         "original_top5": as_json(op, oo, i), "mutant_top5": as_json(mp, mo, i),
                         "flipped": i in flipped})
    return pd.DataFrame(rows, columns=["mutant_id", "stack", "image", "original_top5", "mutant_top5", "flipped"])


def write_outputs(out_dir: Path, config: CampaignConfig, program, images, plan: Plan, store: ResultStore):
    from .images import thumbnail_uri

    stack_order = [s.name for s in config.stacks]
    verdicts = verdict_table(store, stack_order)
    scores = score_table(verdicts, stack_order)
    mutants = [{"id": m["id"], "operator": m["operator"], "level": m["level"], "site": m["site"],
                "site_index": m["site_index"], "status": m["status"], "reason": m["reason"], "hash": m["hash"],
                "build_options": json.loads(m["build_options"]), "diff": m["diff"]} for m in store.mutants()]
    write_json(out_dir / "mutants.json", mutants)
    write_csv(out_dir / "verdicts.csv", verdicts)
    write_csv(out_dir / "per_image.csv", per_image_table(verdicts, store, plan, out_dir, images, program.labels,
                                                        config.per_image_cap))
    write_csv(out_dir / "scores.csv", scores)
    write_csv(out_dir / "discrepancies.csv", discrepancy_table(verdicts, stack_order))
    write_json(out_dir / "images.json", [{"name": n, "label": lab, "thumbnail": thumbnail_uri(img)}
                                         for n, img, lab in zip(images.names, images.images, images.labels)])
    finished = store.get_meta("finished") or _now()
    built = store.finished_artifacts()
    write_json(out_dir / "run.json", {
        "kind": "campaign", "model": config.model, "model_name": program.name, "images": config.images,
        "image_count": len(images), "stacks": [s.describe() for s in config.stacks],
        "started": store.get_meta("started"), "finished": finished, "duration_s": store.get_meta("duration_s"),
        "mutatenn_version": __version__, "config": config.raw, "kill_criterion": str(config.criterion),
        "per_image_cap": config.per_image_cap, "mutant_count": len(mutants), "repeats": config.repeats,
        "unstable_originals": unstable_originals(plan, built),
        "builds": len(built), "build_s_total": round(sum(a["build_s"] or 0 for a in built.values()), 3),
        "originals": {stack: key for stack, key in plan.originals.items()},
        "preset": program.preset, "notes": program.notes,
    })
    return verdicts, scores


def unstable_originals(plan: Plan, built: dict) -> list[str]:
    """Stacks whose original program gave different outputs in repeated runs."""
    return [stack for stack, key in plan.originals.items() if built.get(key, {}).get("unstable_images")]


def render_run_report(out_dir: Path) -> tuple[Path | None, str]:
    """report.html, or the reason it could not be written (the campaign's results stand)."""
    try:
        import reports
    except ImportError as err:
        return None, f"the reports package is not available ({err})"
    if not hasattr(reports, "render_report"):
        return None, "the reports package has no render_report"
    try:
        return reports.render_report(out_dir), ""
    except Exception as err:  # a broken report must not throw away a finished campaign
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return None, f"{type(err).__name__}: {first}"


def format_scores(scores: pd.DataFrame) -> str:
    """The per-stack score lines as a person reads them in a terminal."""
    view = scores[scores["group"] == "all"].drop(columns=["group", "key"]).copy()
    if view["unstable"].isna().all():
        view = view.drop(columns=["unstable"])  # repeats = 1: stability was not measured
    else:
        view["unstable"] = view["unstable"].astype(object).where(view["unstable"].notna(), "-")
    view["score"] = view["score"].map(lambda s: "-" if s is None or (isinstance(s, float) and math.isnan(s))
                                      else f"{s:.1f}%")
    return view.to_string(index=False)


def stacks_below(scores: pd.DataFrame, threshold: float) -> list[tuple[str, float]]:
    """Stacks whose overall score is below ``threshold`` percent (a stack with no score is not)."""
    out = []
    for r in scores[scores["group"] == "all"].itertuples(index=False):
        if r.score is not None and not (isinstance(r.score, float) and math.isnan(r.score)) and r.score < threshold:
            out.append((r.stack, float(r.score)))
    return out
