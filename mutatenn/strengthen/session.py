"""`mutatenn strengthen RUN_DIR --stack S --out DIR`: new images that kill a campaign's
survived mutants, the stack's score again with them, and a smallest image set.

The coordinator reads the run folder (which mutants survived on the stack, and their
stored outputs, which rank the seed images), sends one search job per mutant to a worker
process (`worker.search_job`), writes each image found as a PNG and its line in
``strengthen.csv`` at once (a rerun skips the mutants already there), and finally has the
campaign engine rebuild and judge the stack's mutants on the old images plus the new ones
(`rescore`).
"""
from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from runfolder import schema
from runfolder.verdicts import FAILED

from ..errors import InputError, OutputFolderError
from ..outputs import write_csv, write_json
from .search import SearchSettings, check_settings, parse_transforms

SETTINGS_JSON = "strengthen.json"
TABLE_CSV = "strengthen.csv"
IMAGES_DIR = "images"
LOGS_DIR = "logs"
TABLE_COLUMNS = ["mutant_id", "operator", "stack", "outcome", "image", "seed", "original_label", "mutant_label",
                 "queries", "seconds", "reason"]
# How a search can end; `killed` has an image, the others a reason.
OUTCOMES = ("killed", "not_found", "no_seed", *FAILED)


class StrengthenError(InputError):
    """The run folder, stack or output folder cannot be used (exit 2, nothing written)."""


@dataclass(frozen=True)
class Request:
    """The command's settings, checked (`make_request`); stored in ``strengthen.json``."""

    run_dir: str
    stack: str
    settings: SearchSettings
    sample: int | None
    seeds: int
    seed: int
    jobs: int


def make_request(run_dir: Path, stack: str, budget: int, epsilon: int, transforms: str | None,
                 sample: int | None, seeds: int, seed: int, jobs: int) -> Request:
    """The checked request, or one error line (nothing has been written yet)."""
    parsed = parse_transforms(transforms)
    check_settings(epsilon, parsed, budget, seeds)
    if sample is not None and sample < 1:
        raise StrengthenError(f"--sample must be at least 1, not {sample}")
    if jobs < 1:
        raise StrengthenError(f"--jobs must be at least 1, not {jobs}")
    return Request(str(Path(run_dir).resolve()), stack, SearchSettings(epsilon, parsed, budget), sample, seeds,
                   seed, jobs)


# ---------------------------------------------------------------- reading the run folder
def survivors(run_dir: Path, stack: str) -> tuple[list[str], int]:
    """The ids of the mutants that survived on ``stack``: the ``weak`` ones first (their
    outputs moved, so a few more images will likely kill them), then the rest (``no_effect``:
    bit-identical on every image), each group in the campaign's order; and how many are weak."""
    from ..repro import _campaign_meta

    meta = _campaign_meta(Path(run_dir))
    stacks = [s["name"] for s in meta.get("stacks", [])]
    if stack not in stacks:
        raise StrengthenError(f"stack {stack!r} is not in run {str(run_dir)!r} (its stacks: {', '.join(stacks)})")
    db = sqlite3.connect(f"file:{Path(run_dir) / schema.RESULTS_SQLITE}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT v.mutant_id, v.triage FROM verdicts v JOIN mutants m ON m.id = v.mutant_id "
                          "WHERE v.stack = ? AND v.verdict = 'survived' "
                          "ORDER BY COALESCE(v.triage, '') != 'weak', m.ordinal", (stack,)).fetchall()
    finally:
        db.close()
    if not rows:
        raise StrengthenError(f"no mutant survived on stack {stack!r} of run {str(run_dir)!r}: nothing to strengthen")
    return [r[0] for r in rows], sum(r[1] == "weak" for r in rows)


def sample_ids(ids: list[str], sample: int | None, seed: int, weak: int | None = None) -> list[str]:
    """``sample`` of ``ids`` drawn with ``seed`` (order kept), or all of them. The first
    ``weak`` ids (the weak survivors) are drawn from first: a sample spends its budget on
    the mutants an image can plausibly kill before those no image has moved yet."""
    if sample is None or sample >= len(ids):
        return list(ids)
    weak = len(ids) if weak is None else weak
    rng = np.random.default_rng(seed)
    first = min(sample, weak)
    picked = set(rng.choice(weak, size=first, replace=False).tolist()) if first else set()
    if sample > first:
        picked |= {weak + i for i in rng.choice(len(ids) - weak, size=sample - first, replace=False).tolist()}
    return [m for i, m in enumerate(ids) if i in picked]


def rank_seeds(original: np.ndarray, mutant: np.ndarray) -> list[tuple[int, int]]:
    """(image index, original label) of the images where the two builds agree on top-1,
    those where the mutant is nearest to another label compared with the original first
    (its gap minus the original's: the outputs already differ most in the direction that
    kills). Ties go to the larger largest absolute difference, then to the earlier image."""
    from .search import gap

    labels = np.argmax(original, axis=1)
    rows = []
    for i, c in enumerate(labels):
        if not (np.isfinite(original[i]).all() and np.isfinite(mutant[i]).all()) or int(np.argmax(mutant[i])) != c:
            continue
        moved = gap(mutant[i], int(c)) - gap(original[i], int(c))
        rows.append((-moved, -float(np.max(np.abs(mutant[i] - original[i]))), i, int(c)))
    return [(i, c) for _, _, i, c in sorted(rows)]


# ---------------------------------------------------------------- the output folder
def open_out_dir(out: Path, request: Request) -> pd.DataFrame:
    """The table of an earlier run of the same request in ``out`` (resumed), or an empty
    one for a new or empty folder; a folder holding anything else is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        settings = out / SETTINGS_JSON
        if not settings.is_file():
            raise OutputFolderError(f"--out {str(out)!r} already holds files that are not a strengthen run "
                                    "(nothing was overwritten)")
        earlier = json.loads(settings.read_text())
        if earlier != _as_json(request, resumable=True):
            raise OutputFolderError(f"--out {str(out)!r} holds a strengthen run with other settings "
                                    f"({SETTINGS_JSON}); give a new folder (nothing was overwritten)")
        table = out / TABLE_CSV
        return pd.read_csv(table, dtype=str, keep_default_na=False) if table.is_file() else _empty_table()
    return _empty_table()


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=TABLE_COLUMNS)


def _as_json(request: Request, resumable: bool = False) -> dict:
    """The request as stored; ``resumable``: without what a rerun may change (jobs)."""
    data = json.loads(json.dumps(asdict(request)))
    if resumable:
        data.pop("jobs", None)
    return data


def image_file_name(seed_name: str, mutant_id: str) -> str:
    """``SEEDSTEM--MUTANT.png``, every character but letters, digits, ``.``, ``_``, ``-`` as ``_``."""
    stem = Path(seed_name).stem
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{stem}--{mutant_id}") + ".png"


def write_png(path: Path, image: np.ndarray) -> None:
    """A lossless PNG of ``image`` (uint8, greyscale or RGB), written under a temporary name."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(tmp, format="PNG")
    tmp.replace(path)


def image_path(label: str | None, file_name: str) -> str:
    """Where an image goes under ``images/``: in its ground truth's sub-folder when the set
    is labelled (so `--images` reads the label back), else at the top."""
    return f"{label}/{file_name}" if label else file_name


# ---------------------------------------------------------------- the search
def run_search(request: Request, out: Path, quiet: bool = False, timeout: float | None = None) -> pd.DataFrame:
    """Search every pending mutant (in worker processes), writing images and table lines as
    they come; returns the whole table."""
    from tqdm import tqdm

    from ..isolation import CRASHED, TIMED_OUT, run_isolated
    from ..loading import source_family
    from ..repro import open_case

    run_dir = Path(request.run_dir)
    ids, weak = survivors(run_dir, request.stack)
    ids = sample_ids(ids, request.sample, request.seed, weak)
    table = open_out_dir(out, request)
    done = set(table["mutant_id"])
    cases = {mid: open_case(run_dir, mid, request.stack, allow=("survived",)) for mid in ids if mid not in done}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SETTINGS_JSON, _as_json(request, resumable=True))
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    if not cases:
        return table
    tasks = [_task(case, request, out) for case in cases.values()]
    first = next(iter(cases.values()))
    limit = timeout if timeout is not None else first.config.timeout_s + 2.0 * request.settings.budget
    rows = table.to_dict("records")
    bar = tqdm(total=len(ids), initial=len(done), unit="mutant", desc="strengthen", disable=quiet, leave=False)
    for outcome in run_isolated(_call, [(t,) for t in tasks], jobs=request.jobs, timeout=limit,
                                family=source_family(first.config.model)):
        case = list(cases.values())[outcome.index]
        if outcome.status == CRASHED:
            value = {"status": "crashed", "reason": outcome.reason}
        elif outcome.status == TIMED_OUT:
            value = {"status": "timed_out", "reason": outcome.reason}
        else:
            value = outcome.value
        if value["status"] == "input_error":
            raise StrengthenError(value["reason"])
        rows.append(_record(case, value, out))
        table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
        write_csv(out / TABLE_CSV, table)
        bar.update(1)
    bar.close()
    return table


def _call(task):
    from .worker import search_job

    return search_job(task)


def _task(case, request: Request, out: Path):
    from .worker import SearchTask

    pass_mutant = bool(json.loads(case.mutant.get("build_options") or "{}"))
    seeds = rank_seeds(case.original_logits, case.campaign_logits) if case.campaign_logits is not None else []
    return SearchTask(case.config.model, case.config.pretrained, case.config.preset, case.config.images,
                      case.stack.via, case.stack.variant_text, case.stack.options, case.options,
                      "" if pass_mutant else case.mutant["operator"], int(case.mutant["site_index"]),
                      "" if pass_mutant else case.mutant["hash"], case.mutant_id, case.stack.name,
                      tuple(seeds[: 4 * request.seeds]), request.seeds, request.settings, request.seed,
                      str(out / LOGS_DIR / (re.sub(r"[^A-Za-z0-9._-]", "_", case.mutant_id) + ".log")))


def _record(case, value: dict, out: Path) -> dict:
    """The table line of one finished search; writes the image it found."""
    row = {c: "" for c in TABLE_COLUMNS}
    row.update(mutant_id=case.mutant_id, operator=case.mutant["operator"], stack=case.stack.name,
               outcome=value["status"], reason=value.get("reason", ""),
               queries=str(value.get("queries", "")), seconds=f"{value['seconds']:.2f}" if "seconds" in value else "")
    if value["status"] == "killed":
        seed = value["seed_index"]
        truth = _truth(case, seed)
        name = image_path(truth, image_file_name(value["seed"], case.mutant_id))
        write_png(out / IMAGES_DIR / name, value["image"])
        row.update(image=name, seed=value["seed"], original_label=value["original_label"],
                   mutant_label=value["mutant_label"])
    return row


def _truth(case, index: int) -> str | None:
    from ..execute import cached_images

    images = cached_images(case.config.images)
    return images.labels[index] if images.has_labels else None
