"""Inference latency per schedule and framework, and build time of shared mutant builds.

    .venv/bin/python benchmarks/bench_speed.py [--models torchvision:mobilenet_v2,torchvision:resnet50]
        [--images 8] [--mutants 6] [--threads 2]

For each model (seeded weights), in one process and one run:
  1. per-image latency (median over --images images, one image per call, after two
     warm-up calls) of TVM with schedule none / default / tuned (tuned only when
     `mutatenn tune` has stored records for the model on this CPU), ONNX Runtime and
     PyTorch eager;
  3. build time: one full build of the original (median of 3) against the build of a
     mutant linked against the original's kernels (`build.build_with_kernels`), median
     over --mutants TIR mutants and --mutants graph mutants.
Writes benchmarks/results/speed.txt.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import write_result  # noqa: E402

TIR_OPERATORS = ["tir_store_add1", "tir_store_scale2", "tir_store_cast_float16"]
GRAPH_OPERATORS = ["replace_activation_with_sigmoid", "insert_exp_after", "duplicate_layer", "swap_layers"]


def latencies(program, batch, has_tuned: bool) -> list[tuple[str, float]]:
    from mutatenn.execute import run_variant
    from mutatenn.runners import parse_variant

    variants = ["tvm:cpu(schedule=none)", "tvm:cpu(schedule=default)"]
    variants += ["tvm:cpu(schedule=tuned)"] if has_tuned else []
    variants += ["onnxruntime", "torch"]
    out = []
    for text in variants:
        result = run_variant(program, parse_variant(text), batch)
        out.append((text, result.output.latency_ms_median))
        print(f"  {text}: {out[-1][1]:.1f} ms/image", file=sys.stderr, flush=True)
    return out


def pick_mutants(program, operators: list[str], count: int) -> list:
    """Up to ``count`` pending mutants spread over ``operators`` (first sites of each)."""
    import mutators

    chosen = []
    for site in range(count):
        for name in operators:
            mutant = mutators.make_mutant(program.mod, name, site, with_diff=False)
            if mutant.mod is not None and len(chosen) < count:
                chosen.append(mutant)
    return chosen


def build_times(program, count: int) -> dict:
    from mutatenn.build import BuildOptions, build_with_kernels, parse_target

    target, options = parse_target("cpu"), BuildOptions()
    full, kernels = [], None
    for _ in range(3):
        start = time.perf_counter()
        _, kernels = build_with_kernels(program.mod, target, options)
        full.append(time.perf_counter() - start)
    out = {"full": statistics.median(full)}
    for level, operators in (("tir", TIR_OPERATORS), ("graph", GRAPH_OPERATORS)):
        times = []
        for mutant in pick_mutants(program, operators, count):
            start = time.perf_counter()
            build_with_kernels(mutant.mod, target, options, kernels)
            times.append(time.perf_counter() - start)
        out[level] = statistics.median(times)
        out[f"{level}_n"] = len(times)
    return out


def tuned_database(spec: str) -> bool:
    from mutatenn.build import parse_target
    from mutatenn.errors import InputError

    try:
        from mutatenn.tuning import require_database

        require_database(spec, parse_target("cpu"))
        return True
    except (ImportError, InputError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="torchvision:mobilenet_v2,torchvision:resnet50")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--mutants", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2, help="TVM_NUM_THREADS (TVM uses 1 thread without it)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed.txt")
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import numpy as np

    from mutatenn.build import host_cpu_name
    from mutatenn.loading import load_program

    lines = [f"machine: {platform.machine()}, {os.cpu_count()} cores, LLVM cpu {host_cpu_name()}, "
             f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}, Python {platform.python_version()}", ""]
    for spec in args.models.split(","):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = load_program(spec, "never")
        batch = np.random.default_rng(0).standard_normal((args.images, *program.input.shape[1:])).astype(np.float32)
        print(spec, file=sys.stderr, flush=True)
        lat = dict(latencies(program, batch, tuned_database(spec)))
        none, default = lat["tvm:cpu(schedule=none)"], lat["tvm:cpu(schedule=default)"]
        lines.append(f"{spec} (seeded weights), per-image latency, median of {args.images} images, ms:")
        lines += [f"  {text:28s} {ms:9.1f}" for text, ms in lat.items()]
        lines.append(f"  default vs none: {none / default:.1f}x faster (goal >= 5x)")
        if "tvm:cpu(schedule=tuned)" in lat:
            lines.append(f"  tuned vs ONNX Runtime: {lat['tvm:cpu(schedule=tuned)'] / lat['onnxruntime']:.2f}x "
                         "the latency (goal <= 2x)")
        lines.append(f"  default vs ONNX Runtime: {default / lat['onnxruntime']:.2f}x the latency")
        builds = build_times(program, args.mutants)
        lines.append(f"  build: full {builds['full']:.2f} s (median of 3); mutant linked against the original's "
                     f"kernels: TIR {builds['tir']:.2f} s = {100 * builds['tir'] / builds['full']:.0f}% "
                     f"(median of {builds['tir_n']}), graph {builds['graph']:.2f} s = "
                     f"{100 * builds['graph'] / builds['full']:.0f}% (median of {builds['graph_n']}) (goal <= 30%)")
        lines.append("")
        print("\n".join(lines[-8:]), file=sys.stderr, flush=True)
    return write_result(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
