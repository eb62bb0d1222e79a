"""Read a run folder (docs/RUN-FOLDER.md) into pandas tables."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runfolder import schema

VERDICTS = schema.VERDICT_NAMES
# Verdicts that count in the mutation score's denominator.
SCORED_VERDICTS = schema.SCORED_NAMES

# Columns that hold names or free text: read as strings so that an image called
# "NA" or an operator called "1e3" stays what it is.
TEXT_COLUMNS = {
    "mutant_id", "operator", "level", "site", "stack", "verdict", "reason", "log_tail",
    "image", "original_top5", "mutant_top5", "group", "key", "variant", "baseline",
    "variant_a", "variant_b", "label", "top1", "top5", "triage",
}
BOOL_COLUMNS = {"agrees_with_baseline"}


class RunFolderError(ValueError):
    """A run folder that cannot be read; the message is one line for the user."""


@dataclass
class RunData:
    """Everything a report needs from one run folder."""

    path: Path
    meta: dict
    images: list[dict]
    mutants: pd.DataFrame = field(default_factory=pd.DataFrame)
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_image: pd.DataFrame = field(default_factory=pd.DataFrame)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    discrepancies: pd.DataFrame = field(default_factory=pd.DataFrame)
    masked: pd.DataFrame | None = None  # masked_faults.csv (campaigns with compression stacks)
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    pairwise: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: list[dict] = field(default_factory=list)  # what run.json says the writer measured

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", ""))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _clean(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Give a table the documented columns (missing ones empty) and tidy text columns."""
    for col in columns:
        if col not in df.columns:
            df[col] = pd.NA
    for col in df.columns:
        if col in TEXT_COLUMNS:
            df[col] = df[col].map(lambda v: "" if _is_missing(v) else str(v))
        elif col in BOOL_COLUMNS:
            df[col] = df[col].map(_to_bool)
    return df


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA


def _to_bool(value):
    if _is_missing(value):
        return pd.NA
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _read_csv(path: Path, columns: list[str], all_text: bool = False) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=columns)
    try:
        header = pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=columns)
    dtypes = {c: str for c in header if all_text or c in TEXT_COLUMNS}
    # Only the empty field is missing; "NA" or "null" may be a real image or label name.
    df = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
    if all_text:
        return df.fillna("").pipe(_clean, columns)
    return _clean(df, columns)


def _read_table(folder: Path, stem: str, columns: list[str]) -> pd.DataFrame:
    """CSV if present, else the JSON twin (a list of records), else an empty table."""
    csv_path, json_path = folder / f"{stem}.csv", folder / f"{stem}.json"
    if csv_path.exists() or not json_path.exists():
        return _read_csv(csv_path, columns)
    records = _read_json(json_path)
    return _clean(pd.DataFrame.from_records(records), columns)


def _read_mutants(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=schema.MUTANT_FIELDS)
    records = _read_json(path)
    if not isinstance(records, list):
        raise RunFolderError(f"{path}: expected a list of mutants")
    df = pd.DataFrame.from_records(records)
    for col in schema.MUTANT_FIELDS:
        if col not in df.columns:
            df[col] = ""
    for col in schema.MUTANT_FIELDS:
        df[col] = df[col].map(lambda v: "" if _is_missing(v) else str(v))
    return df


def _metrics(meta: dict) -> list[dict]:
    """The metrics run.json lists (name, title, direction, scale, doc), or those of older folders."""
    found = meta.get("metrics")
    if not isinstance(found, list) or not all(isinstance(m, dict) and m.get("name") for m in found):
        return [dict(m) for m in schema.LEGACY_METRICS]
    return [{"title": m["name"], "direction": "", "scale": "other", "doc": "", **m} for m in found]


def load_run_folder(path) -> RunData:
    """Load run.json, images.json and the tables of a campaign or comparison folder."""
    folder = Path(path)
    run_json = folder / schema.RUN_JSON
    if not run_json.is_file():
        raise RunFolderError(f"{folder}: not a run folder (run.json missing)")
    meta = _read_json(run_json)
    if not isinstance(meta, dict):
        raise RunFolderError(f"{run_json}: expected a JSON object")
    images_path = folder / schema.IMAGES_JSON
    images = _read_json(images_path) if images_path.exists() else []
    images = [img for img in images if isinstance(img, dict) and "name" in img]

    run = RunData(path=folder, meta=meta, images=images, metrics=_metrics(meta))
    kind = run.kind
    if kind == "campaign":
        run.mutants = _read_mutants(folder / schema.MUTANTS_JSON)
        run.verdicts = _read_csv(folder / schema.VERDICTS_CSV, schema.verdict_columns(run.metrics))
        run.per_image = _read_csv(folder / f"{schema.PER_IMAGE}.csv", schema.CAMPAIGN_PER_IMAGE_COLUMNS)
        run.scores = _read_csv(folder / schema.SCORES_CSV, schema.SCORE_COLUMNS)
        run.discrepancies = _read_csv(folder / schema.DISCREPANCIES_CSV, schema.DISCREPANCY_INFO, all_text=True)
        if (folder / schema.MASKED_CSV).exists():
            run.masked = _read_csv(folder / schema.MASKED_CSV, schema.MASKED_COLUMNS, all_text=True)
    elif kind == "comparison":
        run.comparison = _read_table(folder, schema.COMPARISON, schema.comparison_columns(run.metrics))
        run.pairwise = _read_csv(folder / schema.PAIRWISE_CSV, schema.pairwise_columns(run.metrics))
        run.per_image = _read_table(folder, schema.PER_IMAGE, schema.COMPARISON_PER_IMAGE_COLUMNS)
    else:
        raise RunFolderError(f"{run_json}: unknown kind {kind!r} (expected campaign or comparison)")
    return run
