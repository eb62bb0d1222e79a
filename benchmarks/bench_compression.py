"""Compression on this CPU: fp32 against int8 and fp16 for ONNX Runtime and TVM.

    .venv/bin/python benchmarks/bench_compression.py [--models torchvision:resnet18,torchvision:mobilenet_v2]
        [--images photos:16] [--threads 2] [--calibration 8]

For each model (seeded weights: agreement is measured against the fp32 baseline, not
labels), in one run, through `mutatenn.compare` (every variant in its own worker, every
runner on the same --threads): ONNX Runtime fp32 / int8-static / fp16 and TVM fp32 / fp16 /
int8-static (fake-quantised QDQ float math), each against torch fp32. Reports deployable
size, median latency, their ratios to the same runner's fp32, top-1 agreement and max
relative error against fp32. Writes benchmarks/results/compression.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import write_result  # noqa: E402

VARIANTS = {"onnxruntime": ["onnxruntime", "onnxruntime(quantize=int8-static, calibration={c})",
                            "onnxruntime(precision=fp16)"],
            "tvm": ["tvm:cpu", "tvm:cpu(quantize=int8-static, calibration={c})", "tvm:cpu(precision=fp16)"]}


def measure(model: str, images: str, threads: int, calibration: int) -> list[str]:
    from mutatenn.compare import compare

    variants = [v.format(c=calibration) for group in VARIANTS.values() for v in group]
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        result = compare(model, images, ",".join(variants), "torch", Path(out) / "cmp", render=False, threads=threads)
        took = time.perf_counter() - start
    table = result.table.set_index("variant")
    rows = []
    for group in VARIANTS.values():
        fp32 = table.loc[group[0]]
        for text in (v.format(c=calibration) for v in group):
            r = table.loc[text]
            if r["error"]:
                rows.append(f"| {model} | {text} | error: {r['error'][:120]} | | | | | |")
                continue
            rows.append(f"| {model} | {text} | {r['size_bytes'] / 1e6:.2f} | {r['size_bytes'] / fp32['size_bytes']:.2f} "
                        f"| {r['latency_ms_median']:.2f} | {r['latency_ms_median'] / fp32['latency_ms_median']:.2f} "
                        f"| {r['top1_agreement']:.3f} | {r['max_rel_error']:.3g} |")
    rows.append(f"| {model} | (torch fp32 baseline) | {table.loc['torch', 'size_bytes'] / 1e6:.2f} | | "
                f"{table.loc['torch', 'latency_ms_median']:.2f} | | 1 | 0 |")
    print(f"{model}: {took:.0f} s", file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="torchvision:resnet18,torchvision:mobilenet_v2")
    parser.add_argument("--images", default="photos:16")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--calibration", type=int, default=8)
    args = parser.parse_args()
    lines = ["# Compression: fp32 against int8 and fp16 (ONNX Runtime, TVM)", "",
             f"Machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
             f"every runner on {args.threads} thread(s); images {args.images}, calibration {args.calibration}; "
             "seeded weights. Ratios are to the same runner's fp32 variant, in the same run. Agreement and "
             "max relative error are against torch fp32. TVM int8-static is fake-quantised QDQ float math "
             "(quantize/dequantize around float conv and matmul): it shows quantisation's effect on outputs, "
             "not int8 kernels' speed.", "",
             f"Command: `python benchmarks/bench_compression.py --models {args.models} --images {args.images} "
             f"--threads {args.threads} --calibration {args.calibration}`", "",
             "| model | variant | size MB | size × fp32 | ms/img | latency × fp32 | top-1 agr. | max rel err |",
             "|---|---|---|---|---|---|---|---|"]
    for model in args.models.split(","):
        lines += measure(model.strip(), args.images, args.threads, args.calibration)
    write_result(ROOT / "benchmarks" / "results" / "compression.md", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
