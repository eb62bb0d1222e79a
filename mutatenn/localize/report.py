"""What a localisation writes: a terminal table, ``divergence.json`` / ``divergence.csv``
and ``localize.html`` (the divergence along the graph as an inline SVG chart)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .. import __version__
from ..outputs import write_csv, write_json
from .align import CONVERSION, SAME_PROGRAM

DIVERGENCE_CSV, DIVERGENCE_JSON, HTML = "divergence.csv", "divergence.json", "localize.html"
CURVE_COLUMNS = ["position", "layer_a", "layer_b", "kind_a", "kind_b", "shape", "checkpoint", "exact", "rel_l2",
                 "max_abs", "diverges", "first", "round"]
LOG_FLOOR, LOG_CEIL = -9.0, 1.0  # the chart's relative-L2 axis, log10


def curve_table(loc) -> pd.DataFrame:
    """One row per aligned pair read (all of them when the full curve was asked for)."""
    first = loc.search.first.pair.position if loc.search.first else None
    rows = []
    for pt in loc.search.points.values():
        row = pt.row()
        row["first"] = pt.pair.position == first
        rows.append(row)
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def summary(loc) -> dict:
    """The localisation in one JSON-able record."""
    s, p = loc.search, loc.pairing
    first = s.first
    out = {
        "model": p.model, "images": p.images_spec, "what": p.what, "a": p.a.text, "b": p.b.text,
        "alignment": SAME_PROGRAM if p.same_program else CONVERSION,
        "images_localised": loc.image_names, "images_disagreeing": loc.disagreeing,
        "tolerance": loc.tolerance, "per_round": loc.per_round, "output_rel_l2": loc.output_rel_l2,
        "diverges": loc.diverges, "rounds": s.rounds, "checkpoint_rounds": s.checkpoint_rounds,
        "scan_rounds": s.scan_rounds, "curve_rounds": s.curve_rounds, "builds": loc.builds,
        "build_s": round(loc.build_s, 3), "pairs": len(loc.pairs),
        "checkpoints": sum(1 for x in loc.pairs if x.checkpoint), "notes": list(loc.notes),
        "campaign": dict(p.campaign), "mutatenn_version": __version__,
    }
    if first is not None:
        out["first_divergence"] = {**first.row(), "op_a": first.pair.a.op,
                                   "op_b": first.pair.b.op}
        out["last_agreeing"] = _pair_names(s.last_agreeing)
        out["first_diverging_checkpoint"] = _pair_names(s.first_diverging_checkpoint)
        out["stretch"] = [_pair_names(x) for x in s.stretch]
    if loc.reduced is not None:
        out["reduced"] = loc.reduced.summary()
    if loc.fault_report is not None:
        out["conversion"] = loc.fault_report.summary()
    if loc.passes is not None:
        out["passes"] = loc.passes.summary()
    return out


def _pair_names(pair) -> dict | None:
    if pair is None:
        return None
    return {"position": pair.position, "layer_a": pair.a.name, "layer_b": pair.b.name, "kind": pair.a.kind}


def write_results(loc, out_dir: Path) -> Path:
    """divergence.csv, divergence.json and localize.html in ``out_dir`` (prepared by the caller)."""
    table = curve_table(loc)
    write_csv(out_dir / DIVERGENCE_CSV, table)
    # pandas writes non-finite values (a mutant reading garbage) as null: the file stays strict JSON.
    curve = json.loads(table.to_json(orient="records"))
    write_json(out_dir / DIVERGENCE_JSON, json.loads(pd.Series(summary(loc)).to_json()) | {"curve": curve})
    render_html(loc, table, out_dir / HTML)
    return out_dir


def headline(loc) -> str:
    """The one sentence a person reads first."""
    s = loc.search
    if not loc.diverges:
        return (f"no divergence above tolerance {loc.tolerance:g} (output relative L2 "
                f"{loc.output_rel_l2:.3g} on {len(loc.rows)} image(s))")
    f = s.first
    where = f.pair.a.describe() if f.pair.a.name == f.pair.b.name else f"{f.pair.a.describe()} / B {f.pair.b.describe()}"
    approx = "" if f.pair.exact else " (an approximate pair: ops folded on one side follow it)"
    return (f"first divergence at {where}{approx}: relative L2 {f.rel_l2:.3g}, max abs {f.max_abs:.3g} "
            f"(tolerance {loc.tolerance:g}); found in {s.checkpoint_rounds + s.scan_rounds} round(s) of at most "
            f"{loc.per_round} tensors, {loc.builds} builds in all")


def format_localization(loc) -> str:
    """The terminal view: the headline, then the curve."""
    table = curve_table(loc)
    lines = [f"A: {loc.pairing.a.text}", f"B: {loc.pairing.b.text}",
             f"images: {', '.join(loc.image_names[:6])}{' ...' if len(loc.image_names) > 6 else ''} "
             f"({loc.disagreeing} with different top-1 labels)", headline(loc)]
    if not table.empty:
        view = table[["position", "layer_a", "layer_b", "kind_a", "shape", "rel_l2", "max_abs", "checkpoint"]].copy()
        view.insert(0, "", [_marker(r) for r in table.itertuples(index=False)])
        lines += ["", view.to_string(index=False, float_format=lambda x: f"{x:.3g}"),
                  "(-> first divergence, x diverges, ~ approximate pair: ops folded on one side follow it)"]
    return "\n".join(lines)


def _marker(row) -> str:
    if row.first:
        return "->"
    return ("x" if row.diverges else "") + ("" if row.exact else "~")


def chart(table: pd.DataFrame, tolerance: float, width: int = 900, height: int = 260) -> dict:
    """Geometry of the divergence curve: log10 relative L2 against position along A's graph."""
    left, right, top, bottom = 56, 16, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    count = max(1, len(table) - 1)

    def sy(value: float) -> float:
        v = LOG_CEIL if not math.isfinite(value) else max(LOG_FLOOR, min(LOG_CEIL, math.log10(max(value, 1e-30))))
        return round(top + plot_h * (LOG_CEIL - v) / (LOG_CEIL - LOG_FLOOR), 2)

    points = []
    for n, row in enumerate(table.itertuples(index=False)):
        x = round(left + plot_w * (n / count if len(table) > 1 else 0.5), 2)
        points.append({"x": x, "y": sy(row.rel_l2), "label": f"{row.layer_a} / {row.layer_b} {row.kind_a} "
                       f"{row.shape}: relative L2 {row.rel_l2:.3g}, max abs {row.max_abs:.3g}",
                       "fill": "#c8362a" if row.diverges else "#218c50", "first": bool(row.first),
                       "name": row.layer_a})
    ticks = [{"y": sy(10.0 ** e), "label": f"1e{int(e)}"} for e in range(int(LOG_FLOOR), int(LOG_CEIL) + 1, 2)]
    return {"width": width, "height": height, "points": points, "ticks": ticks, "left": left,
            "right": width - right, "tolerance_y": sy(tolerance), "line": " ".join(f"{p['x']},{p['y']}" for p in points),
            "axis_y": height - bottom + 14}


def render_html(loc, table: pd.DataFrame, path: Path) -> Path:
    """localize.html, through the reports room's template environment (base.html.j2)."""
    from datetime import datetime, timezone

    from reports.render import render_page

    s = summary(loc)
    overview = [("A", s["a"]), ("B", s["b"]), ("model", s["model"]), ("images", ", ".join(s["images_localised"])),
                ("top-1 disagreements", s["images_disagreeing"]), ("alignment", s["alignment"]),
                ("tolerance", f"{loc.tolerance:g}"), ("rounds / builds", f"{s['rounds']} / {s['builds']}")]
    context = {"title": f"Localisation: {s['a']} vs {s['b']}", "version": __version__, "thumb_rules": [],
               "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "headline": headline(loc), "overview": overview, "chart": chart(table, loc.tolerance),
               "rows": table.to_dict(orient="records"), "notes": s["notes"],
               "reduced": s.get("reduced"), "conversion": s.get("conversion")}
    return render_page("localize.html.j2", context, path)
