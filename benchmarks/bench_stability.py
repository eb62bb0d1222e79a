"""How often do TIR mutants give different outputs when the same build runs again?

    .venv/bin/python benchmarks/bench_stability.py [--model digits] [--images digits:150] [--target cpu]
                                                   [--operators tir_lt_to_le,...] [--processes 2]

Each of --processes child processes builds every pending TIR mutant of the model for the
target (opt level 2) and runs the image set twice, each pass with a fresh VM. A mutant is
*unstable in a process* when its two passes differ, and *unstable across processes* when
its first-pass outputs differ between processes. Writes benchmarks/results/stability.md:
per operator, the mutants and how many were unstable each way. This is the measurement
behind the campaign option `[run] repeats` (which sees the in-process kind only).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402


def _digest(logits) -> str:
    import numpy as np

    canon = np.where(np.isnan(logits), np.float32(np.nan), logits).astype(np.float32)  # one NaN pattern
    return hashlib.blake2b(canon.tobytes(), digest_size=16).hexdigest()


def child(args) -> int:
    import mutators
    from mutatenn.build import BuildOptions, build_artifact, parse_target
    from mutatenn.campaign.job import differing_rows
    from mutatenn.execute import cached_images, cached_program, input_batch
    from mutatenn.runners import Variant, make_runner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = cached_program(args.model, "auto", None)
        batch = input_batch(program, cached_images(args.images))
    target = parse_target(args.target)
    wanted = set(args.operators.split(",")) if args.operators else None
    mutants = [m for m in mutators.enumerate_mutants(program.mod, levels=["tir"], with_diff=False)
               if m.status == "pending" and (wanted is None or m.operator in wanted)]
    rows = []
    for m in mutants:
        mutant = mutators.make_mutant(program.mod, m.operator, m.site_index, with_diff=False)
        try:
            executable = build_artifact(mutant.mod, target, BuildOptions(opt_level=2))
        except Exception as err:  # a mutant the compiler refuses is counted, not fatal
            lines = str(err).strip().splitlines()
            rows.append({"id": m.id, "operator": m.operator, "digest": "", "unstable_images": 0,
                         "build_error": f"{type(err).__name__}: {lines[-1] if lines else ''}"[:300]})
            continue
        runner = make_runner(Variant(f"tvm:{args.target}", "tvm", target, BuildOptions(opt_level=2)), program)
        runner.use_executable(executable)
        first = runner.run(batch).logits
        second = runner.run(batch).logits
        rows.append({"id": m.id, "operator": m.operator, "digest": _digest(first),
                     "unstable_images": len(differing_rows(first, [second]))})
    Path(args.child).write_text(json.dumps(rows))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="digits")
    parser.add_argument("--images", default="digits:150")
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--operators", default="", help="comma-separated TIR operators (default: all)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stability.md")
    args = parser.parse_args()
    if args.child:
        return child(args)

    runs, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.processes):
            path = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, __file__, "--model", args.model, "--images", args.images, "--target",
                   args.target, "--operators", args.operators, "--child", str(path)]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            seconds.append(time.perf_counter() - start)
            if proc.returncode != 0:
                # A mutant that crashes its process ends the measurement: say which run and why.
                sys.stderr.write(proc.stderr[-3000:])
                print(f"child process {i} exited {proc.returncode}", file=sys.stderr)
                return 1
            runs.append(json.loads(path.read_text()))

    per_op: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    examples: dict[str, list[str]] = defaultdict(list)
    errors: dict[str, list[str]] = {}
    for rows in zip(*runs):
        op = rows[0]["operator"]
        within = any(r["unstable_images"] for r in rows)
        across = len({r["digest"] for r in rows}) > 1
        c = per_op[op]
        c["mutants"] += 1
        if rows[0].get("build_error"):
            c["build_errors"] += 1
            errors.setdefault(rows[0]["build_error"], []).append(rows[0]["id"])
            continue
        c["within"] += within
        c["across_only"] += across and not within
        c["any"] += within or across
        if (within or across) and len(examples[op]) < 3:
            examples[op].append(rows[0]["id"])
    total = defaultdict(int)
    for c in per_op.values():
        for k, v in c.items():
            total[k] += v

    lines = [f"# Stability of TIR mutants: {args.model} on {args.images}, target {args.target} (O2)",
             "",
             f"{platform.machine()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}; "
             f"{args.processes} processes, two inference passes each (fresh VM per pass); "
             f"process wall times: {', '.join(f'{s:.0f} s' for s in seconds)}.",
             "",
             "| operator | mutants | build refused | unstable within a process | unstable across processes only "
             "| unstable either way | examples |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for op, c in sorted(per_op.items(), key=lambda kv: (-kv[1]["any"], kv[0])):
        lines.append(f"| {op} | {c['mutants']} | {c['build_errors']} | {c['within']} | {c['across_only']} | "
                     f"{c['any']} | {', '.join(examples[op]) or '-'} |")
    lines.append(f"| **all** | {total['mutants']} | {total['build_errors']} | {total['within']} | "
                 f"{total['across_only']} | {total['any']} | |")
    if errors:
        lines += ["", "Builds refused by the compiler:", ""]
        lines += [f"- {text} ({len(ids)}: {', '.join(ids[:4])}{' …' if len(ids) > 4 else ''})"
                  for text, ids in errors.items()]
    return write_result(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
