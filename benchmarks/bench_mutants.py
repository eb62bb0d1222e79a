"""Mutant enumeration: sites per operator on several models, and the time to list them.

    .venv/bin/python benchmarks/bench_mutants.py [--models digits,torchvision:resnet18,torchvision:mobilenet_v2]

Writes benchmarks/results/mutants.md: per operator, the number of mutants on each model
with how many are equivalent / non-viable, and the wall time of
`mutatenn mutants --model torchvision:mobilenet_v2 --json` (import + enumeration) in a fresh process.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="digits,torchvision:resnet18,torchvision:mobilenet_v2")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mutants.md")
    args = parser.parse_args()
    import mutators
    from mutatenn.loading import load_program

    models = args.models.split(",")
    counts: dict[str, dict[str, Counter]] = {}
    timings = {}
    for model in models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = load_program(model)
        start = time.perf_counter()
        mutants = mutators.enumerate_mutants(program.mod)
        timings[model] = (time.perf_counter() - start, len(mutants))
        per_op: dict[str, Counter] = {}
        for m in mutants:
            per_op.setdefault(m.operator, Counter())[m.status] += 1
        counts[model] = per_op

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mutatenn.cli", "mutants", "--model", "torchvision:mobilenet_v2",
                           "--json"], capture_output=True, text=True)
    cli_s = time.perf_counter() - start

    lines = [f"# Mutants per operator ({time.strftime('%Y-%m-%d %H:%M')}, {__import__('os').cpu_count()} cores)", "",
             "Cell: mutants (equivalent / non-viable).", "",
             "| operator | level | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for op in mutators.catalogue():
        cells = []
        for model in models:
            c = counts[model].get(op.name, Counter())
            total = sum(c.values())
            cells.append(f"{total} ({c['equivalent']} / {c['non_viable']})")
        lines.append(f"| {op.name} | {op.level} | " + " | ".join(cells) + " |")
    lines.append("| **all** | | " + " | ".join(
        f"{timings[m][1]} ({sum(c['equivalent'] for c in counts[m].values())} / "
        f"{sum(c['non_viable'] for c in counts[m].values())})" for m in models) + " |")
    lines += ["", "Enumeration time (status + hash, no diffs), in-process after import:", ""]
    lines += [f"- {m}: {timings[m][0]:.1f} s for {timings[m][1]} mutants" for m in models]
    lines += ["", f"`mutatenn mutants --model torchvision:mobilenet_v2 --json` in a fresh process "
              f"(import + enumeration): {cli_s:.1f} s, exit {proc.returncode}"]
    return write_result(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
