"""Synthetic run folders (docs/RUN-FOLDER.md) for tests, benchmarks and previews.

`python -m reports.sample campaign|comparison OUT_DIR` writes one and renders it.
Everything is drawn from a seeded generator, so the same arguments give the same files.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from runfolder.schema import LEGACY_METRICS, metric_names

from .rundata import SCORED_VERDICTS, VERDICTS

COMPARISON_METRICS = metric_names(LEGACY_METRICS)

LABELS = [
    "tabby cat", "golden retriever", "goldfish", "great white shark", "tree frog", "bald eagle",
    "sports car", "school bus", "espresso", "pizza", "banana", "volcano", "lighthouse", "castle",
    "violin", "umbrella", "red fox", "zebra", "koala", "hummingbird", "daisy", "mushroom",
    "container ship", "steam locomotive", "teapot", "backpack", "laptop", "jellyfish",
]
OPERATORS = [
    ("relax.swap_add_sub", "graph"), ("relax.drop_relu", "graph"), ("relax.scale_conv_weight", "graph"),
    ("relax.swap_max_avg_pool", "graph"), ("tir.loop_bound_off_by_one", "tensor"),
    ("tir.swap_operands", "tensor"), ("tir.flip_comparison", "tensor"),
    ("pass.disable_fuse_ops", "pass"), ("pass.fast_math", "pass"),
]
STACKS = ["llvm-O3", "llvm-O0", "llvm-O3-tuned"]
VARIANTS = ["torch-cpu", "onnxruntime-cpu", "tvm-llvm-O0", "tvm-llvm-O3", "tvm-llvm-O3-fastmath"]


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _png(pixels: np.ndarray) -> bytes:
    """Encode an HxWx3 uint8 array as PNG (stdlib only)."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def thumbnail(rng: np.random.Generator, size: int = 64) -> str:
    """A photo-like 64x64 thumbnail as a data URI: gradient sky, a blob, some grain."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    top, bottom, blob = rng.integers(30, 230, size=(3, 3))
    img = top * (1 - y)[..., None] + bottom * y[..., None]
    cx, cy, r = rng.uniform(0.25, 0.75), rng.uniform(0.3, 0.8), rng.uniform(0.12, 0.3)
    mask = (((x - cx) ** 2 + (y - cy) ** 2) < r * r)[..., None]
    img = np.where(mask, blob * (0.75 + 0.25 * x[..., None]), img)
    img = img + rng.normal(0, 6, img.shape)
    pixels = np.clip(img, 0, 255).astype(np.uint8)
    return "data:image/png;base64," + base64.b64encode(_png(pixels)).decode("ascii")


def _images(rng, n: int, names=None, labelled: bool = True) -> list[dict]:
    names = list(names or [])
    names += [f"img_{i:04d}.jpg" for i in range(len(names), n)]
    return [{"name": names[i], "label": LABELS[int(rng.integers(len(LABELS)))] if labelled else None,
             "thumbnail": thumbnail(rng)} for i in range(n)]


def _topk(rng, first: str | None = None) -> list[list]:
    labels = list(rng.choice(LABELS, size=5, replace=False))
    if first is not None:
        labels = [first] + [l for l in labels if l != first][:4]
    scores = np.sort(rng.dirichlet(np.ones(8) * 0.6)[:5])[::-1]
    return [[str(l), round(float(s), 4)] for l, s in zip(labels, scores)]


def _diff(rng, op: str, site: int, lines: int) -> str:
    """A unified diff of a Relax function of about `lines` lines with one changed hunk."""
    body = []
    for k in range(lines - 6):
        kind = ["conv2d", "add", "nn.relu", "max_pool2d", "reshape", "matmul"][k % 6]
        body.append(f"     lv{k + site}: R.Tensor((1, {64 * (1 + k % 4)}, 56, 56), dtype=\"float32\") = "
                    f"R.{kind}(lv{k + site - 1}, metadata[\"relax.expr.Constant\"][{k}])")
    at = int(rng.integers(2, max(3, len(body) - 2)))
    old = body[at]
    new = old.replace("R.add", "R.subtract").replace("R.nn.relu", "R.identity") \
        if ("R.add" in old or "nn.relu" in old) else old.replace("dtype=\"float32\") =", "dtype=\"float32\") = R.multiply(") + ", R.const(0.5))"
    head = ["--- original/main", f"+++ mutant/{op}/{site}", f"@@ -1,{len(body) + 2} +1,{len(body) + 2} @@",
            " @R.function", " def main(x: R.Tensor((1, 3, 224, 224), dtype=\"float32\")):"]
    return "\n".join(head + body[:at] + ["-" + old[1:], "+" + new[1:]] + body[at + 1:] + ["     return lv"])


def _score_rows(verdicts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for group, key_col in (("all", None), ("operator", "operator"), ("level", "level")):
        keys = [("stack",)] if key_col is None else [("stack", key_col)]
        by = list(keys[0])
        for key, g in verdicts.groupby(by):
            counts = g["verdict"].value_counts()
            row = {"stack": key[0], "group": group, "key": "all" if key_col is None else key[1]}
            row.update({v: int(counts.get(v, 0)) for v in VERDICTS})
            denom = sum(row[v] for v in SCORED_VERDICTS)
            row["score"] = round(100.0 * row["killed"] / denom, 2) if denom else None
            rows.append(row)
    return pd.DataFrame(rows, columns=["stack", "group", "key", *VERDICTS, "score"])


def write_sample_campaign(folder, *, n_mutants: int = 40, stacks=None, n_images: int = 8,
                          seed: int = 0, model: str = "resnet18", operators=None, image_names=None,
                          diff_lines: int = 40, per_image_cap: int | None = None) -> Path:
    """Write a campaign run folder with n_mutants x len(stacks) verdicts and per-image rows."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stacks = list(stacks or STACKS)
    operators = list(operators or OPERATORS)
    images = _images(rng, n_images, image_names)
    cap = per_image_cap or n_images

    mutants, verdict_rows, image_rows = [], [], []
    for i in range(n_mutants):
        op, level = operators[i % len(operators)]
        site = int(rng.integers(0, 120))
        digest = hashlib.sha1(f"{op}:{site}:{i}".encode()).hexdigest()
        mid = f"{op}#{site}-{digest[:8]}"
        fate = rng.choice(["ok", "non_viable", "equivalent"], p=[0.9, 0.05, 0.05])
        reason = {"non_viable": "well-formed check failed: shape mismatch in R.add",
                  "equivalent": "lowered module structurally equal to the original"}.get(fate, "")
        diff = "" if fate == "non_viable" else _diff(rng, op, site, diff_lines)
        mutants.append({"id": mid, "operator": op, "level": level, "site": str(site), "status": fate,
                        "reason": reason, "hash": digest, "diff": diff})
        base = rng.choice(["killed", "survived", "crashed", "memory_error", "timed_out", "build_error"],
                          p=[0.6, 0.25, 0.05, 0.04, 0.03, 0.03])
        for s_idx, stack in enumerate(stacks):
            verdict = fate if fate != "ok" else base
            if fate == "ok" and rng.random() < 0.12:  # stacks disagree now and then
                verdict = rng.choice(["killed", "survived", "crashed"])
            row = {"mutant_id": mid, "operator": op, "level": level, "site": str(site), "stack": stack,
                   "verdict": verdict, "reason": "", "flipped": 0, "build_s": None, "run_s": None,
                   "log_tail": ""}
            row.update({k: None for k in COMPARISON_METRICS})
            row["reason"] = {"memory_error": "IndexError: MutateNN bounds check: fused_conv2d reads p0[0, 3, 225, 1] "
                                             "outside its shape (1, 3, 224, 224)",
                             "build_error": "TVMError: Check failed: dtype mismatch in T.Cast"}.get(str(verdict), "")
            if verdict in ("killed", "survived"):
                killed = verdict == "killed"
                agree = float(rng.uniform(0.4, 0.97)) if killed else 1.0
                row.update({
                    "top1_agreement": round(agree, 4),
                    "topk_overlap": round(float(rng.uniform(0.5, 0.95)) if killed else 1.0, 4),
                    "kendall_tau": round(float(rng.uniform(0.2, 0.9)) if killed else float(rng.uniform(0.97, 1.0)), 4),
                    "rbo": round(float(rng.uniform(0.4, 0.95)) if killed else float(rng.uniform(0.98, 1.0)), 4),
                    "max_abs_error": float(rng.lognormal(0, 1.5)) if killed else float(rng.uniform(0, 1e-4)),
                    "rel_l2": float(rng.uniform(0.05, 2)) if killed else float(rng.uniform(0, 1e-5)),
                    "cosine": round(float(rng.uniform(0.3, 0.98)) if killed else 1.0, 6),
                    "latency_ratio": round(float(rng.lognormal(0, 0.15)), 3),
                    "build_s": round(float(rng.uniform(2, 25)), 2), "run_s": round(float(rng.uniform(0.3, 4)), 2),
                    "reason": "top-1 label changed" if killed else "",
                })
                flips = 0
                for img in images[:cap]:
                    flipped = killed and rng.random() > agree
                    orig = _topk(rng)
                    mut = _topk(rng) if flipped else [[l, round(max(0.0, s + float(rng.normal(0, 0.002))), 4)]
                                                       for l, s in orig]
                    flips += flipped
                    image_rows.append({"mutant_id": mid, "stack": stack, "image": img["name"],
                                       "original_top5": json.dumps(orig), "mutant_top5": json.dumps(mut),
                                       "flipped": bool(flipped)})
                row["flipped"] = flips
            elif verdict in ("crashed", "timed_out"):
                row["build_s"] = round(float(rng.uniform(2, 25)), 2)
                row["run_s"] = 60.0 if verdict == "timed_out" else None
                row["reason"] = "worker exited with signal 11 (SIGSEGV)" if verdict == "crashed" else "run exceeded 60 s"
                row["log_tail"] = "\n".join(
                    [f"[{s_idx}:{k:02d}] tvm/src/runtime/library_module.cc:{78 + k}: call packed func" for k in range(36)]
                    + ["Segmentation fault (core dumped)" if verdict == "crashed" else "killed after timeout"])
            else:
                row["reason"] = reason
            verdict_rows.append(row)

    verdict_cols = ["mutant_id", "operator", "level", "site", "stack", "verdict", "reason",
                    *COMPARISON_METRICS, "flipped", "build_s", "run_s", "log_tail"]
    verdicts = pd.DataFrame(verdict_rows, columns=verdict_cols)
    verdicts.to_csv(folder / "verdicts.csv", index=False)
    pd.DataFrame(image_rows, columns=["mutant_id", "stack", "image", "original_top5", "mutant_top5", "flipped"]
                 ).to_csv(folder / "per_image.csv", index=False)
    _score_rows(verdicts).to_csv(folder / "scores.csv", index=False)
    wide = verdicts.pivot(index="mutant_id", columns="stack", values="verdict")[stacks]
    differ = wide[wide.nunique(axis=1) > 1]
    info = verdicts.drop_duplicates("mutant_id").set_index("mutant_id")[["operator", "level", "site"]]
    info.join(differ, how="inner").reset_index()[["mutant_id", "operator", "level", "site", *stacks]] \
        .to_csv(folder / "discrepancies.csv", index=False)
    _write_json(folder / "mutants.json", mutants)
    _write_json(folder / "images.json", images)
    started = datetime(2025, 3, 14, 9, 30, tzinfo=timezone.utc)
    duration = float(verdicts["build_s"].fillna(0).sum() + verdicts["run_s"].fillna(0).sum()) / 4
    _write_json(folder / "run.json", {
        "kind": "campaign", "model": model, "images": "bundled-imagenette", "image_count": n_images,
        "stacks": stacks, "started": started.isoformat(),
        "finished": (started + timedelta(seconds=duration)).isoformat(), "duration_s": round(duration, 1),
        "mutatenn_version": "0.1.0", "per_image_cap": cap,
        "config": {"model": {"name": model}, "stacks": [{"name": s} for s in stacks]},
    })
    return folder


def write_sample_comparison(folder, *, variants=None, n_images: int = 16, seed: int = 0,
                            model: str = "mobilenet_v2", image_names=None) -> Path:
    """Write a comparison run folder: variants[0] is the baseline."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    variants = list(variants or VARIANTS)
    baseline = variants[0]
    images = _images(rng, n_images, image_names)
    # Each variant's top-1 per image; some variants stray from the baseline more than others.
    stray = {v: (0.0 if v == baseline else float(rng.uniform(0.0, 0.25))) for v in variants}
    truth = [img["label"] for img in images]
    top1 = {v: [t if rng.random() >= stray[v] else str(rng.choice(LABELS)) for t in truth] for v in variants}
    latency = {v: float(rng.uniform(4, 40)) for v in variants}

    def metrics(a: str, b: str) -> dict:
        agree = float(np.mean([x == y for x, y in zip(top1[a], top1[b])]))
        gap = 1.0 - agree
        return {"top1_agreement": round(agree, 4), "topk_overlap": round(1 - gap * 0.6, 4),
                "kendall_tau": round(1 - gap * 1.4, 4), "rbo": round(1 - gap * 0.8, 4),
                "max_abs_error": round(gap * 12 + float(rng.uniform(0, 1e-3)), 6),
                "rel_l2": round(gap * 0.9 + float(rng.uniform(0, 1e-4)), 6),
                "cosine": round(1 - gap * 0.5, 6), "latency_ratio": round(latency[a] / latency[b], 3)}

    comp = []
    for v in variants[1:]:
        med = latency[v]
        acc = float(np.mean([x == t for x, t in zip(top1[v], truth)]))
        comp.append({"variant": v, "baseline": baseline, **metrics(v, baseline),
                     "latency_ms_median": round(med, 3), "latency_ms_p10": round(med * 0.9, 3),
                     "latency_ms_p90": round(med * float(rng.uniform(1.1, 1.6)), 3), "accuracy": round(acc, 4)})
    comp_df = pd.DataFrame(comp)
    comp_df = comp_df[["variant", "baseline", "top1_agreement", "topk_overlap", "kendall_tau", "rbo",
                       "max_abs_error", "rel_l2", "cosine", "latency_ms_median", "latency_ms_p10",
                       "latency_ms_p90", "latency_ratio", "accuracy"]]
    comp_df.to_csv(folder / "comparison.csv", index=False)
    _write_json(folder / "comparison.json", comp_df.to_dict("records"))
    pairs = [{"variant_a": a, "variant_b": b, **metrics(a, b)} for a in variants for b in variants if a != b]
    pd.DataFrame(pairs, columns=["variant_a", "variant_b", *COMPARISON_METRICS]).to_csv(
        folder / "pairwise.csv", index=False)
    rows = []
    for i, img in enumerate(images):
        for v in variants:
            top5 = _topk(rng, top1[v][i])
            rows.append({"image": img["name"], "label": img["label"], "variant": v, "top1": top1[v][i],
                         "top1_score": top5[0][1], "top5": json.dumps(top5),
                         "agrees_with_baseline": top1[v][i] == top1[baseline][i]})
    per_image = pd.DataFrame(rows)
    per_image.to_csv(folder / "per_image.csv", index=False)
    _write_json(folder / "per_image.json", per_image.to_dict("records"))
    _write_json(folder / "images.json", images)
    started = datetime(2025, 3, 14, 14, 0, tzinfo=timezone.utc)
    _write_json(folder / "run.json", {
        "kind": "comparison", "model": model, "images": "bundled-imagenette", "image_count": n_images,
        "baseline": baseline, "variants": variants[1:], "started": started.isoformat(),
        "finished": (started + timedelta(seconds=312.4)).isoformat(), "duration_s": 312.4,
        "mutatenn_version": "0.1.0",
    })
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.sample", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["campaign", "comparison"])
    parser.add_argument("out_dir")
    parser.add_argument("--mutants", type=int, default=40)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .render import render_report
    if args.kind == "campaign":
        write_sample_campaign(args.out_dir, n_mutants=args.mutants, n_images=args.images, seed=args.seed)
    else:
        write_sample_comparison(args.out_dir, n_images=args.images, seed=args.seed)
    print(render_report(args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
