"""The stack's score again on the old images plus the new ones, by the campaign engine
itself: the old set is written as PNGs beside the new images (a bundled set reads back
as the same input tensors), a campaign config for the one stack and the same mutants is
written next to them, and `run_campaign` rebuilds and judges every mutant. The cover (a
smallest set of old + new images killing every mutant some image kills) is the kill
matrix's greedy cover of that run (`reports.campaign.greedy_cover`).
"""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd

from runfolder import schema

from ..outputs import write_csv, write_json, write_text_atomic

RESCORE_DIR = "rescore"
COVER_CSV = "cover.csv"
KILLS_CSV = "kills.csv"
SUMMARY_JSON = "summary.json"
# [run] keys the rescoring campaign leaves out: saved outputs of the old image set, a
# build cache named relative to a config file it does not have, and fast kill (the
# cover needs every image's verdict).
DROPPED_RUN_KEYS = ("reference", "build_cache", "fast_kill")


def write_image_folder(folder: Path, images, new_dir: Path) -> list[str]:
    """The old set (as PNGs, in its labels' sub-folders when labelled) and the new images
    (copied from ``new_dir``) in ``folder``; returns the old images' names there."""
    from .session import image_path, write_png

    folder.mkdir(parents=True, exist_ok=True)
    taken, old = set(), []
    for name, image, label in zip(images.names, images.images, images.labels):
        stem = Path(name).stem if Path(name).stem not in taken else Path(name).name.replace(".", "_")
        taken.add(stem)
        rel = image_path(label if images.has_labels else None, f"{stem}.png")
        write_png(folder / rel, image)
        old.append(rel)
    for file in sorted(new_dir.rglob("*.png")):
        target = folder / file.relative_to(new_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    return old


def rescore_config(meta: dict, stack: str, image_folder: Path, mutants: list[tuple[str, int]]) -> dict:
    """The run's config for ``stack`` alone, the same mutants (operator, site index) and
    the image folder."""
    raw = json.loads(json.dumps(meta.get("config") or {}))
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    raw["model"] = {**model, "spec": meta["model"]}
    raw["images"] = {"spec": str(image_folder.resolve())}
    raw["stacks"] = [s for s in raw.get("stacks", []) if s.get("name") == stack]
    positions: dict[str, list[int]] = {}
    for operator, site in mutants:
        positions.setdefault(operator, []).append(site)
    raw["mutants"] = {"operators": {op: {"positions": sorted(set(sites))} for op, sites in positions.items()}}
    run = {k: v for k, v in raw.get("run", {}).items() if k not in DROPPED_RUN_KEYS}
    raw["run"] = run
    return raw


def stack_mutants(run_dir: Path, stack: str) -> list[tuple[str, int]]:
    """(operator, site index) of every mutant the run judged (or settled) on ``stack``."""
    db = sqlite3.connect(f"file:{Path(run_dir) / schema.RESULTS_SQLITE}?mode=ro", uri=True)
    try:
        return [(op, int(site)) for op, site in db.execute(
            "SELECT m.operator, m.site_index FROM verdicts v JOIN mutants m ON m.id = v.mutant_id "
            "WHERE v.stack = ? ORDER BY m.ordinal", (stack,))]
    finally:
        db.close()


def rescore(run_dir: Path, stack: str, out: Path, jobs: int, quiet: bool) -> Path:
    """Run the campaign of the stack's mutants on old + new images in ``out/rescore``
    (resumed when its images are the same as last time); returns its run folder."""
    import tomli_w

    from ..campaign import run_campaign
    from ..config import load_config
    from ..execute import cached_images
    from ..repro import _campaign_meta

    meta = _campaign_meta(run_dir)
    folder = out / RESCORE_DIR
    new_images = sorted(str(p.relative_to(out)) for p in (out / "images").rglob("*.png"))
    manifest = folder / "new_images.json"
    if folder.exists() and (not manifest.is_file() or json.loads(manifest.read_text()) != new_images):
        shutil.rmtree(folder)  # images were added since: the rescoring campaign is redone
    if not (folder / "campaign.toml").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_image_folder(folder / "images", cached_images(meta["images"]), out / "images")
        raw = rescore_config(meta, stack, folder / "images", stack_mutants(run_dir, stack))
        write_text_atomic(folder / "campaign.toml", tomli_w.dumps(raw))
        write_json(manifest, new_images)
    config = load_config(folder / "campaign.toml")
    run_campaign(config, folder / "run", jobs=jobs, quiet=quiet, render=False)
    return folder / "run"


def stack_score(run_dir: Path, stack: str) -> dict:
    """The ``all`` row of a run's scores.csv for ``stack``."""
    scores = pd.read_csv(Path(run_dir) / schema.SCORES_CSV)
    row = scores[(scores["stack"] == stack) & (scores["group"] == "all")].iloc[0]
    return {"score": float(row["score"]), "killed": int(row["killed"]), "survived": int(row["survived"])}


def kills_by_image(run_dir: Path, stack: str) -> dict[str, set[str]]:
    """image -> the mutants it kills alone on ``stack`` (the run's kill_matrix.csv)."""
    matrix = pd.read_csv(Path(run_dir) / schema.KILL_MATRIX_CSV, dtype=str, keep_default_na=False)
    matrix = matrix[matrix["stack"] == stack]
    kills: dict[str, set[str]] = {}
    for image, mutant, hit in matrix[["image", "mutant_id", "killed_by_image"]].itertuples(index=False):
        kills.setdefault(image, set())
        if hit == "1":
            kills[image].add(mutant)
    return kills


def write_cover(out: Path, rescored: Path, stack: str, new_names: set[str]) -> pd.DataFrame:
    """``cover.csv`` (the greedy cover: old images first on ties) and ``kills.csv`` (what
    each new image kills on its own in the rescoring run)."""
    from reports.campaign import greedy_cover

    kills = kills_by_image(rescored, stack)
    order = sorted(kills, key=lambda name: (name in new_names, name))
    chosen = greedy_cover(kills, order)
    cover = pd.DataFrame([{"image": name, "new": int(name in new_names), "kills": len(kills[name]),
                           "mutants": ";".join(sorted(kills[name]))} for name in chosen],
                         columns=["image", "new", "kills", "mutants"])
    write_csv(out / COVER_CSV, cover)
    new = pd.DataFrame([{"image": name, "kills": len(kills.get(name, ())),
                         "mutants": ";".join(sorted(kills.get(name, ())))} for name in sorted(new_names)],
                       columns=["image", "kills", "mutants"])
    write_csv(out / KILLS_CSV, new)
    return cover
