"""Campaign throughput: the engine against a serial build-everything loop, in one run.

    .venv/bin/python benchmarks/bench_campaign.py [--images digits:32] [--jobs 2]

Same mutants of torchvision:mobilenet_v2 (seeded weights), same 32 images (8x8 digits
upscaled to 224x224), one stack (host CPU, O2):
  (a) serial, one process: every mutant built from scratch and run, equivalent ones
      included; nothing skipped, shared or cached (how a research script does it);
  (b) `run_campaign` with --jobs worker processes: equivalent mutants skipped, equal
      builds shared, the original built once.
Writes benchmarks/results/campaign.txt: mutants per minute of both and the ratio.
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


def config_dict(images: str) -> dict:
    return {
        "model": {"spec": "torchvision:mobilenet_v2", "pretrained": "never"},
        "images": {"spec": images},
        "mutants": {"operators": {
            "tir_store_add1": {"sample": 4, "seed": 1},
            "tir_store_cast_float16": {"sample": 4, "seed": 2},
            "tir_cond_rhs_plus1": {"sample": 3, "seed": 3},
            "replace_activation_with_relu": {"sample": 3, "seed": 4},
            "fuzz_weight_gaussian": {"sample": 2, "seed": 5},
            "pass_opt_level": "all",
            "pass_fast_math": "all",
        }},
        "stacks": [{"name": "cpu-O2", "target": "cpu", "opt_level": 2}],
        "run": {"timeout": 1800},
    }


def serial_baseline(config) -> tuple[int, float]:
    """Every mutant built from scratch and run in this process, one after another."""
    from dataclasses import replace

    import mutators
    import operators
    from mutatenn.campaign.plan import enumerate_selected
    from mutatenn.execute import input_batch, run_variant
    from mutatenn.images import load_image_set
    from mutatenn.loading import load_program
    from mutatenn.runners import parse_variant

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = load_program(config.model, config.pretrained, config.preset)
    batch = input_batch(program, load_image_set(config.images))
    stack = config.stacks[0]
    variant = replace(parse_variant(stack.variant_text), options=stack.options)
    reference = run_variant(program, variant, batch).output
    listed = enumerate_selected(program, config)
    killed = 0
    for m in listed:
        mutant = mutators.make_mutant(program.mod, m.operator, m.site_index, with_diff=False)
        if mutant.mod is None:
            continue
        options = stack.options.with_overrides(mutant.build_options)
        out = run_variant(program, replace(variant, options=options), batch, mod=mutant.mod).output
        killed += config.criterion.is_killed(operators.compare_outputs(reference.logits, out.logits))
        print(f"  serial: {m.id} done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return len(listed), time.perf_counter() - start


def engine(config, jobs: int) -> tuple[int, float, int]:
    from mutatenn.campaign import run_campaign

    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
        start = time.perf_counter()
        result = run_campaign(config, Path(tmp) / "run", jobs=jobs, quiet=True, render=False)
        seconds = time.perf_counter() - start
        mutants = result.verdicts["mutant_id"].nunique()
        import json

        builds = json.loads((Path(tmp) / "run" / "run.json").read_text())["builds"]
    return mutants, seconds, builds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", default="digits:32")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "campaign.txt")
    args = parser.parse_args()
    from mutatenn.config import parse_config

    config = parse_config(config_dict(args.images))
    n_engine, t_engine, builds = engine(config, args.jobs)
    n_serial, t_serial = serial_baseline(config)
    rate_serial = n_serial / (t_serial / 60)
    rate_engine = n_engine / (t_engine / 60)
    lines = [
        "Campaign throughput: torchvision:mobilenet_v2 (seeded weights), "
        f"{args.images} upscaled to 224x224, one stack (cpu, O2)",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        f"mutants: {n_serial} (graph, weight, TIR, pass; equivalent ones included in both counts)",
        "",
        f"(a) serial, one process, every mutant built from scratch: {t_serial:7.1f} s  {rate_serial:6.2f} mutants/min",
        f"(b) mutatenn run --jobs {args.jobs} ({builds} builds incl. the original):   "
        f"{t_engine:7.1f} s  {rate_engine:6.2f} mutants/min",
        f"ratio (b)/(a): {rate_engine / rate_serial:.2f}x",
        "",
        "Both include loading and importing the model; (b) also includes starting its worker",
        "processes (each imports TVM and the model once) and writing the run folder.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
