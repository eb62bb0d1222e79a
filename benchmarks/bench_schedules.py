"""Per-image latency with and without the default CPU schedule (`mutatenn.schedules`).

    .venv/bin/python benchmarks/bench_schedules.py [--models torchvision:mobilenet_v2,torchvision:resnet18]
                                                   [--images 10] [--warmup 2] [--threads N]

For each model (seeded weights: ``load_program(model, "never", None)``) it builds the same
build as `mutatenn.build.build_artifact` at opt level 2 twice for the host CPU
(``{"kind": "llvm", "mcpu": <llvm_get_system_cpu()>}``): untuned, and with
`schedules.default_schedule_pass` inserted after FuseTIR. It times the builds, runs
--warmup images and then --images seeded random images one at a time through each build,
and reports the median (and min) per-image latency, the speed-up, and whether the two
builds agree (relative L2 and top-1). --threads sets TVM_NUM_THREADS (default: TVM's own
choice, which was 1 thread on a 2-vCPU VM; the header records what the pool uses). Writes benchmarks/results/schedules.txt (--append: adds
to it, e.g. a second run with --threads 1).

The machine may be shared: the load average before and after each model is recorded, and
a busy machine slows parallel code most (a parallel region waits for its slowest thread).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "schedules.txt"


def _build(mod, target: dict, schedule: bool, stats):
    """The product's own build (`mutatenn.build.build_artifact`) with the default schedule
    or none; ``stats`` receives what the schedule pass did."""
    from mutatenn.build import BuildOptions, BuildStats, Target, build_artifact

    record = BuildStats()
    options = BuildOptions(schedule="default" if schedule else "none")
    start = time.perf_counter()
    executable = build_artifact(mod, Target("host", target, "cpu"), options, stats=record)
    stats.merge(record.kernels)
    return executable, time.perf_counter() - start


def _time(executable, images, warmup: int):
    import numpy as np
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    main = vm["main"]
    tensors = [tvm.runtime.tensor(x) for x in images]
    for x in tensors[:warmup] or tensors[:1]:
        main(x)
    outputs, times = [], []
    for x in tensors:
        start = time.perf_counter()
        out = main(x)
        times.append(time.perf_counter() - start)
        outputs.append(out.numpy())
    return np.stack(outputs), np.array(times)


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def measure(model: str, n_images: int, warmup: int, target: dict) -> list[str]:
    import numpy as np

    from mutatenn import schedules
    from mutatenn.loading import load_program

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = load_program(model, "never", None)
    rng = np.random.default_rng(0)
    images = [rng.standard_normal(program.input.shape).astype("float32") for _ in range(n_images)]
    lines = [f"{model}  input {tuple(program.input.shape)}  load average before: {_load()}"]
    results = {}
    for label, schedule in (("untuned", False), ("default", True)):
        stats = schedules.ScheduleStats()
        executable, build_s = _build(program.mod, target, schedule, stats)
        outputs, times = _time(executable, images, warmup)
        results[label] = (outputs, times, build_s)
        extra = f"  [{stats.summary()}]" if schedule else ""
        lines.append(f"  {label:8s} build {build_s:6.1f} s   per image: median {np.median(times) * 1e3:9.2f} ms, "
                     f"min {times.min() * 1e3:9.2f} ms{extra}")
        print(lines[-1], flush=True)
    (plain, t_plain, _), (sched, t_sched, _) = results["untuned"], results["default"]
    rel = float(np.linalg.norm(plain - sched) / max(np.linalg.norm(plain), 1e-30))
    same_top1 = int((plain.argmax(-1) == sched.argmax(-1)).sum())
    lines.append(f"  speed-up (median untuned / median default): {np.median(t_plain) / np.median(t_sched):.1f}x   "
                 f"outputs: relative L2 {rel:.2e}, bit-identical {bool(np.array_equal(plain, sched))}, "
                 f"same top-1 {same_top1}/{len(images)}")
    lines.append(f"  load average after: {_load()}")
    print(lines[-2], flush=True)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="torchvision:mobilenet_v2,torchvision:resnet18")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="TVM_NUM_THREADS (0: TVM's default)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--append", action="store_true", help="add to --out instead of replacing it")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's thread pool starts
    sys.path.insert(0, str(ROOT))
    import tvm

    from mutatenn import schedules

    num_threads = tvm.get_global_func("runtime.NumThreads", allow_missing=True)
    threads = f"{num_threads()} (TVM's thread pool)" if num_threads else "unknown"
    mcpu = tvm.target.codegen.llvm_get_system_cpu()
    target = {"kind": "llvm", "mcpu": mcpu}
    header = [
        "Default CPU schedule (mutatenn.schedules) against the untuned build, same target",
        f"date {time.strftime('%Y-%m-%d %H:%M:%S')}, host {platform.node()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, tvm {tvm.__version__}",
        f"target {target}  vector width {schedules.vector_bits(target)} bits  "
        f"threads {threads}, TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', 'unset')}",
        f"{args.images} seeded random images per model, one at a time, after {args.warmup} warm-up runs; "
        "seeded (untrained) weights",
        "",
    ]
    print("\n".join(header), flush=True)
    body = []
    for model in args.models.split(","):
        body += measure(model.strip(), args.images, args.warmup, target) + [""]
    return write_result(Path(args.out), header + body, append=args.append)


if __name__ == "__main__":
    sys.exit(main())
