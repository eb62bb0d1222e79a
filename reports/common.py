"""Formatting and small helpers shared by the campaign and comparison pages."""
from __future__ import annotations

import json
import math
import re
from datetime import datetime

import pandas as pd

# Only a base64 image data URI may go into the page's <style> block: anything else
# could close the block, so it is dropped and the image shows a placeholder.
_DATA_URI = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+=*")


def is_missing(v) -> bool:
    if v is None or v is pd.NA:
        return True
    return isinstance(v, float) and math.isnan(v)


def to_float(v) -> float | None:
    if is_missing(v) or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def to_bool(v) -> bool:
    if is_missing(v):
        return False
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v)


def fmt_num(v, digits: int = 4) -> str:
    f = to_float(v)
    if f is None:
        return "—"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    if f == 0:
        return "0"
    if abs(f) >= 1000 or abs(f) < 1e-3:
        return f"{f:.{max(1, digits - 2)}e}"
    return f"{f:.{digits}g}"


def fmt_seconds(v) -> str:
    f = to_float(v)
    if f is None:
        return "—"
    if f < 60:
        return f"{f:.1f} s"
    minutes, seconds = divmod(int(round(f)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def fmt_date(v) -> str:
    if not v:
        return "—"
    try:
        return datetime.fromisoformat(str(v)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(v)


def sort_key(v) -> str:
    """Value for a table cell's data-sort attribute: numbers as numbers, else the text."""
    f = to_float(v)
    return repr(f) if f is not None else ""


def thumbnails(images: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """CSS rules (index, uri) for valid thumbnails and a name -> index map."""
    rules, index = [], {}
    for i, img in enumerate(images):
        name = str(img.get("name", ""))
        index.setdefault(name, i)
        uri = str(img.get("thumbnail") or "")
        if _DATA_URI.fullmatch(uri):
            rules.append({"i": i, "uri": uri})
    return rules, index


def parse_topk(text) -> list[dict]:
    """A JSON list of [label, score] pairs as rows; unreadable text becomes one row."""
    if is_missing(text) or text == "":
        return []
    try:
        pairs = json.loads(text) if isinstance(text, str) else text
        return [{"label": str(p[0]), "score": fmt_num(p[1], 3) if len(p) > 1 else ""} for p in pairs]
    except (ValueError, TypeError, IndexError, KeyError):
        return [{"label": str(text), "score": ""}]


def run_overview(meta: dict) -> list[tuple[str, str]]:
    """The (label, value) pairs shared by both pages' overview."""
    images = meta.get("images", "")
    if isinstance(images, (dict, list)):
        images = json.dumps(images)
    count = meta.get("image_count")
    image_text = f"{images} ({count} images)" if count is not None else str(images)
    return [
        ("Model", str(meta.get("model", "—"))),
        ("Image set", image_text),
        ("Preprocessing", str(meta.get("preprocessing") or meta.get("preset") or "—")),
        ("Started", fmt_date(meta.get("started"))),
        ("Finished", fmt_date(meta.get("finished"))),
        ("Time spent", fmt_seconds(meta.get("duration_s"))),
        ("MutateNN", str(meta.get("mutatenn_version", "—"))),
    ]
