"""Campaign throughput and memory: the engine against a serial build-everything loop, in one run.

    .venv/bin/python benchmarks/bench_campaign.py [--images digits:32] [--jobs 2] [--serial-every 4]

Same mutants of torchvision:mobilenet_v2 (seeded weights): 30 of each of the graph, TIR
and weight levels and every pass mutant (the model has 10), same 32 images (8x8 digits
upscaled to 224x224), one stack (host CPU, O2):
  (a) serial, one process: every mutant built from scratch without a schedule (TVM's
      naive loops, as before schedules existed) and run on every image; nothing skipped,
      shared or cached (how a research script does it). Run on every --serial-every'th
      mutant of the list (the rate, mutants per minute, is what is compared);
  (b) `run_campaign` with --jobs worker processes and every speed-up on: the default
      schedule, mutants linked against the original's kernels, fast kill, equivalent
      mutants skipped, equal builds shared.
Also samples the resident memory of the whole process tree during (b) every 0.2 s.
Writes benchmarks/results/campaign.txt: mutants per minute of both, the ratio, peak RSS.
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


def config_dict(images: str) -> dict:
    return {
        "model": {"spec": "torchvision:mobilenet_v2", "pretrained": "never"},
        "images": {"spec": images},
        "mutants": {"operators": {
            "tir_store_add1": {"sample": 8, "seed": 1},
            "tir_store_cast_float16": {"sample": 8, "seed": 2},
            "tir_cond_rhs_plus1": {"sample": 7, "seed": 3},
            "tir_store_scale2": {"sample": 7, "seed": 4},
            "replace_activation_with_relu": {"sample": 8, "seed": 5},
            "insert_exp_after": {"sample": 8, "seed": 6},
            "duplicate_layer": {"sample": 7, "seed": 7},
            "swap_layers": {"sample": 7, "seed": 8},
            "fuzz_weight_gaussian": {"sample": 10, "seed": 9},
            "shuffle_weight": {"sample": 10, "seed": 10},
            "block_neuron_effect": {"sample": 10, "seed": 11},
            "pass_opt_level": "all",
            "pass_fast_math": "all",
            "pass_disable": "all",
        }},
        "stacks": [{"name": "cpu-O2", "target": "cpu", "opt_level": 2}],
        "run": {"timeout": 1800, "fast_kill": True},
    }


def serial_baseline(config, every: int) -> tuple[int, float]:
    """Every ``every``'th mutant built from scratch (no schedule) and run in this process."""
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
    variant = replace(parse_variant(stack.variant_text), options=stack.options.with_overrides({"schedule": "none"}))
    reference = run_variant(program, variant, batch).output
    listed = enumerate_selected(program, config)[::every]
    killed = 0
    for m in listed:
        mutant = mutators.make_mutant(program.mod, m.operator, m.site_index, with_diff=False)
        if mutant.mod is None:
            continue
        options = variant.options.with_overrides(mutant.build_options)
        out = run_variant(program, replace(variant, options=options), batch, mod=mutant.mod).output
        killed += config.criterion.is_killed(operators.compare_outputs(reference.logits, out.logits))
        print(f"  serial: {m.id} done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return len(listed), time.perf_counter() - start


class PeakRSS:
    """The largest total resident memory of this process and all its descendants seen."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.peak, self.interval, self.stop = 0, interval, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self.stop.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()


def engine(config, jobs: int) -> tuple[int, float, int, int]:
    from mutatenn.campaign import run_campaign

    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp, PeakRSS() as rss:
        start = time.perf_counter()
        result = run_campaign(config, Path(tmp) / "run", jobs=jobs, quiet=True, render=False)
        seconds = time.perf_counter() - start
        mutants = result.verdicts["mutant_id"].nunique()
        import json

        builds = json.loads((Path(tmp) / "run" / "run.json").read_text())["builds"]
        levels = result.verdicts.drop_duplicates("mutant_id")["level"].value_counts().to_dict()
        print(f"  engine: {mutants} mutants {levels}, {seconds:.0f} s", file=sys.stderr, flush=True)
    return mutants, seconds, builds, rss.peak


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", default="digits:32")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--serial-every", type=int, default=4, help="time the serial loop on every k-th mutant")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "campaign.txt")
    args = parser.parse_args()
    from mutatenn.config import parse_config

    config = parse_config(config_dict(args.images))
    n_engine, t_engine, builds, peak = engine(config, args.jobs)
    n_serial, t_serial = serial_baseline(config, args.serial_every)
    rate_serial = n_serial / (t_serial / 60)
    rate_engine = n_engine / (t_engine / 60)
    lines = [
        "Campaign throughput: torchvision:mobilenet_v2 (seeded weights), "
        f"{args.images} upscaled to 224x224, one stack (cpu, O2)",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        f"mutants: {n_engine} (30 graph, 30 TIR, 30 weight, every pass mutant; equivalent ones counted)",
        "",
        f"(a) serial, one process, no schedule, every mutant built from scratch, every {args.serial_every}th "
        f"mutant ({n_serial}): {t_serial:7.1f} s  {rate_serial:6.2f} mutants/min",
        f"(b) mutatenn run --jobs {args.jobs}, default schedule + shared builds + fast kill "
        f"({builds} builds incl. the original): {t_engine:7.1f} s  {rate_engine:6.2f} mutants/min",
        f"ratio (b)/(a): {rate_engine / rate_serial:.2f}x (goal >= 10x)",
        f"peak resident memory of all processes during (b): {peak / 2**30:.2f} GiB (goal < 4 GiB)",
        "",
        "Both include loading and importing the model; (b) also includes starting its worker",
        "processes (each imports TVM and the model once, and builds the original once) and",
        "writing the run folder.",
    ]
    return write_result(args.out, lines)


if __name__ == "__main__":
    raise SystemExit(main())
