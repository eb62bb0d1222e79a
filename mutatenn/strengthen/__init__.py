"""`mutatenn strengthen`: images that kill what a campaign's stack let survive.

- `search`: the seeded random search in an image file's pixel space (no TVM);
- `worker`: one mutant's builds and search, in a worker process;
- `session`: the run folder read, the jobs sent, images and table lines written;
- `rescore`: the campaign engine run again on old + new images, and the image cover.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .search import MAX_EPSILON, TRANSFORMS
from .session import Request, StrengthenError, make_request

__all__ = ["MAX_EPSILON", "TRANSFORMS", "Request", "StrengthenError", "Strengthened", "make_request", "strengthen"]


@dataclass
class Strengthened:
    """What one `strengthen` call found and measured."""

    out: Path
    table: pd.DataFrame  # strengthen.csv
    before: dict  # the stack's score in the run: score, killed, survived
    after: dict | None  # the same on old + new images (None: no image found, nothing rescored)
    cover: pd.DataFrame | None
    rescored: Path | None
    seconds: float

    @property
    def killed(self) -> int:
        return int((self.table["outcome"] == "killed").sum())

    @property
    def queries(self) -> int:
        return int(pd.to_numeric(self.table["queries"], errors="coerce").fillna(0).sum())


def strengthen(request: Request, out: Path, quiet: bool = False, rescore_run: bool = True,
               timeout: float | None = None) -> Strengthened:
    """Search images for the request's survivors, then rescore the stack on old + new images."""
    from ..outputs import write_json
    from . import rescore
    from .session import run_search

    clock = time.perf_counter()
    out = Path(out)
    run_dir = Path(request.run_dir)
    table = run_search(request, out, quiet=quiet, timeout=timeout)
    before = rescore.stack_score(run_dir, request.stack)
    found = set(table.loc[table["outcome"] == "killed", "image"])
    after = cover = rescored = None
    if found and rescore_run:
        rescored = rescore.rescore(run_dir, request.stack, out, request.jobs, quiet)
        after = rescore.stack_score(rescored, request.stack)
        cover = rescore.write_cover(out, rescored, request.stack, found)
    result = Strengthened(out, table, before, after, cover, rescored, time.perf_counter() - clock)
    write_json(out / rescore.SUMMARY_JSON, {
        "run": str(run_dir), "stack": request.stack, "mutants_searched": len(table), "images_found": result.killed,
        "queries": result.queries, "score_before": before, "score_after": after,
        "cover": None if cover is None else list(cover["image"]), "seconds": round(result.seconds, 2),
        "search_seconds": round(float(pd.to_numeric(table["seconds"], errors="coerce").sum()), 2)})
    return result


def format_result(result: Strengthened) -> str:
    """What the command prints."""
    from .rescore import COVER_CSV

    t = result.table
    lines = [f"searched {len(t)} survived mutant(s): {result.killed} killed by a new image, "
             f"{result.queries} queries, {result.seconds:.1f} s"]
    for outcome, count in t["outcome"].value_counts().items():
        if outcome != "killed":
            lines.append(f"  {outcome.replace('_', ' ')}: {count}")
    b = result.before
    if result.after is not None:
        a = result.after
        lines.append(f"score on the stack: {b['score']:.1f}% ({b['killed']} killed, {b['survived']} survived) -> "
                     f"{a['score']:.1f}% ({a['killed']} killed, {a['survived']} survived) on old + new images")
        lines.append(f"smallest image set killing every killed mutant: {len(result.cover)} image(s), "
                     f"{int(result.cover['new'].sum())} new ({COVER_CSV})")
    else:
        lines.append(f"score on the stack: {b['score']:.1f}% (no new image: nothing rescored)")
    lines.append(f"new images: {(result.out / 'images').resolve()} (use with --images, or [images] spec)")
    return "\n".join(lines)
