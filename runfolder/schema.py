"""The run-folder contract (docs/RUN-FOLDER.md): the files and columns the engine writes
and the report reads, by name. The verdict words and their attributes are the verdict
table (`runfolder.verdicts`).

The comparison metrics are not listed here: the writer records them in ``run.json``
(``metrics``: name, title, direction, scale, doc, taken from the comparison-operator
catalogue), and the reader takes them from there, so a metric added to the catalogue
reaches every table and the report without touching this file.
"""
from __future__ import annotations

import re

from .verdicts import SCORED, SCORED_NAMES, VERDICT_NAMES, Verdict

__all__ = ["SCORED", "SCORED_NAMES", "VERDICT_NAMES", "Verdict"]

# ---------------------------------------------------------------- files
RUN_JSON = "run.json"
IMAGES_JSON = "images.json"
MUTANTS_JSON = "mutants.json"
VERDICTS_CSV = "verdicts.csv"
SCORES_CSV = "scores.csv"
DISCREPANCIES_CSV = "discrepancies.csv"
MASKED_CSV = "masked_faults.csv"  # mutants killed on an fp32 stack, surviving on a compressed one (or the reverse)
PER_IMAGE = "per_image"  # .csv (campaign, comparison) and .json (comparison)
COMPARISON = "comparison"  # .csv and .json
PAIRWISE_CSV = "pairwise.csv"
BUILDS_CSV = "builds.csv"
RESULTS_SQLITE = "results.sqlite"
KILL_MATRIX_CSV = "kill_matrix.csv"
# programs/VIA/module.py: the Relax module of each import path; programs/VIA/tir/NAME.py: each
# PrimFunc a TIR mutant changes (the printed programs that exported mutant locations point into)
PROGRAMS_DIR = "programs"

# ---------------------------------------------------------------- columns
VERDICT_HEAD = ["mutant_id", "operator", "level", "site", "stack", "verdict", "reason"]
# passes_killed: of the repeated passes, how many met the kill criterion (empty: one pass judged);
# triage: a survivor's kind (`TRIAGE`; empty for every other verdict).
VERDICT_TAIL = ["flipped", "build_s", "run_s", "log_tail", "unstable", "images_run", "passes_killed", "triage"]
# The kinds of survivor, weakest first (the order the report lists them in).
TRIAGE = {
    "weak": "outputs changed on some image, below the kill criterion: more images will likely kill it",
    "no_effect": "outputs bit-identical to the original's on every image: the images never exercise the "
                 "change, or it is equivalent",
}
# score_low / score_high: the 95% Wilson interval of score; sampled / population: mutants
# (sites taken) and sites the group's operators have in the program.
SCORE_COLUMNS = ["stack", "group", "key", *VERDICT_NAMES, "score", "unstable", "score_low", "score_high",
                 "sampled", "population"]
DISCREPANCY_INFO = ["mutant_id", "operator", "level", "site", "unstable_on"]
# masked_faults.csv: one row per mutant and (fp32 stack, compressed stack of the same target)
# whose verdicts are killed on one and survived on the other; "masked": killed on fp32 only.
MASKED_COLUMNS = ["mutant_id", "operator", "level", "fp32_stack", "compressed_stack", "compression", "fp32_verdict",
                  "compressed_verdict", "direction"]
CAMPAIGN_PER_IMAGE_COLUMNS = ["mutant_id", "stack", "image", "original_top5", "mutant_top5", "flipped"]
# kill_matrix.csv: one row per judged mutant × stack × image
KILL_MATRIX_COLUMNS = ["mutant_id", "stack", "image", "killed_by_image"]
MUTANT_FIELDS = ["id", "operator", "level", "site", "status", "reason", "hash", "diff"]
# builds.csv: one row per build (artifact) of a campaign
BUILD_COLUMNS = ["artifact", "program", "stack", "status", "build_s", "run_s", "cached", "schedule", "scheduled",
                 "untouched", "tuned_hits", "tuned_misses", "kernels_compiled", "kernels_reused", "settles"]
LATENCY_COLUMNS = ["latency_ms_median", "latency_ms_p10", "latency_ms_p90"]
COMPARISON_HEAD = ["variant", "baseline"]
# What each variant costs: its compression, the threads it ran on, its deployable size and
# parameter counts (nonzeros: what a sparse format would store).
COST_COLUMNS = ["compression", "threads", "size_bytes", "parameters", "nonzeros"]
COMPARISON_TAIL = ["path", "latency_flag", "accuracy", *COST_COLUMNS, "build_s", "error"]
PAIRWISE_HEAD = ["variant_a", "variant_b"]
COMPARISON_PER_IMAGE_COLUMNS = ["image", "label", "variant", "top1", "top1_score", "top5",
                                "agrees_with_baseline", "latency_ms"]

# Run folders written before run.json recorded its metrics held exactly these.
LEGACY_METRICS = [
    {"name": "top1_agreement", "title": "Top-1 agr.", "direction": "higher_is_closer", "scale": "unit",
     "doc": "share of images with the same top-1 label (1 = identical)"},
    {"name": "topk_overlap", "title": "Top-k overlap", "direction": "higher_is_closer", "scale": "unit",
     "doc": "overlap of the top-k label sets (1 = identical)"},
    {"name": "kendall_tau", "title": "Kendall τ", "direction": "higher_is_closer", "scale": "signed_unit",
     "doc": "rank correlation of the scores (1 = same order)"},
    {"name": "rbo", "title": "RBO", "direction": "higher_is_closer", "scale": "unit",
     "doc": "rank-biased overlap of the rankings (1 = identical)"},
    {"name": "max_abs_error", "title": "Max abs err", "direction": "lower_is_closer", "scale": "distance",
     "doc": "largest absolute difference of an output value (0 = identical)"},
    {"name": "rel_l2", "title": "Rel. L2", "direction": "lower_is_closer", "scale": "distance",
     "doc": "relative L2 distance of the outputs (0 = identical)"},
    {"name": "cosine", "title": "Cosine", "direction": "higher_is_closer", "scale": "unit",
     "doc": "cosine similarity of the outputs (1 = identical)"},
    {"name": "latency_ratio", "title": "Latency ×", "direction": "lower_is_closer", "scale": "ratio",
     "doc": "median latency of A over B (1 = same speed)"},
]


def metric_names(metrics: list[dict]) -> list[str]:
    return [m["name"] for m in metrics]


def verdict_columns(metrics: list[dict], counts: list[str] = ()) -> list[str]:
    """verdicts.csv: mutant and stack, verdict, every metric, the count terms the kill
    criterion reads (beyond ``flipped``), then flips, timings, log, stability."""
    return [*VERDICT_HEAD, *metric_names(metrics), *counts, *VERDICT_TAIL]


def comparison_columns(metrics: list[dict]) -> list[str]:
    """comparison.csv: variant and baseline, every metric, latency spread, accuracy, build time, error."""
    return [*COMPARISON_HEAD, *metric_names(metrics), *LATENCY_COLUMNS, *COMPARISON_TAIL]


def pairwise_columns(metrics: list[dict]) -> list[str]:
    return [*PAIRWISE_HEAD, *metric_names(metrics)]


# ---------------------------------------------------------------- programs/ (printed programs)

def program_folder(via: str) -> str:
    """The folder of an import path under programs/ (letters, digits, ``.``, ``_``, ``-`` kept)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", via or "") or "program"


def tir_function(mutant: dict) -> str:
    """The PrimFunc a TIR mutant changes: named in its diff's header (``--- original NAME``),
    else the start of its site text (``conv2d / block ...``, ``add: loop ...``)."""
    found = re.match(r"--- original (\S+)", mutant.get("diff") or "")
    if found:
        return found.group(1)
    return re.split(r" / |: ", mutant.get("site") or "", maxsplit=1)[0].strip()


def program_path(mutant: dict) -> str:
    """The printed program a mutant points into, relative to programs/: VIA/module.py (the
    Relax module) or, for a TIR mutant, VIA/tir/NAME.py (the lowered PrimFunc it changes)."""
    folder = program_folder(mutant.get("via") or "")
    if mutant.get("level") == "tir":
        return f"{folder}/tir/{tir_function(mutant)}.py"
    return f"{folder}/module.py"
