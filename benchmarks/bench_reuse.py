"""Incremental runs: a config gains a stack and is run again with --reuse, against a fresh run.

    .venv/bin/python benchmarks/bench_reuse.py [--images digits:100] [--jobs 2]

A small campaign like examples/digits.toml (the bundled digits CNN, one sampled site per
graph and TIR operator) on two stacks (host CPU at O0 and O2) is run once; then the same
config with a third stack (generic x86-64 at O3) is run (a) fresh and (b) with
`--reuse` of the first run. Both in this one process, one after the other. Writes
benchmarks/results/reuse.md: builds run and wall time of (a) and (b), and whether their
verdicts agree pair for pair.
"""
from __future__ import annotations

import argparse
import copy
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

STACKS = [{"name": "cpu-O0", "target": "cpu", "opt_level": 0}, {"name": "cpu-O2", "target": "cpu", "opt_level": 2}]
ADDED = {"name": "generic-O3", "target": "cpu-generic", "opt_level": 3}


def config(images: str, stacks: list[dict]) -> dict:
    return {"model": {"spec": "digits"}, "images": {"spec": images},
            "mutants": {"levels": ["graph", "tir"], "select": {"sample": 1, "seed": 1}},
            "stacks": copy.deepcopy(stacks), "kill": {"criterion": "top1_agreement < 1.0"},
            "run": {"timeout": 300, "repeats": 2}}


def timed(raw: dict, out: Path, jobs: int, reuse: Path | None = None):
    from mutatenn import api

    start = time.perf_counter()
    run = api.run_campaign(raw, out=out, jobs=jobs, reuse=reuse, report=False)
    seconds = time.perf_counter() - start
    reused = (run.meta.get("reuse") or {}).get("builds_reused", 0)
    return run, seconds, run.meta["builds"] - reused, reused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="digits:100")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first, first_s, _, _ = timed(config(args.images, STACKS), tmp / "first", args.jobs)
        grown = config(args.images, [*STACKS, ADDED])
        fresh, fresh_s, fresh_built, _ = timed(grown, tmp / "fresh", args.jobs)
        reused, reused_s, reused_built, reused_n = timed(grown, tmp / "reused", args.jobs, reuse=tmp / "first")
        key = ["mutant_id", "stack"]
        a = fresh.verdicts.set_index(key)["verdict"]
        b = reused.verdicts.set_index(key)["verdict"].reindex(a.index)
        same = int((a == b).sum())
        # The same pairs run twice with nothing reused (the first run and the fresh one, on
        # the two stacks both have): how often a verdict differs between two fresh runs.
        c = first.verdicts.set_index(key)["verdict"]
        twice = int((a.reindex(c.index) == c).sum())
        unstable = fresh.verdicts.set_index(key)["unstable"].reindex(a.index)
        differ = [f"{m}@{st}: fresh {a[(m, st)]}, reused {b[(m, st)]}"
                  f"{' (unstable in the fresh run)' if unstable[(m, st)] == 1 else ''}"
                  f"{'; first run ' + c[(m, st)] if (m, st) in c.index else ''}"
                  for m, st in a.index[a != b]]
        added_pairs = int((fresh.verdicts["stack"] == ADDED["name"]).sum())
        mutants = len(fresh.mutants)
    lines = [
        "# Incremental runs: one stack added, rerun with --reuse",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_reuse.py --images {args.images} --jobs {args.jobs}`",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}; jobs {args.jobs}; shared with other work, "
        "so compare the two rows with each other, not with other files.",
        "",
        f"Config: digits CNN, {args.images}, {mutants} mutants (one sampled site per graph and TIR operator), "
        "repeats 2. First run on cpu-O0 and cpu-O2 "
        f"({first.meta['builds']} builds, {first_s:.1f} s); "
        f"then generic-O3 added ({added_pairs} more mutant x stack pairs).",
        "",
        "| run of the 3-stack config | builds run | builds reused | wall time |",
        "|---|---:|---:|---:|",
        f"| fresh | {fresh_built} | 0 | {fresh_s:.1f} s |",
        f"| `--reuse` of the 2-stack run | {reused_built} | {reused_n} | {reused_s:.1f} s |",
        "",
        f"Verdicts equal pair for pair: {same} of {len(a)} (mutant x stack pairs). For scale, two fresh runs "
        f"(the first run and the fresh one, on cpu-O0 and cpu-O2) agree on {twice} of {len(c)}.",
        *(f"- differs: {line}" for line in differ),
        f"Time saved: {fresh_s - reused_s:.1f} s ({100 * (1 - reused_s / fresh_s):.0f}%); "
        f"builds saved: {fresh_built - reused_built}.",
    ]
    return write_result(ROOT / "benchmarks" / "results" / "reuse.md", lines)


if __name__ == "__main__":
    raise SystemExit(main())
