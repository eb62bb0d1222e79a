"""Geometry and colours for the inline SVG charts; the templates draw them."""
from __future__ import annotations

import math

CHAR_W = 6.6  # average glyph width at 12px in the system sans-serif, for label columns
LABEL_MAX_CHARS = 34


def short_label(text: str, limit: int = LABEL_MAX_CHARS) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label_width(labels, limit: int = LABEL_MAX_CHARS) -> float:
    longest = max((len(short_label(t, limit)) for t in labels), default=4)
    return min(limit * CHAR_W, max(48.0, longest * CHAR_W)) + 10


def _mix(a: tuple, b: tuple, t: float) -> tuple:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


# Red (bad) -> sand -> green (good): matches the verdict colours (killed green).
_STOPS = ((0.0, (200, 54, 42)), (0.5, (246, 214, 150)), (1.0, (33, 140, 80)))


def scale_colour(t: float | None) -> tuple[str, str]:
    """Fill and text colour for a value in [0, 1] where 1 is good; None is 'no data'."""
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return "#eef0f3", "#6b7280"
    t = min(1.0, max(0.0, float(t)))
    for (t0, c0), (t1, c1) in zip(_STOPS, _STOPS[1:]):
        if t <= t1:
            rgb = _mix(c0, c1, (t - t0) / (t1 - t0))
            break
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    text = "#111827" if luminance > 150 else "#ffffff"
    return "#%02x%02x%02x" % rgb, text


def bar_chart(items: list[tuple[str, float | None, str]], bar_h: int = 26, width: int = 640) -> dict:
    """Horizontal bars for percentages: items are (label, value 0..100 or None, value text)."""
    lw = label_width([i[0] for i in items])
    plot_w = width - lw - 70
    gap = 10
    bars = []
    for n, (label, value, text) in enumerate(items):
        y = 8 + n * (bar_h + gap)
        w = 0.0 if value is None else plot_w * max(0.0, min(100.0, value)) / 100.0
        fill = "#3b6ea5"
        bars.append({
            "label": label, "short": short_label(label), "x": lw, "y": y, "w": round(w, 1),
            "h": bar_h, "text": text, "fill": fill, "text_x": lw + w + 6, "mid": y + bar_h / 2 + 4,
            "value": "" if value is None else f"{value:.2f}",
        })
    height = 8 + len(items) * (bar_h + gap) + 18
    ticks = [{"x": lw + plot_w * p / 100, "label": f"{p}%"} for p in (0, 25, 50, 75, 100)]
    return {"width": width, "height": height, "bars": bars, "ticks": ticks, "label_w": lw,
            "plot_w": plot_w, "axis_y": height - 14, "plot_bottom": height - 22}


ROW_LABEL_MAX_CHARS = 80  # heat-map row names (operators) are shown whole up to this length
ROW_CHAR_W = 7.4  # a generous glyph width: a row name must never run past the left edge


def heatmap(row_labels, col_labels, cell, cell_w: int = 76, cell_h: int = 26,
            rotate_cols: bool = False) -> dict:
    """A grid; cell(r, c) returns (value for colour in [0,1] or None, text, title).

    rotate_cols slants the column names so that many long names fit above narrow cells.
    Row names are shown whole (they are operator or variant names a reader looks for), so
    the label column is sized for the longest with room to spare; cells are as wide as
    their longest text ("all equivalent").
    """
    contents = {(r, c): cell(r, c) for r in row_labels for c in col_labels}
    longest_row = max((len(short_label(r, ROW_LABEL_MAX_CHARS)) for r in row_labels), default=4)
    lw = max(48.0, longest_row * ROW_CHAR_W) + 14
    longest = max((len(short_label(c)) for c in col_labels), default=0)
    cell_w = int(max(cell_w, max((len(str(t)) for _, t, _ in contents.values()), default=0) * CHAR_W + 14))
    if rotate_cols:
        col_lim = LABEL_MAX_CHARS
        top = int(16 + longest * 7.4 * 0.65)  # bold names run wider than CHAR_W
    else:
        # Wide enough for the column names, up to a limit; longer names are cut with a tooltip.
        cell_w = int(max(cell_w, min(170, longest * 7.2 + 14)))
        col_lim = max(6, int(cell_w / CHAR_W) - 1)
        top = 34
    cells = []
    for i, r in enumerate(row_labels):
        for j, c in enumerate(col_labels):
            t, text, title = contents[(r, c)]
            fill, ink = scale_colour(t)
            x, y = lw + j * cell_w, top + i * cell_h
            cells.append({"row": r, "col": c, "x": x, "y": y, "w": cell_w - 2, "h": cell_h - 2,
                          "fill": fill, "ink": ink, "text": text, "title": title,
                          "tx": x + (cell_w - 2) / 2, "ty": y + cell_h / 2 + 3})
    rows = [{"label": r, "short": short_label(r, ROW_LABEL_MAX_CHARS), "y": top + i * cell_h + cell_h / 2 + 3}
            for i, r in enumerate(row_labels)]
    cols = [{"label": c, "short": short_label(c, col_lim), "x": lw + j * cell_w + cell_w / 2}
            for j, c in enumerate(col_labels)]
    extra = longest * 7.4 * 0.8 if rotate_cols else 4  # slanted names reach past the last column
    return {"width": int(lw + len(col_labels) * cell_w + extra), "height": top + len(row_labels) * cell_h + 4,
            "cells": cells, "rows": rows, "cols": cols, "label_w": lw, "header_y": top - 10,
            "rotate": rotate_cols}


def stacked_bars(rows: list[tuple[str, dict]], order, width: int = 640, bar_h: int = 22) -> dict:
    """One horizontal bar per label split by category counts (e.g. verdicts per stack)."""
    lw = label_width([r[0] for r in rows])
    plot_w = width - lw - 10
    out = []
    for n, (label, counts) in enumerate(rows):
        total = sum(counts.get(k, 0) for k in order) or 1
        y = 6 + n * (bar_h + 10)
        x = lw
        segs = []
        for k in order:
            v = counts.get(k, 0)
            if v:
                w = plot_w * v / total
                segs.append({"key": k, "x": round(x, 2), "w": round(w, 2), "count": v})
                x += w
        out.append({"label": label, "short": short_label(label), "y": y, "h": bar_h,
                    "mid": y + bar_h / 2 + 4, "segs": segs})
    return {"width": width, "height": 6 + len(rows) * (bar_h + 10), "bars": out, "label_w": lw}


def range_chart(items: list[dict], width: int = 640, row_h: int = 30) -> dict:
    """Median dot with a p10-p90 line per item: items have label, median, p10, p90 (numbers or None)."""
    lw = label_width([i["label"] for i in items])
    plot_w = width - lw - 80  # room for the median's value right of the p90 end
    finite = [v for i in items for v in (i["median"], i["p10"], i["p90"]) if v is not None]
    hi = max(finite, default=1.0) or 1.0
    hi = _nice_ceiling(hi * 1.05)

    def sx(v):
        return round(lw + plot_w * v / hi, 2)

    rows = []
    for n, it in enumerate(items):
        y = 14 + n * row_h
        p10 = it["p10"] if it["p10"] is not None else it["median"]
        p90 = it["p90"] if it["p90"] is not None else it["median"]
        rows.append({**it, "short": short_label(it["label"]), "y": y,
                     "x10": None if p10 is None else sx(p10), "x90": None if p90 is None else sx(p90),
                     "xm": None if it["median"] is None else sx(it["median"]),
                     "x_text": max(x for x in (sx(p10 or 0), sx(p90 or 0), sx(it["median"] or 0))) + 10})
    plot_bottom = 14 + len(items) * row_h - row_h / 2 + 6
    ticks = [{"x": sx(hi * f), "label": _fmt_tick(hi * f)} for f in (0, 0.2, 0.4, 0.6, 0.8, 1)]
    return {"width": width, "height": plot_bottom + 22, "rows": rows, "ticks": ticks,
            "label_w": lw, "plot_bottom": plot_bottom, "axis_y": plot_bottom + 16}


def _nice_ceiling(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * mag:
            return m * mag
    return 10 * mag


def _fmt_tick(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.3g}"


def pareto_front(points: list[dict]) -> set[str]:
    """Labels of the points no other point beats: lower latency and higher agreement, one
    at least strictly (ties kept). Points without both figures are never on the front."""
    ok = [p for p in points if _finite(p.get("latency")) and _finite(p.get("agreement"))]
    front = set()
    for p in ok:
        beaten = any(q["latency"] <= p["latency"] and q["agreement"] >= p["agreement"]
                     and (q["latency"] < p["latency"] or q["agreement"] > p["agreement"]) for q in ok)
        if not beaten:
            front.add(p["label"])
    return front


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def cost_scatter_svg(points: list[dict]) -> str | None:
    """Latency (x) against top-1 agreement with the baseline (y), one point per variant,
    point area by deployable size, the Pareto front joined and ringed: an inline SVG
    drawn by matplotlib (no network, no script). ``points``: label, latency (ms),
    agreement (0..1), size (bytes, may be missing). None when no point has both figures."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ok = [p for p in points if _finite(p.get("latency")) and _finite(p.get("agreement"))]
    if not ok:
        return None
    front = pareto_front(ok)
    sizes = [p["size"] for p in ok if _finite(p.get("size"))]
    biggest = max(sizes) if sizes else 1.0
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for p in ok:
        area = 40 + 500 * (p["size"] / biggest if _finite(p.get("size")) and biggest > 0 else 0.2)
        on_front = p["label"] in front
        ax.scatter([p["latency"]], [p["agreement"]], s=area, alpha=0.55, color="#218c50" if on_front else "#7b93ad",
                   edgecolors="#1e3a5f" if on_front else "white", linewidths=2 if on_front else 1, gid=f"point-{p['label']}")
        ax.annotate(short_label(p["label"], 28), (p["latency"], p["agreement"]), fontsize=7, xytext=(6, 4),
                    textcoords="offset points")
    line = sorted((p for p in ok if p["label"] in front), key=lambda p: p["latency"])
    ax.plot([p["latency"] for p in line], [p["agreement"] for p in line], color="#218c50", linestyle="--",
            linewidth=1, gid="pareto-front")
    ax.set_xlabel("median latency per image (ms)")
    ax.set_ylabel("top-1 agreement with the baseline")
    ax.grid(True, alpha=0.3)
    low = min(p["agreement"] for p in ok)
    ax.set_ylim(max(0.0, low - 0.05), 1.02)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg")
    svg = out.getvalue()
    return svg[svg.index("<svg"):]
