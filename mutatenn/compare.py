"""Differential testing: one program deployed as several variants, each compared with a baseline."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import operators
from runfolder import schema

from . import __version__, golden
from .compression import check_calibration, compression_label
from .errors import InputError
from .execute import VariantResult, input_batch, run_variant, run_variant_job
from .frameworks import Source
from .images import ImageSet, load_image_set, thumbnail_uri
from .isolation import DONE, run_isolated
from .loading import load_source_isolated, preprocessing_text, program_from_source, source_family
from .outputs import prepare_out_dir, write_csv, write_json
from .program import Program
from .runners import Variant, parse_variant, parse_variant_list, program_for, runner_class, runner_ref


@dataclass
class Comparison:
    out_dir: Path
    table: pd.DataFrame  # comparison.csv
    per_image: pd.DataFrame
    pairwise: pd.DataFrame
    errors: dict[str, str]
    user_errors: dict[str, str]
    notes: list[str]  # label-space alignments (said on the terminal too)


def softmax(logits: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        shifted = logits - np.nanmax(logits, axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)


def label_indices(images: ImageSet, labels: list[str]) -> np.ndarray | None:
    """Ground-truth class indices when every image label names one of the program's classes."""
    if not images.has_labels:
        return None
    index = {name: i for i, name in enumerate(labels)}
    out = []
    for label in images.labels:
        if label in index:
            out.append(index[label])
        elif label.isdigit() and int(label) < len(labels):
            out.append(int(label))
        else:
            return None
    return np.array(out)


def compare_pair(ref: VariantResult, other: VariantResult) -> dict:
    values = operators.compare_outputs(ref.output.logits, other.output.logits,
                                       ref.output.latencies, other.output.latencies, k=5)
    return {k: float(v) for k, v in values.items()}


def run_variants(sources: dict[str, Source], images_spec: str, images: ImageSet, variants: list[Variant],
                 pretrained: str, jobs: int, trusted: bool = False, threads: int = 0) -> dict[str, VariantResult]:
    """Each variant in a worker process (a crash is that variant's error), TensorFlow models
    apart from the others (`isolation.run_isolated`'s families); Python-API models in-process."""
    results: dict[str, VariantResult] = {}
    by_family: dict[str, list[Variant]] = {}
    for v in variants:
        source = sources[v.text]
        if source.spec.startswith("module:"):
            program = program_for(v, program_from_source(source, relax=False))
            results[v.text] = run_variant(program, v, input_batch(program, images), threads=threads)
        else:
            by_family.setdefault(source_family(source.spec), []).append(v)
    for family, group in by_family.items():
        # Each job carries its runner's class reference: runners registered here reach the workers.
        args = [(sources[v.text].spec, pretrained, sources[v.text].preset, images_spec, v.text, runner_ref(v.kind),
                 trusted, threads) for v in group]
        for outcome in run_isolated(run_variant_job, args, jobs=jobs, family=family):
            text = group[outcome.index].text
            if outcome.status == DONE:
                results[text] = outcome.value
            else:
                results[text] = VariantResult(text, error=f"{outcome.status}: {outcome.reason}")
    return results


def variant_sources(source: Source, variants: list[Variant], pretrained: str,
                    trusted: bool = False) -> dict[str, Source]:
    """Variant -> the model it runs: the compared one, or its own ``model=`` file (another
    release of the same model), preprocessed as the compared one is."""
    out, loaded = {}, {}
    for v in variants:
        if not v.model:
            out[v.text] = source
            continue
        spec = v.model if ":" in v.model and not Path(v.model).exists() else str(Path(v.model).expanduser().resolve())
        if spec not in loaded:
            loaded[spec] = load_source_isolated(spec, pretrained, source.preset, trusted=trusted)[0]
        out[v.text] = loaded[spec]
    return out


def check_kept_bindings(spec: str, pretrained: str, preset: str | None, variants, trusted: bool = False) -> None:
    """``keep_fp32`` names bindings of the imported program: checked in a worker (where the
    model is imported) before any build, so a wrong name is one line, not a row's error."""
    wanted = [v.text for v in variants if v.options.keep_fp32]
    if not wanted:
        return
    from .execute import kept_bindings_job
    from .isolation import DONE, run_isolated
    from .loading import source_family

    outcome = next(run_isolated(kept_bindings_job, [(spec, pretrained, preset, wanted, trusted)],
                                family=source_family(spec)))
    if outcome.status == DONE and outcome.value:
        raise InputError(outcome.value)


def _check_tuning_records(source: Source, variants) -> None:
    """A tuned variant needs `mutatenn tune`'s records: refuse before any build starts."""
    for variant in variants:
        if variant.options.schedule == "tuned":
            from .tuning import require_database

            require_database(source.spec, variant.target, variant.via)


def variant_paths(sources: dict[str, Source], variants: list[Variant]) -> dict[str, str]:
    """Variant -> the framework path it takes, in words (``Keras -> tflite (tflite)``,
    ``PyTorch``, ``TFLite (m.tflite)`` for a ``model=`` file); a variant that cannot run its
    model is refused here, before any work starts."""
    from .frameworks import PATHS

    paths = {}
    for v in variants:
        source = sources[v.text]
        via = runner_class(v.kind).resolve_via(v, source.framework)
        start = source.framework_name + (f" ({Path(source.spec).name})" if v.model else "")
        paths[v.text] = f"{start} -> {via} ({PATHS[via].form})" if via else start
    return paths


def align_label_spaces(results: dict[str, VariantResult], baseline: str) -> list[str]:
    """Outputs with one class more than the baseline's (TF-slim models count a background
    class at index 0: 1001 against 1000) lose that column, so labels line up; each
    alignment is said in a note. Other mismatches are left for the metrics to refuse."""
    ref = results[baseline]
    if ref.error:
        return []
    classes, notes = ref.output.logits.shape[1], []
    for name, r in results.items():
        if r.error or name == baseline:
            continue
        extra = r.output.logits.shape[1] - classes
        if extra in (1, -1):
            wider = r if extra == 1 else ref
            wider.output.logits = wider.output.logits[:, 1:]
            notes.append(f"label spaces differ: {wider.variant} gave {classes + max(extra, 0)} classes, "
                         f"the other {classes + min(extra, 0)}; its class 0 (background) was dropped to align them")
            classes = ref.output.logits.shape[1]
    return notes


def compare(model: str | Program, images_spec: str, variants_text: str, baseline_text: str, out_dir: Path,
            pretrained: str = "auto", preset: str | None = None, jobs: int = 1, render: bool = True,
            save_outputs: Path | None = None, trusted: bool = False, threads: int | None = None) -> Comparison:
    """``baseline_text`` ``saved:DIR[:VARIANT]``: saved outputs (`golden`) are the baseline;
    ``save_outputs``: a new or empty folder that receives every variant's outputs;
    ``trusted``: model files skip their safety check (`mutatenn.models.safety`);
    ``threads``: every runner's thread count (None: the cores this process may use), the
    same for all so that latencies compare."""
    threads = check_threads(threads)
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.perf_counter()
    saved = golden.parse_saved_baseline(baseline_text) if golden.is_saved(baseline_text) else None
    baseline = Variant(saved.text, "saved") if saved else parse_variant(baseline_text)
    variants = [v for v in parse_variant_list(variants_text) if v.text != baseline.text]
    if not variants:
        raise InputError("--variants names no variant other than the baseline")
    ordered = [baseline] + variants
    to_run = variants if saved else ordered  # a saved baseline is read, not run
    for v in to_run:
        runner_class(v.kind).preflight(v)
    images = load_image_set(images_spec)
    for v in to_run:  # before any model is loaded: nothing is built for a bad count
        check_calibration(v.options, len(images), f"variant {v.text!r}")
    source = model.source if isinstance(model, Program) else load_source_isolated(model, pretrained, preset,
                                                                                     trusted=trusted)[0]
    saved_notes = saved.check(source, pretrained, images_spec, images) if saved else []
    saved_result = saved.result() if saved else None  # read now: an unreadable file stops before any build
    sources = variant_sources(source, to_run, pretrained, trusted)
    paths = variant_paths(sources, to_run)
    if saved:
        paths = {baseline.text: saved.path_text, **paths}
    _check_tuning_records(source, to_run)
    if not isinstance(model, Program):
        check_kept_bindings(source.spec, pretrained, preset, to_run, trusted)
    save_dir = golden.prepare_folder(save_outputs) if save_outputs is not None else None
    out_dir = prepare_out_dir(Path(out_dir))
    announce_inputs(source, images)  # every input checked: the work starts
    results = run_variants(sources, images_spec, images, to_run, pretrained, jobs, trusted, threads)
    if saved:
        results = {baseline.text: saved_result, **results}
    if save_dir is not None:  # before label-space alignment: a replay aligns again
        golden.save_outputs(save_dir, source, pretrained, images_spec, images,
                            {k: r for k, r in results.items() if not saved or k != baseline.text},
                            None if saved else baseline.text)
    errors = {name: r.error for name, r in results.items() if r.error}
    if baseline.text in errors:
        raise InputError(f"baseline {baseline.text} failed: {errors[baseline.text]}")
    aligned = saved_notes + align_label_spaces(results, baseline.text)
    truth = label_indices(images, source.labels)
    ok = [v.text for v in ordered if not results[v.text].error]
    costs = {v.text: {"compression": compression_label(v.options), "threads": threads} for v in ordered}
    table = _comparison_table(results, baseline.text, [v.text for v in variants], truth,
                              latency_flags(ordered, results), paths, costs)
    pairwise = _pairwise_table(results, ok)
    per_image = _per_image_table(results, ok, baseline.text, images, source.labels)
    finished = dt.datetime.now(dt.timezone.utc)
    meta = {
        "kind": "comparison", "model": source.spec, "model_name": source.name, "model_trusted": trusted,
        "images": images_spec,
        "image_count": len(images), "baseline": baseline.text, "variants": [v.text for v in variants],
        "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - clock, 3), "mutatenn_version": __version__,
        "preset": source.preset, "preprocessing": preprocessing_text(source), "framework": source.framework_name, "paths": paths, "notes": list(source.notes) + aligned,
        "errors": errors, "threads": threads,
        "build_s": {name: round(r.build_s, 3) for name, r in results.items()},
        "metrics": operators.CATALOGUE.describe(),
    }
    write_csv(out_dir / f"{schema.COMPARISON}.csv", table)
    write_json(out_dir / f"{schema.COMPARISON}.json", _records(table))
    write_csv(out_dir / schema.PAIRWISE_CSV, pairwise)
    write_csv(out_dir / f"{schema.PER_IMAGE}.csv", per_image)
    write_json(out_dir / f"{schema.PER_IMAGE}.json", _records(per_image))
    write_json(out_dir / schema.IMAGES_JSON, image_records(images))
    write_json(out_dir / schema.RUN_JSON, meta)
    if render:
        render_report(out_dir)
    user_errors = {name: r.error for name, r in results.items() if r.user_error}
    return Comparison(out_dir, table, per_image, pairwise, errors, user_errors, aligned)


def check_threads(threads: int | None) -> int:
    """The thread count every runner gets: given, or the cores this process may use."""
    cores = len(os.sched_getaffinity(0))
    if threads is None:
        return cores
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"--threads must be a whole number of at least 1, not {threads!r}")
    if threads > cores:
        raise InputError(f"--threads {threads}: this machine gives MutateNN {cores} cores")
    return threads


def announce_inputs(source, images: ImageSet) -> None:
    """The first lines of a command: the preprocessing every result depends on, and the
    files of the image folder that were skipped (one line, counted)."""
    print(f"preprocessing: {preprocessing_text(source)}", file=sys.stderr)
    if images.skipped_line():
        print(f"warning: {images.skipped_line()}", file=sys.stderr)


def image_records(images: ImageSet) -> list[dict]:
    """images.json: name, label and a small thumbnail of every image."""
    return [{"name": n, "label": lab, "thumbnail": thumbnail_uri(img)}
            for n, img, lab in zip(images.names, images.images, images.labels)]


def render_report(out_dir: Path) -> Path | None:
    """Write RUN_DIR/report.html (the reports room knows nothing about TVM)."""
    import reports

    return reports.render_report(out_dir)


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def _latency_stats(r: VariantResult) -> dict:
    lat = r.output.latencies * 1e3
    return {"latency_ms_median": float(np.median(lat)), "latency_ms_p10": float(np.percentile(lat, 10)),
            "latency_ms_p90": float(np.percentile(lat, 90))}


def latency_flags(variants, results) -> dict[str, str]:
    """Variant -> why it is flagged: slower than a lower opt level of the same stack (same
    runner, target and other build options), by `operators.latency.slower_at_higher_level`."""
    from operators.latency import slower_at_higher_level

    groups: dict[tuple, list] = {}
    for v in variants:
        r = results[v.text]
        if v.target is None or r.error:
            continue
        # Every build option but the level (the schema's, all of them) is the same in a group.
        key = (v.kind, v.via, v.target.name, dataclasses.replace(v.options, opt_level=0))
        groups.setdefault(key, []).append((v.text, v.options.opt_level, r.output.latencies))
    flags = {}
    for entries in groups.values():
        flags.update(slower_at_higher_level(entries))
    return flags


def _comparison_table(results, baseline: str, variants: list[str], truth, flags: dict[str, str],
                      paths: dict[str, str], costs: dict[str, dict] | None = None) -> pd.DataFrame:
    ref = results[baseline]
    costs = costs or {}
    rows = []
    for name in [baseline] + variants:
        r = results[name]
        row = {"variant": name, "baseline": baseline, "path": paths.get(name, "")}
        if r.error:
            row.update({c: math.nan for c in [*operators.CATALOGUE.names(), *schema.LATENCY_COLUMNS]})
            row["error"] = r.error
        else:
            row.update(compare_pair(ref, r))
            row.update(_latency_stats(r))
            row["error"] = ""
        row["accuracy"] = float(operators.accuracy(r.output.logits, truth)) if truth is not None and not r.error else math.nan
        row["build_s"] = round(r.build_s, 3)
        row["latency_flag"] = flags.get(name, "")
        row.update({"compression": "", "threads": math.nan, **costs.get(name, {})})
        row.update({k: r.artifact.get(k, math.nan) for k in ("size_bytes", "parameters", "nonzeros")})
        rows.append(row)
    return pd.DataFrame(rows)[schema.comparison_columns(operators.CATALOGUE.describe())]


def _pairwise_table(results, names: list[str]) -> pd.DataFrame:
    rows = [{"variant_a": a, "variant_b": b, **compare_pair(results[a], results[b])} for a in names for b in names]
    return pd.DataFrame(rows, columns=schema.pairwise_columns(operators.CATALOGUE.describe()))


def _per_image_table(results, names: list[str], baseline: str, images: ImageSet, labels: list[str]) -> pd.DataFrame:
    def name_of(i: int) -> str:
        return labels[i] if 0 <= i < len(labels) else str(i)

    ref_top1 = np.argmax(np.nan_to_num(results[baseline].output.logits, nan=-np.inf), axis=1)
    rows = []
    for v in names:
        logits = results[v].output.logits
        probs = softmax(logits)
        order = np.argsort(-np.nan_to_num(logits, nan=-np.inf), axis=1, kind="stable")[:, :5]
        for i, image in enumerate(images.names):
            top5 = [[name_of(int(c)), round(float(probs[i, c]), 5)] for c in order[i]]
            rows.append({"image": image, "label": images.labels[i], "variant": v, "top1": top5[0][0],
                         "top1_score": top5[0][1], "top5": json.dumps(top5),
                         "agrees_with_baseline": bool(order[i, 0] == ref_top1[i]),
                         "latency_ms": round(float(results[v].output.latencies[i]) * 1e3, 4)})
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    """The comparison table as a person reads it in a terminal."""
    shown = [m.name for m in operators.CATALOGUE.values() if m.in_tables]  # every metric marked for tables
    compressed = (table["compression"].fillna("fp32") != "fp32").any()
    extra = ["max_rel_error"] if compressed else []
    view = table[["variant", "path", *shown, *extra, "latency_ms_median", "latency_ratio", "latency_flag",
                  "accuracy", "error"]].copy()
    view.insert(view.columns.get_loc("latency_ratio"), "p90-p10",
                table["latency_ms_p90"] - table["latency_ms_p10"])
    view.insert(view.columns.get_loc("latency_ratio") + 1, "size_kB", table["size_bytes"] / 1024)
    if compressed:
        view.insert(view.columns.get_loc("size_kB") + 1, "nonzero%", 100 * table["nonzeros"] / table["parameters"])
        view = view.drop(columns=["path"])  # the compression is in the variant's text; keep the table narrow
    view = view.rename(columns={"max_rel_error": "max_rel", "top1_agreement": "top1", "topk_overlap": "top5", "max_abs_error": "max_abs",
                                "kendall_tau": "tau", "latency_ms_median": "ms/img", "latency_ratio": "lat×"})
    for text_column in ("error", "latency_flag"):
        if not view[text_column].astype(bool).any():
            view = view.drop(columns=[text_column])
    if view["accuracy"].isna().all():
        view = view.drop(columns=["accuracy"])
    return view.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")
