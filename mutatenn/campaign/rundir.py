"""The campaign's run folder (docs/RUN-FOLDER.md): opening or resuming it, the stored
outputs of each build, and every file the report reads, named by `runfolder.schema`."""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np

import operators
from runfolder import schema

from .. import __version__
from ..compare import image_records
from ..config import CampaignConfig
from ..errors import OutputFolderError, first_line
from ..outputs import prepare_out_dir, write_csv, write_json, write_text_atomic
from ..records import VerdictRow
from ..store import ResultStore
from . import tables

DIFF_CHARS = 20000


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def open_run_folder(out_dir: Path, config: CampaignConfig) -> ResultStore:
    """A new folder, or the folder of an interrupted run of the same config (resumed)."""
    out_dir = Path(out_dir)
    store_path = out_dir / schema.RESULTS_SQLITE
    resuming = store_path.is_file()
    prepare_out_dir(out_dir, allow_existing=resuming)
    store = ResultStore(store_path)
    stored = store.get_meta("fingerprint")
    if stored is None:
        store.set_meta("fingerprint", config.fingerprint())
        store.set_meta("config", config.raw)
        store.set_meta("started", now())
    elif stored != config.fingerprint():
        store.close()
        raise OutputFolderError(f"output folder {str(out_dir)!r} holds a campaign with a different config; "
                                "rerun with the same config to resume it, or choose a new --out")
    return store


def folder_state(out_dir: Path) -> str:
    """What a run folder was before this run opened it: "absent", "empty" or "resumed"
    (what else a folder may hold, `open_run_folder` refuses)."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return "absent"
    return "resumed" if (out_dir / schema.RESULTS_SQLITE).is_file() else "empty"


def restore_folder(out_dir: Path, state: str) -> None:
    """Undo what opening a new run folder wrote, when the run fails before its first job:
    an absent folder is removed, an empty one emptied; a resumed run's folder is kept."""
    import shutil

    out_dir = Path(out_dir)
    if state == "resumed" or not out_dir.is_dir():
        return
    if state == "absent":
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for item in out_dir.iterdir():
        if item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)


def outputs_path(out_dir: Path, key: str) -> Path:
    return Path(out_dir) / "outputs" / f"{key}.npz"


def save_outputs(out_dir: Path, key: str, logits, latencies, passes=None) -> Path:
    """One build's logits and latencies (and the logits of its passes 2..N, when a verdict
    over passes needs them), written atomically; returns the path."""
    path = outputs_path(out_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    extra = {} if passes is None else {"passes": np.asarray(passes, dtype=np.float32)}
    np.savez(tmp, logits=np.asarray(logits, dtype=np.float32), latencies=np.asarray(latencies, dtype=np.float64),
             **extra)
    os.replace(tmp, path)
    return path


def load_outputs(out_dir: Path, key: str) -> dict:
    """{"logits", "latencies"} and, when stored, "passes" (passes 2..N)."""
    with np.load(outputs_path(out_dir, key)) as data:
        return {name: data[name] for name in data.files}


def mutant_record(ordinal: int, m, via: str = "") -> dict:
    """A mutant as the store keeps it (diff capped); ``via``: the import path of its program."""
    diff = m.diff_text or ""
    if len(diff) > DIFF_CHARS:
        diff = diff[:DIFF_CHARS] + f"\n… ({len(m.diff_text) - DIFF_CHARS} more characters)"
    return {"id": m.id, "ordinal": ordinal, "operator": m.operator, "level": m.level, "site_index": m.site_index,
            "site": m.site, "status": m.status.value, "reason": m.reason, "hash": m.hash,
            "build_options": json.dumps(m.build_options, sort_keys=True), "diff": diff, "via": via}


def write_programs(out_dir: Path, programs: dict, mutants: list[dict]) -> None:
    """The printed programs the mutants point into (programs/ of docs/RUN-FOLDER.md): each
    import path's Relax module and, lowered, every PrimFunc some TIR mutant changes. An
    export (`reports.exports`) places each mutant at its site in this text."""
    from mutators.base import lower

    for via, program in programs.items():
        own = [m for m in mutants if (m.get("via") or "") == via]
        root = Path(out_dir) / schema.PROGRAMS_DIR
        (root / schema.program_folder(via)).mkdir(parents=True, exist_ok=True)
        write_text_atomic(root / schema.program_path({"via": via, "level": "graph"}), program.mod.script())
        tir = {schema.program_path(m): schema.tir_function(m) for m in own if m["level"] == "tir"}
        if not tir:
            continue
        lowered = lower(program.mod)
        have = {gv.name_hint for gv in lowered.functions}
        for path, name in tir.items():
            if name in have:
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(root / path, lowered[name].script())


REFERENCE_KEY = "reference"  # outputs/reference.npz: the saved outputs of [run] reference


def judge_keys(config: CampaignConfig, originals: dict[str, str]) -> dict[str, str]:
    """Stack -> the outputs its mutants are judged against: its original's, or the saved reference."""
    return {stack: REFERENCE_KEY if config.reference else key for stack, key in originals.items()}


def unstable_originals(originals: dict[str, str], built: dict) -> list[str]:
    """Stacks whose original program gave different outputs in repeated runs."""
    return [stack for stack, key in originals.items() if built.get(key, {}).get("unstable_images")]


def write_outputs(out_dir: Path, config: CampaignConfig, program, images, plan, store: ResultStore,
                  failed_stacks: dict[str, str] | None = None):
    """Every table and JSON file of the run folder, from the store; (verdicts, scores) frames.
    ``failed_stacks``: stack -> why it judged nothing (its path or its original failed)."""
    stack_order = [s.name for s in config.stacks]
    originals = plan.originals
    against = judge_keys(config, originals)
    rows = [VerdictRow.from_store(r) for r in store.verdicts()]
    stored_mutants = store.mutants()
    verdicts = tables.verdict_table(rows, stored_mutants, stack_order, config.criterion)
    scores = tables.score_table(verdicts, stack_order, plan.population)
    judged = {(v.mutant_id, v.stack): v for v in rows if v.verdict.is_judged}
    per_image = tables.per_image_table(verdicts, judged, against, lambda key: load_outputs(out_dir, key)["logits"],
                                       images, program.labels, config.per_image_cap)
    mutants = [{"id": m["id"], "operator": m["operator"], "level": m["level"], "site": m["site"],
                "site_index": m["site_index"], "status": m["status"], "reason": m["reason"], "hash": m["hash"],
                "build_options": json.loads(m["build_options"]), "diff": m["diff"], "via": m.get("via") or ""}
               for m in stored_mutants]
    write_json(out_dir / schema.MUTANTS_JSON, mutants)
    write_csv(out_dir / schema.VERDICTS_CSV, verdicts)
    write_csv(out_dir / f"{schema.PER_IMAGE}.csv", per_image)
    write_csv(out_dir / schema.SCORES_CSV, scores)
    write_csv(out_dir / schema.KILL_MATRIX_CSV,
              tables.kill_matrix_table(verdicts, judged, against, lambda key: load_outputs(out_dir, key), images,
                                       config.criterion))
    write_csv(out_dir / schema.DISCREPANCIES_CSV, tables.discrepancy_table(verdicts, stack_order))
    pairs = tables.compression_pairs(config.stacks)
    if pairs:  # the masked-fault list exists only where compression was a stack axis
        write_csv(out_dir / schema.MASKED_CSV, tables.masked_fault_table(verdicts, pairs))
    write_json(out_dir / schema.IMAGES_JSON, image_records(images))
    built = store.finished_artifacts()
    builds = tables.build_table(plan, built)
    write_csv(out_dir / schema.BUILDS_CSV, builds)
    write_json(out_dir / schema.RUN_JSON, {
        "kind": "campaign", "model": config.model, "model_name": program.name, "model_trusted": config.trusted,
        "images": config.images,
        "image_count": len(images), "stacks": [s.describe() for s in config.stacks],
        "started": store.get_meta("started"), "finished": store.get_meta("finished") or now(),
        "duration_s": store.get_meta("duration_s"), "mutatenn_version": __version__, "config": config.raw,
        "kill_criterion": str(config.criterion), "per_image_cap": config.per_image_cap,
        "mutant_count": len(mutants), "repeats": config.repeats, "repeat_in": config.repeat_in,
        "reference": config.reference or None,
        "threads": config.threads,
        "compression_pairs": [{"fp32_stack": a, "compressed_stack": b, "compression": c}
                              for a, b, c in tables.compression_pairs(config.stacks)],
        "timing": None if config.timing is None else {"calls": config.timing.calls, "threads": config.timing.threads},
        "pass_verdict": _pass_verdict(config),
        "unstable_originals": unstable_originals(originals, built),
        "builds": len(built), "build_s_total": round(sum(a["build_s"] or 0 for a in built.values()), 3),
        "build_summary": _build_summary(builds), "fast_kill": config.fast_kill,
        "originals": dict(originals), "preset": program.preset, "preprocessing": _preprocessing(program), "notes": program.notes,
        "framework": program.source.framework_name if program.source is not None else program.framework,
        "failed_stacks": dict(failed_stacks or {}),
        "metrics": operators.CATALOGUE.describe(),
        "reuse": reuse_summary(store),
    })
    return verdicts, scores


REUSE_SUMMARY_KEY = "reuse"  # the store's meta key holding what --reuse took (`campaign.reuse`)


def reuse_summary(store: ResultStore) -> dict | None:
    """run.json ``reuse``: what this run took from an earlier run folder (None: no --reuse)."""
    found = store.get_meta(REUSE_SUMMARY_KEY)
    return None if not found else {k: v for k, v in found.items() if k != "keys"}


def _pass_verdict(config: CampaignConfig) -> dict:
    """How the repeated passes made one verdict (`campaign.repeats`)."""
    from .repeats import PassSettings, describe

    settings = config.passes or PassSettings()
    out = {"method": settings.method, "text": describe(settings)}
    if settings.method == "statistical":
        out.update(significance=settings.significance, effect_size=settings.effect_size)
    return out


def _build_summary(builds) -> dict:
    """Totals over builds.csv: how much the speed-ups did (cache hits, shared kernels, tuning)."""
    def total(column):
        return int(builds[column].fillna(0).sum()) if len(builds) else 0

    return {"cached": int(builds["cached"].sum()) if len(builds) else 0,
            "kernels_compiled": total("kernels_compiled"), "kernels_reused": total("kernels_reused"),
            "tuned_hits": total("tuned_hits"), "tuned_misses": total("tuned_misses")}


def write_export(run_dir: Path, format_name: str, out: Path) -> Path:
    """``mutatenn export``: the run folder in ``format_name`` (`reports.exports.FORMATS`),
    written to ``out``, a new file. Every check comes before anything is written: a folder
    that is not a finished campaign, an unknown format or an existing ``out`` is an
    InputError in one line."""
    from reports.exports import export_text
    from reports.rundata import RunFolderError

    from ..errors import InputError

    out = Path(out)
    if out.exists() or out.is_symlink():
        raise OutputFolderError(f"--out {str(out)!r} exists; choose a new file (nothing was overwritten)")
    if not out.parent.is_dir():
        raise OutputFolderError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    try:
        text = export_text(Path(run_dir), format_name)
    except RunFolderError as err:
        raise InputError(str(err)) from None
    write_text_atomic(out, text)
    return out


def write_exports(out_dir: Path, formats) -> list[Path]:
    """``[run] exports``: each format written into the run folder under its own file name."""
    from reports.exports import FORMATS, export_text

    written = []
    for name in formats:
        path = Path(out_dir) / FORMATS[name].file_name
        write_text_atomic(path, export_text(out_dir, name))
        written.append(path)
    return written


def render_run_report(out_dir: Path) -> tuple[Path | None, str]:
    """report.html, or the reason it could not be written (the campaign's results stand)."""
    import reports

    try:
        return reports.render_report(out_dir), ""
    except Exception as err:  # a broken report must not throw away a finished campaign
        return None, first_line(err)


def _preprocessing(program) -> str:
    """run.json's "preprocessing" line (the report's overview shows it)."""
    from ..loading import preprocessing_text

    return preprocessing_text(program.source) if program.source is not None else program.preset
