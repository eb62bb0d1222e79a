"""Time the campaign report for 500 mutants x 3 stacks (32 images, ~40-line IR diffs).

Usage: python benchmarks/bench_report.py [--mutants 500] [--repeat 3]
Writes benchmarks/results/report.txt and prints the same lines.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports import load_run_folder, render_campaign_report  # noqa: E402
from reports.sample import STACKS, write_sample_campaign  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=500)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "report.txt"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_sample_campaign(Path(tmp) / "run", n_mutants=args.mutants, n_images=args.images,
                                       diff_lines=40, seed=0)
        inputs = sum(f.stat().st_size for f in folder.iterdir())
        load_times, render_times = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            run = load_run_folder(folder)
            load_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            out = render_campaign_report(run, folder / "report.html")
            render_times.append(time.perf_counter() - start)
        size = out.stat().st_size
        rows = (len(run.verdicts), len(run.per_image))

    load_s, render_s = statistics.median(load_times), statistics.median(render_times)
    lines = [
        f"campaign report: {args.mutants} mutants x {len(STACKS)} stacks, {args.images} images, "
        f"~40-line IR diffs",
        f"input tables: {rows[0]} verdict rows, {rows[1]} per-image rows, {inputs / 2**20:.1f} MiB on disk",
        f"load_run_folder: median {load_s:.2f} s of {args.repeat}",
        f"render (context + template + atomic write): median {render_s:.2f} s of {args.repeat} "
        f"(runs: {', '.join(f'{t:.2f}' for t in render_times)})",
        f"load + render: {load_s + render_s:.2f} s (limit 10 s)",
        f"report.html: {size / 2**20:.2f} MiB ({size} bytes; limit 10 MB)",
        f"machine: {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs",
    ]
    return write_result(Path(args.out), lines)


if __name__ == "__main__":
    raise SystemExit(main())
