"""The comparison (differential testing) page's content, built from a RunData's tables."""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import charts
from .common import fmt_num, is_missing, run_overview, sort_key, thumbnails, to_bool, to_float
from .rundata import RunData


@dataclass(frozen=True)
class ComparisonCaps:
    """Limits that keep a large comparison's page small; the page states them."""

    disagreement_images: int = 120


DISTANCE_ALIKE, DISTANCE_DIFFERS = 1e-6, 1e-1


def _goodness(scale: str, value: float | None) -> float | None:
    """Map a metric value to [0, 1] where 1 means 'behaves like the other variant', by the
    metric's scale as run.json states it (no scale: no colour)."""
    if value is None:
        return None
    if scale == "unit":
        return value
    if scale == "signed_unit":
        return (value + 1) / 2
    if scale == "distance":
        # Absolute log scale: float32 rounding noise (<= 1e-6) is "alike", >= 0.1 "differs".
        if not math.isfinite(value):
            return 0.0
        if value <= DISTANCE_ALIKE:
            return 1.0
        span = math.log10(DISTANCE_DIFFERS) - math.log10(DISTANCE_ALIKE)
        return max(0.0, 1.0 - (math.log10(value) - math.log10(DISTANCE_ALIKE)) / span)
    if scale == "ratio":
        return 1.0 - min(1.0, abs(math.log2(value))) if value > 0 else 0.0
    return None


def _table_columns(run: RunData) -> list[tuple[str, str]]:
    """The comparison table: variant, baseline, every metric run.json lists, latency spread,
    accuracy. A failed variant's row gives its reason across the value columns."""
    return ([("variant", "Variant"), ("path", "Framework path"), ("baseline", "Baseline")]
            + [(m["name"], m["title"]) for m in run.metrics]
            + [("latency_ms_median", "Median ms"), ("latency_ms_p10", "p10 ms"), ("latency_ms_p90", "p90 ms"),
               ("latency_flag", "Latency flag"), ("accuracy", "Accuracy")]
            + [(k, t) for k, t in _COST_TITLES if k in run.comparison.columns])


_COST_TITLES = [("compression", "Compression"), ("threads", "Threads"), ("size_bytes", "Size (bytes)"),
                ("parameters", "Parameters"), ("nonzeros", "Nonzeros")]
LEADING_COLUMNS = 3  # variant, path, baseline: shown in a failed variant's row before its reason
_TEXT_COLUMNS = {"variant", "path", "baseline", "latency_flag", "compression"}


def _costs(comp: list[dict]) -> dict | None:
    """The cost-and-loss picture: latency against agreement, area by size, Pareto front
    (None for folders written before sizes were recorded)."""
    if not comp or "size_bytes" not in comp[0]:
        return None
    points = [{"label": str(r["variant"]), "latency": to_float(r.get("latency_ms_median")),
               "agreement": to_float(r.get("top1_agreement")), "size": to_float(r.get("size_bytes"))} for r in comp]
    svg = charts.cost_scatter_svg(points)
    if svg is None:
        return None
    return {"svg": svg, "front": sorted(charts.pareto_front(points)),
            "threads": next((r.get("threads") for r in comp if to_float(r.get("threads")) is not None), None)}


def _text(v) -> str:
    """A text cell: an empty or missing value (NaN in a CSV read back) is blank, never "nan"."""
    return "" if is_missing(v) else str(v)


def _cell(key: str, v) -> tuple[str, str]:
    """(text, sort key) of one comparison-table cell; a missing number is blank too."""
    if key in _TEXT_COLUMNS:
        return _text(v), ""
    return ("" if to_float(v) is None else fmt_num(v)), sort_key(v)


def _variants(run: RunData) -> list[str]:
    names = []
    baseline = run.meta.get("baseline")
    for v in ([baseline] if baseline else []) + list(run.meta.get("variants") or []):
        v = str(v.get("name") if isinstance(v, dict) else v)
        if v not in names:
            names.append(v)
    for col in ("variant_a", "variant_b"):
        for v in run.pairwise[col].unique():
            if v and v not in names:
                names.append(v)
    for v in run.comparison["variant"].unique():
        if v and v not in names:
            names.append(v)
    return names


def _pairwise_maps(run: RunData, variants: list[str]) -> list[dict]:
    pw = run.pairwise
    maps = []
    for info in run.metrics:
        metric, scale = info["name"], info.get("scale", "other")
        if metric not in pw.columns:
            continue
        values = {(r["variant_a"], r["variant_b"]): to_float(r[metric])
                  for r in pw[["variant_a", "variant_b", metric]].to_dict("records")}
        if all(v is None for v in values.values()):
            continue

        def cell(a, b, values=values, metric=metric, scale=scale):
            if (a, b) not in values:
                return None, "—" if a != b else "=", f"{a} vs {b}: no value"
            v = values[(a, b)]
            return (_goodness(scale, v), fmt_num(v, 3),
                    f"{metric}({a}, {b}) = {fmt_num(v, 6)}")

        maps.append({"metric": metric, "title": info["title"], "help": info.get("doc", ""),
                     "chart": charts.heatmap(variants, variants, cell, cell_w=60, rotate_cols=True)})
    return maps


def _disagreements(run: RunData, variants: list[str], caps: ComparisonCaps, thumb_index: dict) -> dict:
    pi = run.per_image
    if not len(pi):
        return {"images": [], "total": 0, "variants": []}
    pi = pi.copy()
    pi["_agree"] = pi["agrees_with_baseline"].map(lambda v: True if v is None or v != v else to_bool(v))
    bad = list(dict.fromkeys(pi.loc[~pi["_agree"].astype(bool), "image"]))
    shown = set(bad[: caps.disagreement_images])
    order = {v: i for i, v in enumerate(variants)}
    cols = sorted(pi["variant"].unique(), key=lambda v: (order.get(v, len(order)), v))
    by_image: dict = {}
    for r in pi[pi["image"].isin(shown)].to_dict("records"):
        entry = by_image.setdefault(r["image"], {"name": r["image"], "label": r["label"],
                                                 "thumb": thumb_index.get(r["image"]), "cells": {}})
        entry["cells"][r["variant"]] = {"top1": r["top1"], "score": fmt_num(r["top1_score"], 3),
                                        "agree": bool(r["_agree"])}
    images = [by_image[n] for n in bad[: caps.disagreement_images] if n in by_image]
    for img in images:
        img["row"] = [img["cells"].get(v) for v in cols]
    return {"images": images, "total": len(bad), "variants": cols,
            "image_count": pi["image"].nunique()}


def build_comparison_context(run: RunData, caps: ComparisonCaps = ComparisonCaps()) -> dict:
    """Everything comparison.html.j2 needs, as plain Python values."""
    meta = run.meta
    variants = _variants(run)
    comp = run.comparison.to_dict("records")
    latency = [{"label": r["variant"], "median": to_float(r["latency_ms_median"]),
                "p10": to_float(r["latency_ms_p10"]), "p90": to_float(r["latency_ms_p90"]),
                "value": f"{fmt_num(r['latency_ms_median'], 3)} ms",
                "text": (f"{fmt_num(r['latency_ms_median'], 3)} ms "
                         f"(p10 {fmt_num(r['latency_ms_p10'], 3)} – p90 {fmt_num(r['latency_ms_p90'], 3)})")}
               for r in comp]
    columns = _table_columns(run)
    table = [[_cell(k, r.get(k)) for k, _ in columns] for r in comp]
    thumb_rules, thumb_index = thumbnails(run.images)
    baseline = meta.get("baseline")
    baseline = str(baseline.get("name") if isinstance(baseline, dict) else baseline or "—")
    return {
        "title": f"Differential comparison — {meta.get('model', 'model')}",
        "overview": run_overview(meta) + [
            ("Baseline", baseline),
            ("Variants", ", ".join(v for v in variants if v != baseline) or "—"),
        ],
        "variants": variants,
        "pairwise": _pairwise_maps(run, variants),
        "costs": _costs(comp),
        "latency": charts.range_chart(latency) if any(l["median"] is not None for l in latency) else None,
        # older folders have no latency_flag column: nothing flagged
        "latency_flags": [(str(r["variant"]), str(r["latency_flag"])) for r in comp
                          if isinstance(r.get("latency_flag"), str) and r.get("latency_flag")],
        "disagreements": _disagreements(run, variants, caps, thumb_index),
        "table_columns": [t for _, t in columns],
        "table_numeric": [k not in _TEXT_COLUMNS for k, _ in columns],
        "table_failed": [_text(r.get("error")) for r in comp],
        "leading_columns": LEADING_COLUMNS,
        "failed": [(str(r["variant"]), _text(r.get("error"))) for r in comp if _text(r.get("error"))],
        "table": table,
        "thumb_rules": thumb_rules,
        "caps": caps,
    }
