"""The campaign page's content, built from a RunData's tables."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from runfolder.schema import DISCREPANCY_INFO, KILL_MATRIX_COLUMNS, KILL_MATRIX_CSV, TRIAGE
from runfolder.scores import wilson_interval
from runfolder.verdicts import DETAIL_PRIORITY, LOCALIZABLE, REPRODUCIBLE

from . import charts
from .common import fmt_num, fmt_seconds, parse_topk, run_overview, sort_key, thumbnails, to_bool, to_float
from .rundata import SCORED_VERDICTS, VERDICTS, RunData


def greedy_cover(kills: dict[str, set[str]], order: list[str] | None = None) -> list[str]:
    """A small set of images that together kill every mutant some image kills (greedy set
    cover: each step takes the image killing most mutants not yet killed; ties go to the
    earlier image in ``order``). ``kills`` maps image -> the mutants it kills alone."""
    order = list(order or kills)
    rank = {name: i for i, name in enumerate(order)}
    left = set().union(*kills.values()) if kills else set()
    chosen: list[str] = []
    while left:
        best = min(kills, key=lambda name: (-len(kills[name] & left), rank.get(name, len(rank))))
        gain = kills[best] & left
        if not gain:
            break
        chosen.append(best)
        left -= gain
    return chosen


@dataclass(frozen=True)
class CampaignCaps:
    """Limits that keep a large campaign's page small; the page states them."""

    detailed_mutants: int = 200   # mutants with diff, log and per-image detail
    images_per_stack: int = 4     # images shown per mutant and stack (flipped first)
    diff_lines: int = 60          # lines of IR diff per mutant
    log_lines: int = 30           # lines of crash log tail per mutant and stack
    discrepancies: int = 300      # rows in the cross-stack discrepancy section
    matrix_images: int = 40       # rows (images) of each stack's kill matrix
    matrix_mutants: int = 60      # columns (killed mutants) of each stack's kill matrix
    listed: int = 60              # images / mutants named per list in the kill-matrix section


# Verdicts whose mutants get full detail, most informative first (the verdict table's
# ``detail``): a survivor shows a gap in the comparison operators, a crash a fragile
# stack, a memory error the access a bounds check caught, an uninitialized read the kernel and
# buffer a poison check caught, a build error what the compiler refused.
_DETAIL_PRIORITY = DETAIL_PRIORITY

# Run folders written before metrics said whether summary tables show them.
LEGACY_TABLE_METRICS = ("top1_agreement", "kendall_tau", "max_abs_error", "cosine")


def table_metrics(run: RunData) -> list[dict]:
    """The metrics of the mutant table: those the catalogue marks for summary tables
    (`run.json`'s ``table``), else the run's first four (the details show all)."""
    chosen = [m for m in run.metrics if m.get("table", m["name"] in LEGACY_TABLE_METRICS)]
    return chosen or run.metrics[:4]


def _stacks(run: RunData) -> list[str]:
    stacks = [_stack_label(s) for s in run.meta.get("stacks") or []]
    for s in run.verdicts["stack"].unique():
        if s not in stacks:
            stacks.append(s)
    return stacks


def _stack_label(stack) -> str:
    if isinstance(stack, dict):
        return str(stack.get("name") or stack)
    return str(stack)


def _counts_from_verdicts(verdicts: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    counts = (verdicts.groupby(by + ["verdict"]).size().unstack("verdict", fill_value=0)
              .reindex(columns=list(VERDICTS), fill_value=0))
    denom = counts[list(SCORED_VERDICTS)].sum(axis=1)
    counts["score"] = (100.0 * counts["killed"] / denom.where(denom > 0)).astype(float)
    return counts.reset_index()


def _score_tables(run: RunData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-stack and per-operator counts and scores: scores.csv if given, else computed;
    the score intervals too (computed from the counts for folders written without them)."""
    s = run.scores
    if len(s) and (s["group"] == "all").any():
        overall = s[s["group"] == "all"].copy()
        per_op = s[s["group"] == "operator"].rename(columns={"key": "operator"}).copy()
    else:
        overall = _counts_from_verdicts(run.verdicts, ["stack"])
        per_op = _counts_from_verdicts(run.verdicts, ["stack", "operator"])
    for df in (overall, per_op):
        for v in VERDICTS:
            df[v] = pd.to_numeric(df[v], errors="coerce").fillna(0).astype(int)
        df["score"] = pd.to_numeric(df["score"], errors="coerce")
        for col in ("score_low", "score_high", "sampled", "population"):
            df[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else float("nan")
        for i in df.index[df["score_low"].isna() | df["score_high"].isna()]:
            interval = wilson_interval(int(df.at[i, "killed"]), int(sum(df.at[i, v] for v in SCORED_VERDICTS)))
            if interval is not None:
                df.at[i, "score_low"], df.at[i, "score_high"] = interval
    return overall, per_op


def _interval_text(row) -> str:
    low, high = (to_float(row.get("score_low")), to_float(row.get("score_high"))) if row else (None, None)
    return "—" if low is None or high is None else f"{low:.1f}–{high:.1f}%"


def _sampled_text(row) -> str:
    """'12 of 40 (30%)': the mutants taken out of the sites their operators have."""
    sampled = to_float(row.get("sampled")) if row else None
    population = to_float(row.get("population")) if row else None
    if sampled is None:
        return "—"
    if not population:
        return f"{int(sampled)}"
    return f"{int(sampled)} of {int(population)} ({100.0 * sampled / population:.0f}%)"


def _unscored_text(row) -> str:
    """A heat-map cell with no scored mutant says why: "all equivalent", "all non-viable",
    "all build errors", or "none scored" for a mix of those."""
    excluded = [v for v in VERDICTS if v not in SCORED_VERDICTS and int(row.get(v) or 0)]
    if len(excluded) == 1:
        return f"all {UNSCORED_WORDS.get(excluded[0], excluded[0].replace('_', ' '))}"
    return "none scored" if excluded else "no mutants"


# How a heat-map cell names a verdict that all of its mutants got (none scored).
UNSCORED_WORDS = {"equivalent": "equivalent", "non_viable": "non-viable", "build_error": "build errors"}


def _score_text(score) -> str:
    f = to_float(score)
    return "—" if f is None else f"{f:.1f}%"


def _diff_lines(diff: str, cap: int) -> tuple[list[dict], int]:
    lines = diff.splitlines()
    out = []
    for line in lines[:cap]:
        if line.startswith(("+++", "---")):
            cls = "meta"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "ctx"
        out.append({"cls": cls, "text": line})
    return out, max(0, len(lines) - cap)


def _status_text(mutant: dict, per_stack: list[dict]) -> str:
    """The mutant's fate for the detail header: its verdicts once judged (mutants.json's
    enumeration status stays "pending" for every mutant that was built), else that status."""
    verdicts = list(dict.fromkeys(p["verdict"] for p in per_stack if p["verdict"]))
    if verdicts:
        return "judged: " + ", ".join(verdicts)
    return str(mutant.get("status") or "")


def _log_tail(text: str, cap: int) -> tuple[str, int]:
    lines = str(text).splitlines()
    return "\n".join(lines[-cap:]), max(0, len(lines) - cap)


def _pick_detailed(mutant_ids: list[str], verdicts_by_mutant: dict, cap: int) -> set[str]:
    ranked = []
    for order, mid in enumerate(mutant_ids):
        prios = [_DETAIL_PRIORITY[r["verdict"]] for r in verdicts_by_mutant.get(mid, [])
                 if r["verdict"] in _DETAIL_PRIORITY]
        if prios:
            ranked.append((min(prios), order, mid))
    ranked.sort()
    return {mid for _, _, mid in ranked[:cap]}


def _images_for(run: RunData, detailed: set[str], caps: CampaignCaps, image_labels: dict,
                thumb_index: dict) -> tuple[dict, dict]:
    """Shown per-image rows per (mutant, stack), flipped first, and row totals."""
    pi = run.per_image
    if not len(pi) or not detailed:
        return {}, {}
    pi = pi[pi["mutant_id"].isin(detailed)].copy()
    pi["_flip"] = pi["flipped"].map(to_bool)
    totals = pi.groupby(["mutant_id", "stack"]).size().to_dict()
    pi = pi.sort_values("_flip", ascending=False, kind="stable")
    shown = pi.groupby(["mutant_id", "stack"], sort=False).head(caps.images_per_stack)
    out: dict = defaultdict(list)
    for r in shown.to_dict("records"):
        name = r["image"]
        out[(r["mutant_id"], r["stack"])].append({
            "name": name, "thumb": thumb_index.get(name), "label": image_labels.get(name),
            "flipped": r["_flip"], "original": parse_topk(r["original_top5"]),
            "mutant": parse_topk(r["mutant_top5"]),
        })
    return out, totals


def build_campaign_context(run: RunData, caps: CampaignCaps = CampaignCaps()) -> dict:
    """Everything campaign.html.j2 needs, as plain Python values."""
    meta = run.meta
    stacks = _stacks(run)
    verdicts = run.verdicts
    overall, per_op = _score_tables(run)

    # Scores and verdict counts per stack.
    by_stack = {r["stack"]: r for r in overall.to_dict("records")}
    score_items, counts, intervals = [], [], []
    for s in stacks:
        r = by_stack.get(s)
        score = to_float(r["score"]) if r else None
        score_items.append((s, score, _score_text(score)))
        c = {v: int(r[v]) if r else 0 for v in VERDICTS}
        unstable = to_float(r.get("unstable")) if r else None
        counts.append({"stack": s, "counts": c, "total": sum(c.values()), "score": _score_text(score),
                       "unstable": "—" if unstable is None else str(int(unstable)),
                       "interval": _interval_text(r), "sampled": _sampled_text(r)})
        intervals.append(_whisker(r, s))
    totals = {v: sum(c["counts"][v] for c in counts) for v in VERDICTS}

    # Operator x stack heatmap.
    op_scores = {(r["operator"], r["stack"]): r for r in per_op.to_dict("records")}
    operators = sorted({op for op, _ in op_scores}, key=str.lower)

    def op_cell(op, stack):
        r = op_scores.get((op, stack))
        if r is None:
            return None, "", f"{op} on {stack}: no mutants"
        f = to_float(r["score"])
        scored = sum(int(r[v]) for v in SCORED_VERDICTS)
        text = _score_text(f) if scored else _unscored_text(r)
        title = (f"{op} on {stack}: {_score_text(f)}, 95% interval {_interval_text(r)} "
                 f"({int(r['killed'])} killed of {scored} scored; "
                 f"{int(r['build_error'])} build errors, {int(r['non_viable'])} non-viable, "
                 f"{int(r['equivalent'])} equivalent; "
                 f"sites taken: {_sampled_text(r)})")
        return (None if f is None else f / 100.0), text, title

    # Mutants, in mutants.json order, then any that only the verdicts name.
    mutants = run.mutants.to_dict("records")
    known = {m["id"] for m in mutants}
    vrecs = verdicts.to_dict("records")
    for r in vrecs:
        if r["mutant_id"] not in known:
            known.add(r["mutant_id"])
            mutants.append({"id": r["mutant_id"], "operator": r["operator"], "level": r["level"],
                            "site": r["site"], "status": "", "reason": "", "hash": "", "diff": ""})
    anchors = {m["id"]: f"m{i}" for i, m in enumerate(mutants)}
    verdicts_by_mutant: dict = defaultdict(list)
    for r in vrecs:
        verdicts_by_mutant[r["mutant_id"]].append(r)

    stability = {(r["mutant_id"], r["stack"]): _stability(r.get("unstable")) for r in vrecs}
    measured = any(v != "" for v in stability.values())
    shown_metrics = table_metrics(run)
    rows = []
    for r in vrecs:
        rows.append({
            "unstable": stability[(r["mutant_id"], r["stack"])],
            "anchor": anchors[r["mutant_id"]], "id": r["mutant_id"], "operator": r["operator"],
            "level": r["level"], "site": r["site"], "stack": r["stack"], "verdict": r["verdict"],
            "metrics": [(fmt_num(r.get(m["name"])), sort_key(r.get(m["name"]))) for m in shown_metrics],
            "flipped": (fmt_num(r.get("flipped")), sort_key(r.get("flipped"))),
            "time": (fmt_num((to_float(r.get("build_s")) or 0) + (to_float(r.get("run_s")) or 0), 3),
                     sort_key((to_float(r.get("build_s")) or 0) + (to_float(r.get("run_s")) or 0))),
        })

    image_labels = {str(i.get("name")): i.get("label") for i in run.images}
    thumb_rules, thumb_index = thumbnails(run.images)
    detailed = _pick_detailed([m["id"] for m in mutants], verdicts_by_mutant, caps.detailed_mutants)
    images, image_totals = _images_for(run, detailed, caps, image_labels, thumb_index)

    details = []
    for m in mutants:
        mid = m["id"]
        full = mid in detailed
        per_stack = []
        for r in sorted(verdicts_by_mutant.get(mid, []),
                        key=lambda r: stacks.index(r["stack"]) if r["stack"] in stacks else 99):
            log, log_more = _log_tail(r.get("log_tail") or "", caps.log_lines) if full else ("", 0)
            shown = images.get((mid, r["stack"]), [])
            per_stack.append({
                "stack": r["stack"], "verdict": r["verdict"], "reason": r.get("reason") or "",
                "unstable": stability[(mid, r["stack"])],
                "metrics": [fmt_num(r.get(m["name"])) for m in run.metrics],
                "flipped": fmt_num(r.get("flipped")), "build_s": fmt_num(r.get("build_s"), 3),
                "run_s": fmt_num(r.get("run_s"), 3), "log": log, "log_more": log_more,
                "images": shown, "images_total": image_totals.get((mid, r["stack"]), 0),
                "commands": next_steps(run.path, mid, r["stack"], r["verdict"]) if full else [],
                "passes": _passes_text(r.get("passes_killed"), meta.get("repeats")),
            })
        diff, diff_more = _diff_lines(m.get("diff") or "", caps.diff_lines) if full else ([], 0)
        verdict_set = sorted({p["verdict"] for p in per_stack})
        details.append({
            "anchor": anchors[mid], "id": mid, "operator": m.get("operator", ""),
            "level": m.get("level", ""), "site": m.get("site", ""), "status": _status_text(m, per_stack),
            "reason": m.get("reason", ""), "hash": m.get("hash", ""), "full": full,
            "diff": diff, "diff_more": diff_more, "has_diff": bool(m.get("diff")),
            "stacks": per_stack, "verdicts": verdict_set,
        })

    return {
        "title": f"Mutation campaign — {meta.get('model', 'model')}",
        "overview": run_overview(meta) + [
            ("Stacks", ", ".join(_stack_label(s) for s in stacks) or "—"),
            ("Stack builds", _stack_builds(meta)),
            ("Speed-ups", _speedups(meta)),
            *([("Stacks left out", _failed_stacks(meta))] if meta.get("failed_stacks") else []),
            ("Mutants", str(len(mutants))),
            ("Inference passes per build", _repeats_text(meta)),
            ("Mutants judged against", f"saved outputs {meta['reference']}" if meta.get("reference")
             else "each stack's original program"),
            ("Build + run time", fmt_seconds(pd.to_numeric(verdicts["build_s"], errors="coerce").sum()
                                             + pd.to_numeric(verdicts["run_s"], errors="coerce").sum())),
        ],
        "stacks": stacks,
        "verdicts": VERDICTS,
        "score_chart": charts.bar_chart(score_items),
        "score_intervals": intervals,
        "sampled_any": any(c["sampled"] != "—" for c in counts),
        "kill_matrix": kill_matrix_context(run, stacks, anchors, caps),
        "verdict_chart": charts.stacked_bars([(c["stack"], c["counts"]) for c in counts], VERDICTS),
        "counts": counts, "totals": totals,
        "heatmap": charts.heatmap(operators, stacks, op_cell) if operators else None,
        "table_metrics": [m["title"] for m in shown_metrics],
        "rows": rows,
        "metric_titles": [m["title"] for m in run.metrics],
        "details": details,
        "discrepancies": _discrepancies(run, stacks, anchors, caps),
        "masked": _masked(run, anchors),
        "survivors": survivor_rows(vrecs, anchors),
        "triage_docs": TRIAGE,
        "thumb_rules": thumb_rules,
        "caps": caps,
        "detailed_count": len(detailed),
        "per_image_cap": meta.get("per_image_cap"),
        "stability_measured": measured,
        "unstable_originals": [str(x) for x in meta.get("unstable_originals") or []],
    }


def survivor_rows(verdicts: list[dict], anchors: dict) -> list[dict]:
    """Survived pairs, weak ones first (the largest output difference first: a few more
    images will likely kill them), then those with no effect on any image; folders written
    before triage existed list theirs last, unclassified."""
    order = {word: i for i, word in enumerate(TRIAGE)}
    rows = []
    for r in verdicts:
        if r["verdict"] != "survived":
            continue
        word = r.get("triage") if isinstance(r.get("triage"), str) else ""
        distance = to_float(r.get("max_abs_error"))
        rows.append({"id": r["mutant_id"], "anchor": anchors.get(r["mutant_id"]), "stack": r["stack"],
                     "triage": word, "max_abs_error": fmt_num(distance),
                     "reason": r.get("reason") if isinstance(r.get("reason"), str) else "",
                     "_key": (order.get(word, len(order)), -(distance or 0.0))})
    rows.sort(key=lambda row: row["_key"])
    return rows


def _whisker(row, stack: str) -> dict | None:
    """The 95% interval of a stack's score, drawn under its bar (percent ends)."""
    low, high = (to_float(row.get("score_low")), to_float(row.get("score_high"))) if row else (None, None)
    if low is None or high is None:
        return None
    return {"low": low, "high": high, "title": f"{stack}: 95% interval {low:.1f}–{high:.1f}%"}


def read_kill_matrix(folder) -> pd.DataFrame | None:
    """kill_matrix.csv (``killed_by_image``: 1, 0, or NA where the image was not run), or
    None when the folder has none (written before MutateNN recorded it)."""
    path = Path(folder) / KILL_MATRIX_CSV
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={"mutant_id": str, "stack": str, "image": str}, keep_default_na=False,
                            na_values={"killed_by_image": [""]})
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=KILL_MATRIX_COLUMNS)
    for col in KILL_MATRIX_COLUMNS:
        if col not in table.columns:
            table[col] = pd.NA
    table["killed_by_image"] = pd.to_numeric(table["killed_by_image"], errors="coerce")
    return table


def stack_kills(table: pd.DataFrame, stack: str) -> tuple[dict[str, set[str]], list[str], list[str]]:
    """For one stack of a kill matrix: image -> the mutants it kills alone, the images run
    on some mutant (in file order) and the judged mutants (in file order)."""
    part = table[table["stack"] == stack]
    hits = part[part["killed_by_image"] == 1]
    kills = {image: set(g) for image, g in hits.groupby("image", sort=False)["mutant_id"]}
    ran = part.loc[part["killed_by_image"].notna(), "image"].drop_duplicates().tolist()
    judged = part["mutant_id"].drop_duplicates().tolist()
    for image in ran:
        kills.setdefault(image, set())
    return kills, ran, judged


def kill_matrix_context(run: RunData, stacks: list[str], anchors: dict, caps: CampaignCaps) -> dict:
    """Per stack: which image kills which mutant (a capped image × mutant matrix), the
    images that kill nothing, the mutants one image alone kills, and a small image set
    that kills every mutant some image kills (greedy set cover)."""
    table = read_kill_matrix(run.path)
    if table is None:
        return {"present": False, "stacks": []}
    image_order = [str(i.get("name")) for i in run.images]
    v = run.verdicts
    out = []
    for stack in [s for s in stacks if s in set(table["stack"])]:
        kills, ran, judged = stack_kills(table, stack)
        rank = {name: i for i, name in enumerate(image_order + [x for x in ran if x not in image_order])}
        ran = sorted(ran, key=lambda x: rank[x])
        killers: dict[str, list[str]] = defaultdict(list)
        for image in ran:
            for mutant in kills[image]:
                killers[mutant].append(image)
        cover = greedy_cover(kills, ran)
        verdict_killed = set(v.loc[(v["stack"] == stack) & (v["verdict"] == "killed"), "mutant_id"])
        killed = [m for m in judged if m in killers]
        silent = [image for image in ran if not kills[image]]
        single = [(m, killers[m][0]) for m in killed if len(killers[m]) == 1]
        # The matrix: the cover's images first, then the others by kills; rarely killed mutants first.
        in_cover = set(cover)
        rows = cover + sorted((x for x in ran if x not in in_cover), key=lambda x: (-len(kills[x]), rank[x]))
        rows = rows[: caps.matrix_images]
        cols = sorted(killed, key=lambda m: len(killers[m]))[: caps.matrix_mutants]  # stable: file order
        out.append({
            "stack": stack, "images": len(ran), "judged": len(judged), "killed": len(killed),
            "killed_no_image": sorted(verdict_killed - set(killers)),
            "cover": cover, "silent": silent[: caps.listed], "silent_total": len(silent),
            "single": [{"id": m, "anchor": anchors.get(m), "image": img} for m, img in single[: caps.listed]],
            "single_total": len(single),
            "cols": [{"n": n + 1, "id": m, "anchor": anchors.get(m), "killers": len(killers[m])}
                     for n, m in enumerate(cols)],
            "rows": [{"image": x, "kills": len(kills[x]), "cover": x in in_cover,
                      "cells": [m in kills[x] for m in cols]} for x in rows],
            "rows_total": len(ran), "cols_total": len(killed),
        })
    return {"present": True, "stacks": out}


def _stability(value) -> str:
    """'yes' (outputs changed between repeated runs), 'no', or '' (not measured)."""
    f = to_float(value)
    return "" if f is None else ("yes" if f else "no")


def _stack_builds(meta: dict) -> str:
    """Each stack's target, build options, loop schedule and import path (folders written
    before schedules existed were built with none)."""
    parts = []
    for s in meta.get("stacks") or []:
        if isinstance(s, dict):
            schedule = s.get("schedule", "none")
            build = str(s.get("build", "")).replace(f",schedule={schedule}", "")
            via = f", via {s['via']}" if s.get("via") else ""
            parts.append(f"{s.get('name')}: {s.get('target')} {build}, schedule {schedule}{via}")
    return "; ".join(parts) or "—"


def _failed_stacks(meta: dict) -> str:
    """Stacks left out, with why (an import path that failed, an original that failed)."""
    failed = meta.get("failed_stacks") or {}
    return "; ".join(f"{name}: {reason}" for name, reason in failed.items())


def _speedups(meta: dict) -> str:
    """What made the campaign faster: cached builds, linked kernels, tuned records, fast kill."""
    summary = meta.get("build_summary")
    if not isinstance(summary, dict):
        return "—"
    parts = [f"{summary.get('kernels_reused', 0)} kernels linked from the original's library, "
             f"{summary.get('kernels_compiled', 0)} compiled",
             f"{summary.get('cached', 0)} builds from the build cache"]
    if summary.get("tuned_hits") or summary.get("tuned_misses"):
        parts.append(f"tuned records: {summary.get('tuned_hits', 0)} kernels hit, {summary.get('tuned_misses', 0)} missed")
    parts.append("fast kill on" if meta.get("fast_kill") else "fast kill off")
    reuse = meta.get("reuse")
    if isinstance(reuse, dict):
        parts.append(f"{reuse.get('builds_reused', 0)} of {reuse.get('builds_planned', 0)} builds reused from "
                     f"{reuse.get('from')} ({reuse.get('verdicts_from_reused', 0)} verdicts judged from their outputs)"
                     + (f": {reuse['reason']}" if reuse.get("reason") else ""))
    return "; ".join(parts)


# What a user can do next with one mutant x stack, by its verdict (the verdict table's
# ``repro`` and ``localize``): rebuild it alone (`mutatenn repro`), or find the layer where
# it parts from the original (`mutatenn localize`).
NEXT_STEPS = {"repro": REPRODUCIBLE, "localize": LOCALIZABLE}


def _passes_text(passes_killed, repeats) -> str:
    """'killed in 3 of 5 passes' when the run judged over its passes ('' otherwise)."""
    killed, total = to_float(passes_killed), to_float(repeats)
    if killed is None or not total:
        return ""
    return f"killed in {int(killed)} of {int(total)} passes"


def next_steps(folder: Path, mutant_id: str, stack: str, verdict: str) -> list[str]:
    """The command lines for `NEXT_STEPS`, quoted for a POSIX shell."""
    import shlex

    run_dir, mid, st = shlex.quote(str(folder)), shlex.quote(mutant_id), shlex.quote(stack)
    lines = {"repro": f"mutatenn repro {run_dir} {mid} --stack {st}",
             "localize": f"mutatenn localize {run_dir} --mutant {mid} --stack {st}"}
    return [lines[name] for name, verdicts in NEXT_STEPS.items() if verdict in verdicts]


def _repeats_text(meta: dict) -> str:
    repeats = to_float(meta.get("repeats"))
    if not repeats or repeats <= 1:
        return "1 (stability not measured)"
    where = "each in a fresh process" if meta.get("repeat_in") == "process" else "in the build's worker"
    how = (meta.get("pass_verdict") or {}).get("text") or "the first pass decides the verdict"
    return (f"{int(repeats)}, passes 2..{int(repeats)} {where}; {how}; a build whose outputs differ between "
            "passes is marked unstable")


def _masked(run: RunData, anchors: dict) -> dict | None:
    """Faults compression hides: per (fp32, compressed) stack pair of run.json, how many
    mutants were killed on fp32 and survived compressed (masked) or the reverse (revealed),
    and the list (None for runs without compression stacks)."""
    pairs = run.meta.get("compression_pairs") or []
    if not pairs or run.masked is None:
        return None
    m = run.masked
    counts = []
    for p in pairs:
        part = m[(m["fp32_stack"] == p["fp32_stack"]) & (m["compressed_stack"] == p["compressed_stack"])]
        counts.append({**p, "masked": int((part["direction"] == "masked").sum()),
                       "revealed": int((part["direction"] == "revealed").sum())})
    rows = [{**r, "anchor": anchors.get(r["mutant_id"])} for r in m.to_dict("records")]
    return {"counts": counts, "rows": rows}


def _discrepancies(run: RunData, stacks: list[str], anchors: dict, caps: CampaignCaps) -> dict:
    """Mutants judged differently on different stacks (killed, survived, crashed, memory
    error or timed out: an equivalent-on-one-stack pass mutant is not one), grouped by operator."""
    d = run.discrepancies
    if len(d):
        cols = [s for s in stacks if s in d.columns] or [
            c for c in d.columns if c not in DISCREPANCY_INFO]
        recs = d.to_dict("records")
    else:
        v = run.verdicts
        if not len(v):
            return {"groups": [], "stacks": stacks, "total": 0, "shown": 0}
        wide = v.pivot_table(index=["mutant_id", "operator", "level", "site"], columns="stack",
                             values="verdict", aggfunc="first").fillna("")
        wide = wide[wide.apply(lambda r: len({x for x in r if x in SCORED_VERDICTS}) > 1, axis=1)]
        cols = [s for s in stacks if s in wide.columns]
        recs = wide.reset_index().to_dict("records")
        flagged = v[v["unstable"].map(_stability) == "yes"].groupby("mutant_id")["stack"].agg(",".join)
        for r in recs:
            r["unstable_on"] = flagged.get(r["mutant_id"], "")
    groups: dict = defaultdict(list)
    for r in recs[: caps.discrepancies]:
        groups[r["operator"]].append({
            "anchor": anchors.get(r["mutant_id"]), "id": r["mutant_id"], "level": r["level"],
            "site": r["site"], "verdicts": [str(r.get(s) or "") for s in cols],
            "unstable_on": ", ".join(x for x in str(r.get("unstable_on") or "").split(",") if x),
        })
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0].lower()))
    return {"groups": [{"operator": k, "rows": v} for k, v in ordered], "stacks": cols,
            "total": len(recs), "shown": min(len(recs), caps.discrepancies),
            "unstable": sum(1 for r in recs if str(r.get("unstable_on") or ""))}
