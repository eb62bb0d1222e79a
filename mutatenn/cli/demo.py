"""`mutatenn demo`: a mutation campaign on the bundled digits CNN across three CPU stacks."""
from __future__ import annotations

import time

from .run import finish

# One sampled site per operator keeps the demo to a few minutes on two cores while
# touching every level: graph rewrites, weight perturbations, TensorIR edits, pass options.
DEMO_CONFIG = {
    "model": {"spec": "digits"},
    "images": {"spec": "digits:150"},
    "mutants": {"levels": ["graph", "weight", "tir", "pass"], "select": {"sample": 1, "seed": 2024}},
    "stacks": [
        {"name": "cpu-O0", "target": "cpu", "opt_level": 0},
        {"name": "cpu-O2", "target": "cpu", "opt_level": 2},
        {"name": "generic-O3", "target": "cpu-generic", "opt_level": 3},
    ],
    "kill": {"criterion": "top1_agreement < 1.0"},
    # Two inference passes per build: mutants that read outside their buffers show up as unstable.
    # Written with the run: the mutation-testing report JSON and JUnit XML (`mutatenn export`).
    "run": {"timeout": 300, "per_image_cap": 20, "repeats": 2, "exports": ["mutation-testing-report", "junit"]},
}


def cmd_demo(args) -> int:
    from ..api import default_run_dir, run_campaign
    from ..config import parse_config

    out, jobs = args.out, args.jobs

    out = out or default_run_dir("demo")
    print("MutateNN demo: the bundled digits CNN (8x8 digits, 150 held-out images),")
    print("one sampled mutant per operator (graph, weight, TIR, pass), built for three CPU stacks")
    print("(host CPU at O0 and O2, generic x86-64 at O3); killed = a top-1 label changed;")
    print("each build runs twice: unstable = its outputs differ between the two runs.\n")
    config = parse_config(DEMO_CONFIG, source="mutatenn demo")
    start = time.perf_counter()
    result = run_campaign(config, out, jobs=jobs, quiet=False)
    code = finish(result, None)
    print(f"time:    {time.perf_counter() - start:.0f} s")
    return code
