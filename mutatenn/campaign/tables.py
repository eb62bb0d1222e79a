"""The campaign's pandas tables: verdicts, scores, discrepancies, per-image top-5, and
the terminal views of them. Columns come from `reports.schema` and the metric catalogue."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd

import operators
from runfolder import schema

from ..records import SCORED, Verdict, VerdictRow


def verdict_table(rows: list[VerdictRow], mutants: list[dict], stack_order: list[str],
                  criterion=None) -> pd.DataFrame:
    """verdicts.csv: one row per mutant × stack, in enumeration then stack order; the
    count terms ``criterion`` reads (`operators.criteria.COUNT_TERMS`) get a column each."""
    info = {m["id"]: m for m in mutants}
    counts = count_columns(criterion)
    metrics = operators.CATALOGUE.names() + counts
    records = []
    for v in rows:
        m = info.get(v.mutant_id)
        if m is None:
            continue
        record = {"mutant_id": v.mutant_id, "operator": m["operator"], "level": m["level"], "site": m["site"],
                  "stack": v.stack, "verdict": v.verdict.value, "reason": v.reason}
        record.update({name: _finite_or_none(v.values.get(name)) for name in metrics})
        record.update(flipped=v.flipped, build_s=v.build_s, run_s=v.run_s, log_tail=v.log_tail, unstable=v.unstable,
                      images_run=v.images_run, passes_killed=v.passes_killed, triage=v.triage,
                      _ordinal=m["ordinal"],
                      _stack=stack_order.index(v.stack) if v.stack in stack_order else len(stack_order))
        records.append(record)
    columns = schema.verdict_columns(operators.CATALOGUE.describe(), counts)
    frame = pd.DataFrame(records, columns=columns + ["_ordinal", "_stack"])
    frame = frame.sort_values(["_ordinal", "_stack"], kind="stable").drop(columns=["_ordinal", "_stack"])
    frame["flipped"] = frame["flipped"].astype("Int64")
    frame["unstable"] = frame["unstable"].astype("Int64")  # empty: not measured (repeats = 1, or not run)
    frame["images_run"] = frame["images_run"].astype("Int64")  # empty: every image (no fast kill)
    frame["passes_killed"] = frame["passes_killed"].astype("Int64")  # empty: the first pass alone judged
    return frame.reset_index(drop=True)


def count_columns(criterion) -> list[str]:
    """The count terms of ``criterion`` that verdicts.csv has no column for yet (``flipped`` always has one)."""
    from operators.criteria import COUNT_TERMS

    if criterion is None:
        return []
    return list(dict.fromkeys(t.metric for t in criterion.terms() if t.metric in COUNT_TERMS and t.metric != "flipped"))


def _finite_or_none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def score_table(verdicts: pd.DataFrame, stack_order: list[str],
                population: dict[str, dict[str, int]] | None = None) -> pd.DataFrame:
    """Verdict counts and mutation score per stack: overall, per operator, per level; each
    score with its 95% Wilson interval, and the mutants taken (``sampled``) out of the sites
    the group's operators have (``population``: stack -> operator -> sites; empty when unknown)."""
    from runfolder.scores import wilson_interval

    population = population or {}
    rows = []
    for stack in stack_order:
        part = verdicts[verdicts["stack"] == stack]
        sites = population.get(stack)
        groups = [("all", "all", part)]
        groups += [("operator", name, g) for name, g in part.groupby("operator", sort=False)]
        groups += [("level", name, g) for name, g in part.groupby("level", sort=False)]
        for group, key, g in groups:
            counts = {v.value: int((g["verdict"] == v.value).sum()) for v in Verdict}
            denom = sum(counts[v.value] for v in SCORED)
            score = round(100.0 * counts[Verdict.KILLED.value] / denom, 2) if denom else None
            interval = wilson_interval(counts[Verdict.KILLED.value], denom)
            low, high = (round(interval[0], 2), round(interval[1], 2)) if interval else (None, None)
            measured = g["unstable"].dropna()
            unstable = int((measured == 1).sum()) if len(measured) else None  # None: not measured
            rows.append({"stack": stack, "group": group, "key": key, **counts, "score": score, "unstable": unstable,
                         "score_low": low, "score_high": high, "sampled": len(g),
                         "population": _population(sites, group, g)})
    frame = pd.DataFrame(rows, columns=schema.SCORE_COLUMNS)
    for column in ("unstable", "sampled", "population"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _population(sites: dict[str, int] | None, group: str, part: pd.DataFrame) -> int | None:
    """The sites of a score group's operators (all of the stack's, or those in ``part``)."""
    if sites is None:
        return None
    names = sites if group == "all" else part["operator"].unique()
    if any(name not in sites for name in names):
        return None
    return int(sum(sites[name] for name in names))


def discrepancy_table(verdicts: pd.DataFrame, stack_order: list[str]) -> pd.DataFrame:
    """Mutants built and judged on several stacks with different scored outcomes there
    (killed on one, survived or another scored verdict on another: the backend
    view; a build_error counts apart, like non_viable). A pass mutant that is
    equivalent on the stack whose options it repeats is not a discrepancy. ``unstable_on``
    names the stacks where the mutant's outputs changed between repeated runs (its verdict
    there may be noise rather than the stack)."""
    info_columns = schema.DISCREPANCY_INFO[:-1]
    if verdicts.empty:
        return pd.DataFrame(columns=[*info_columns, *stack_order, "unstable_on"])
    scored = set(schema.SCORED_NAMES)
    wide = verdicts.pivot(index="mutant_id", columns="stack", values="verdict")
    wide = wide.reindex(columns=[s for s in stack_order if s in wide.columns])
    differ = wide[wide.apply(lambda row: len({v for v in row if v in scored}) > 1, axis=1)]
    info = verdicts.drop_duplicates("mutant_id").set_index("mutant_id")[info_columns[1:]]
    order = verdicts.drop_duplicates("mutant_id")["mutant_id"].tolist()
    table = info.join(differ, how="inner").reindex([m for m in order if m in differ.index])
    flagged = verdicts[verdicts["unstable"].fillna(0) == 1]
    unstable_on = flagged.groupby("mutant_id", sort=False)["stack"].agg(lambda s: ",".join(s))
    table["unstable_on"] = unstable_on.reindex(table.index).fillna("")
    return table.reset_index().rename(columns={"index": "mutant_id"})


def compression_pairs(stacks) -> list[tuple[str, str, str]]:
    """(fp32 stack, compressed stack, its compression) for stacks of one target, runner and
    import path whose other build options are equal: what compression alone changed."""
    import dataclasses

    from ..compression import compression_label, is_compressed

    def plain(stack):
        return (stack.target_name, stack.runner, stack.via,
                dataclasses.replace(stack.options, precision="fp32", quantize="none", prune=(), calibration=16,
                                    keep_fp32=()))

    pairs = []
    for fp32 in (s for s in stacks if not is_compressed(s.options)):
        for other in (s for s in stacks if is_compressed(s.options)):
            if plain(fp32) == plain(other):
                pairs.append((fp32.name, other.name, compression_label(other.options)))
    return pairs


def masked_fault_table(verdicts: pd.DataFrame, pairs: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Mutants killed on an fp32 stack and surviving on a compressed stack of the same
    target (``masked``: compression hides the fault), and the reverse (``revealed``)."""
    rows = []
    if not verdicts.empty:
        by = verdicts.set_index(["mutant_id", "stack"])
        info = verdicts.drop_duplicates("mutant_id").set_index("mutant_id")
        for fp32, other, label in pairs:
            for mutant in info.index:
                a, b = by["verdict"].get((mutant, fp32)), by["verdict"].get((mutant, other))
                if {a, b} == {"killed", "survived"}:
                    rows.append({"mutant_id": mutant, "operator": info.at[mutant, "operator"],
                                 "level": info.at[mutant, "level"], "fp32_stack": fp32, "compressed_stack": other,
                                 "compression": label, "fp32_verdict": a, "compressed_verdict": b,
                                 "direction": "masked" if a == "killed" else "revealed"})
    return pd.DataFrame(rows, columns=schema.MASKED_COLUMNS)


def masked_counts(masked: pd.DataFrame, pairs: list[tuple[str, str, str]]) -> list[dict]:
    """Per stack pair: how many mutants compression masked and how many it revealed."""
    out = []
    for fp32, other, label in pairs:
        part = masked[(masked["fp32_stack"] == fp32) & (masked["compressed_stack"] == other)]
        out.append({"fp32_stack": fp32, "compressed_stack": other, "compression": label,
                    "masked": int((part["direction"] == "masked").sum()),
                    "revealed": int((part["direction"] == "revealed").sum())})
    return out


NOT_RUN = "(not run: fast kill had already killed the mutant)"


def per_image_table(verdicts: pd.DataFrame, judged: dict, originals: dict[str, str], load_logits, images,
                    labels, cap: int) -> pd.DataFrame:
    """Top-5 of original and mutant per image; flipped images first, at most ``cap`` per
    mutant × stack. ``judged`` maps (mutant, stack) to its killed/survived VerdictRow;
    ``load_logits(artifact key)`` reads stored outputs."""
    columns = schema.CAMPAIGN_PER_IMAGE_COLUMNS
    if cap <= 0:
        return pd.DataFrame([], columns=columns)
    top5 = _Top5(load_logits, labels)
    rows = []
    for r in verdicts.itertuples(index=False):
        v = judged.get((r.mutant_id, r.stack))
        if v is None:
            continue
        flipped = set(v.flipped_images)
        chosen = sorted(flipped)[:cap]
        chosen += [i for i in range(len(images)) if i not in flipped][: cap - len(chosen)]
        not_run = v.images_run if v.images_run is not None else len(images)
        for i in chosen:
            mutant = top5.text(v.artifact, i) if i < not_run else NOT_RUN
            rows.append({"mutant_id": r.mutant_id, "stack": r.stack, "image": images.names[i],
                         "original_top5": top5.text(originals[r.stack], i), "mutant_top5": mutant,
                         "flipped": i in flipped})
    return pd.DataFrame(rows, columns=columns)


def kill_matrix_table(verdicts: pd.DataFrame, judged: dict, originals: dict[str, str], load_outputs, images,
                      criterion) -> pd.DataFrame:
    """kill_matrix.csv: one row per judged (killed or survived) mutant × stack × image;
    ``killed_by_image`` is 1 when that image alone meets ``criterion`` (the criterion
    evaluated on a one-image set), 0 when it does not, empty when fast kill did not run
    the image. ``load_outputs(artifact key)`` reads a build's stored logits and latencies."""
    columns = schema.KILL_MATRIX_COLUMNS
    names = np.asarray(images.names, dtype=object)
    originals_loaded: dict[str, dict] = {}
    parts = []
    for r in verdicts[["mutant_id", "stack"]].itertuples(index=False):
        v = judged.get((r.mutant_id, r.stack))
        if v is None:
            continue
        key = originals[r.stack]
        if key not in originals_loaded:
            originals_loaded[key] = load_outputs(key)
        kills = pd.array(image_kills(criterion, originals_loaded[key], load_outputs(v.artifact)).astype(int),
                         dtype="Int64")
        if v.images_run is not None:  # fast kill stopped here: the later images were not run
            kills[v.images_run:] = pd.NA
        parts.append(pd.DataFrame({"mutant_id": r.mutant_id, "stack": r.stack, "image": names[: len(kills)],
                                   "killed_by_image": kills}))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="Int64" if c == "killed_by_image" else object) for c in columns})
    return pd.concat(parts, ignore_index=True)[columns]


def image_kills(criterion, ref: dict, out: dict) -> np.ndarray:
    """Per image, whether that image alone meets ``criterion`` (``ref`` / ``out``: logits
    and latencies of the original and the mutant). A criterion of several terms combines
    its terms' answers (``and``: all, ``or``: any); a count term answers by its own
    per-image rule (`operators.criteria.COUNT_TERMS`)."""
    from operators.criteria import AllOf, AnyOf, CountTerm

    if isinstance(criterion, (AllOf, AnyOf)):
        parts = np.array([image_kills(p, ref, out) for p in criterion.parts])
        return parts.all(axis=0) if isinstance(criterion, AllOf) else parts.any(axis=0)
    if isinstance(criterion, CountTerm):
        return criterion.image_kills(ref["logits"], out["logits"])
    return _metric_image_kills(criterion, ref, out)


def _metric_image_kills(criterion, ref: dict, out: dict) -> np.ndarray:
    """One catalogue metric's term per image: the metric's declared per-image form
    (`operators.catalogue.Metric.per_image`) gives the values; a metric without one is
    summarised on each image in turn."""
    from operators.catalogue import _takes_k

    metric = operators.CATALOGUE[criterion.metric]
    n = len(out["logits"])
    latencies = metric.inputs == "latencies"
    if latencies:
        a, b = np.asarray(ref["latencies"]).reshape(-1), np.asarray(out["latencies"]).reshape(-1)
    else:
        a, b = ref["logits"], out["logits"]
    if len(a) != n or len(b) != n:
        return np.zeros(n, dtype=bool)  # latencies not one per image: no image decides alone
    per_image = metric.per_image
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # a broken mutant's NaN rows are expected here
        params = dict(criterion.params)
        if per_image is not None:
            values = per_image(a, b, **({"k": 5} if _takes_k(per_image) else {}), **params)
        elif latencies:
            values = [metric.evaluate(None, None, a[i:i + 1], b[i:i + 1], 5, params) for i in range(n)]
        else:
            values = [metric.evaluate(a[i:i + 1], b[i:i + 1], None, None, 5, params) for i in range(n)]
    return np.array([criterion.is_killed({criterion.key: float(x)}) for x in values], dtype=bool)


class _Top5:
    """Softmax top-5 per stored artifact, computed once per artifact."""

    def __init__(self, load_logits, labels):
        self.load_logits, self.labels, self.loaded = load_logits, labels, {}

    def text(self, key: str, i: int) -> str:
        if key not in self.loaded:
            from ..compare import softmax

            logits = self.load_logits(key)
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # an all-NaN row of a broken mutant is expected here
                probs = softmax(logits)
            self.loaded[key] = (probs, np.argsort(-np.nan_to_num(logits, nan=-np.inf), axis=1, kind="stable")[:, :5])
        probs, order = self.loaded[key]
        labels = self.labels
        return json.dumps([[labels[c] if c < len(labels) else str(c), round(float(probs[i, c]), 5)]
                           for c in (int(x) for x in order[i])])


def format_scores(scores: pd.DataFrame) -> str:
    """The per-stack score lines as a person reads them in a terminal."""
    view = scores[scores["group"] == "all"].drop(columns=["group", "key"]).copy()
    if view["unstable"].isna().all():
        view = view.drop(columns=["unstable"])  # repeats = 1: stability was not measured
    else:
        view["unstable"] = view["unstable"].astype(object).where(view["unstable"].notna(), "-")
    view["score"] = view["score"].map(lambda s: "-" if _missing(s) else f"{s:.1f}%")
    view["95% CI"] = [("-" if _missing(lo) or _missing(hi) else f"{lo:.1f}-{hi:.1f}%")
                      for lo, hi in zip(view["score_low"], view["score_high"])]
    view["sampled"] = [("-" if pd.isna(n) else f"{n}/{total}" if not pd.isna(total) else f"{n}")
                       for n, total in zip(view["sampled"], view["population"])]
    return view.drop(columns=["score_low", "score_high", "population"]).to_string(index=False)


BOUNDS = ("score", "lower")  # what --fail-under compares: the score, or its interval's lower bound


def stacks_below(scores: pd.DataFrame, threshold: float, bound: str = "score") -> list[tuple[str, float]]:
    """Stacks whose overall score (``bound="score"``) or the lower end of its 95% interval
    (``bound="lower"``) is below ``threshold`` percent, with that value (a stack with no
    score is not)."""
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {', '.join(BOUNDS)}, not {bound!r}")
    column = "score" if bound == "score" else "score_low"
    return [(r["stack"], float(r[column])) for r in scores[scores["group"] == "all"].to_dict("records")
            if not _missing(r[column]) and r[column] < threshold]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def build_table(plan, built: dict[str, dict]) -> pd.DataFrame:
    """builds.csv: what each build did (schedule, tuned records hit or missed, kernels
    compiled or linked from the original's library), in plan order."""
    rows = []
    for key, artifact in plan.artifacts.items():
        info = built.get(key)
        if info is None:
            continue
        extra = info.get("build_info") or {}
        program = f"{artifact.operator}#{artifact.site}" if artifact.operator else "original"
        if not artifact.operator and key not in plan.originals.values():
            program = "original (a pass mutant's build options)"
        rows.append({"artifact": key, "program": program, "stack": info["stack"], "status": info["status"],
                     "build_s": info["build_s"], "run_s": info["run_s"], "cached": bool(extra.get("cached", False)),
                     **{c: extra.get(c) for c in ("schedule", "scheduled", "untouched", "tuned_hits", "tuned_misses",
                                                  "kernels_compiled", "kernels_reused")},
                     "settles": " ".join(f"{m}@{s}" for m, s in artifact.pairs)})
    return pd.DataFrame(rows, columns=schema.BUILD_COLUMNS)
