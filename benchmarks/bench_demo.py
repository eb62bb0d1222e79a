"""Wall time of the digits demo (`make demo` = `mutatenn demo`), before and after, in one run.

    .venv/bin/python benchmarks/bench_demo.py [--before e8bcacc] [--jobs 2]

"Before" is the demo of an earlier commit (default: the last one before schedules and
shared builds), checked out into a temporary git worktree and run with the same Python;
"after" is this working tree. Each runs in a fresh process into a fresh folder.
Writes benchmarks/results/demo.txt.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import write_result  # noqa: E402


def run_demo(source: Path, out: Path, jobs: int) -> float:
    """Seconds `python -m mutatenn.cli demo` takes with ``source`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mutatenn.cli", "demo", "--out", str(out), "--jobs", str(jobs)],
                   cwd=source, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="e8bcacc")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.before], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            before = run_demo(old, Path(tmp) / "demo-before", args.jobs)
            after = run_demo(ROOT, Path(tmp) / "demo-after", args.jobs)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
             f"mutatenn demo --jobs {args.jobs} (digits CNN, 150 images, 3 stacks, repeats = 2):",
             f"  before (commit {args.before}): {before:6.1f} s",
             f"  after (this tree):            {after:6.1f} s",
             f"  after / before: {after / before:.2f} (goal <= 0.5)"]
    return write_result(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
