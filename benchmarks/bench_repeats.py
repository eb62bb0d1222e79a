"""Passes in the worker or in fresh processes, and verdicts over them, on the TIR operators
that read outside their buffers.

    .venv/bin/python benchmarks/bench_repeats.py [--images digits:60] [--sample 12] [--repeats 3]

Runs the same campaign twice (`[run] repeat_in = "worker"`, then `"process"`), with
`verdict = "majority"`, on a seeded sample of each of the four operators that
benchmarks/results/stability.md found unstable. Counts, per mode: unstable pairs, pairs
whose majority verdict differs from their first pass (first-pass kill = the default
criterion on the first pass's top1_agreement), and the campaign's wall time. Writes
benchmarks/results/repeats.md.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _results import write_result

OPERATORS = ("tir_loop_extent_minus1", "tir_loop_min_plus1", "tir_cond_rhs_plus1", "tir_lt_to_le")
CONFIG = """
[model]
spec = "digits"
[images]
spec = "{images}"
[mutants]
select = {{ sample = {sample}, seed = 0 }}
[mutants.operators]
{operators}
[[stacks]]
name = "cpu"
target = "cpu"
[run]
timeout = 300
jobs = 2
repeats = {repeats}
repeat_in = "{mode}"
verdict = "majority"
"""


def run(mode: str, args, tmp: Path) -> dict:
    config = tmp / f"{mode}.toml"
    config.write_text(CONFIG.format(images=args.images, sample=args.sample, repeats=args.repeats, mode=mode,
                                    operators="\n".join(f'{op} = "default"' for op in OPERATORS)))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mutatenn.cli", "run", str(config), "--out", str(tmp / mode), "--quiet",
                           "--no-report"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{mode}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    verdicts = pd.read_csv(tmp / mode / "verdicts.csv")
    judged = verdicts[verdicts["verdict"].isin(["killed", "survived"])]
    first_kill = judged["top1_agreement"] < 1.0
    return {"pairs": len(verdicts), "judged": len(judged), "unstable": int((judged["unstable"] == 1).sum()),
            "changed": int(((judged["verdict"] == "killed") != first_kill).sum()),
            "killed": int((judged["verdict"] == "killed").sum()), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", default="digits:60")
    parser.add_argument("--sample", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "repeats.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {mode: run(mode, args, Path(tmp)) for mode in ("worker", "process")}
    lines = [f"# Repeated passes: digits on {args.images}, {args.sample} sampled sites of each of "
             f"{', '.join(OPERATORS)}; repeats = {args.repeats}, verdict = majority", "",
             "| repeat_in | pairs | judged | unstable | majority differs from first pass | killed | wall time |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mode, r in results.items():
        lines.append(f"| {mode} | {r['pairs']} | {r['judged']} | {r['unstable']} | {r['changed']} | {r['killed']} | "
                     f"{r['seconds']:.0f} s |")
    ratio = results["process"]["seconds"] / results["worker"]["seconds"]
    lines += ["", f"Passes in fresh processes cost {ratio:.2f}x the wall time of passes in the worker "
              f"(each extra pass starts Python, imports TVM and loads the exported build)."]
    return write_result(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
