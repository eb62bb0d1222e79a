"""Import, build and per-image latency of one model on TVM (lowest and highest opt level),
PyTorch eager and ONNX Runtime, in one run.

    .venv/bin/python benchmarks/bench_foundation.py [--model torchvision:mobilenet_v2] [--images digits:32]

Writes benchmarks/results/foundation.txt. Latency: one image per call after a warm-up;
median and 10th-90th percentile over the images.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="torchvision:mobilenet_v2")
    parser.add_argument("--images", default="digits:32")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "foundation.txt")
    args = parser.parse_args()

    from mutatenn.execute import input_batch, run_variant
    from mutatenn.images import load_image_set
    from mutatenn.loading import load_program
    from mutatenn.runners import parse_variant

    rows = []
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = load_program(args.model)
    import_s = time.perf_counter() - start
    images = load_image_set(args.images)
    batch = input_batch(program, images)
    reference = None
    for text in ["tvm:cpu:O0", "tvm:cpu:O3"]:
        result = run_variant(program, parse_variant(text), batch)
        rows.append((text, result.build_s, result.output))
    out = run_variant(program, parse_variant("torch"), batch).output
    rows.append(("torch (eager)", 0.0, out))
    reference = out.logits
    result = run_variant(program, parse_variant("onnxruntime"), batch)
    rows.append(("onnxruntime", result.build_s, result.output))

    lines = [f"# {args.model} on {len(images)} images ({args.images}); {platform.processor() or platform.machine()}, "
             f"{__import__('os').cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}",
             f"import into Relax (torch.export + from_exported_program): {import_s:.2f} s",
             "",
             f"{'variant':16s} {'build/export s':>14s} {'median ms/img':>14s} {'p10':>8s} {'p90':>8s} {'rel L2 vs torch':>16s}"]
    for name, build_s, out in rows:
        lat = out.latencies * 1e3
        err = np.linalg.norm(out.logits - reference) / np.linalg.norm(reference)
        lines.append(f"{name:16s} {build_s:14.2f} {np.median(lat):14.2f} {np.percentile(lat, 10):8.2f} "
                     f"{np.percentile(lat, 90):8.2f} {err:16.2e}")
    return write_result(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
