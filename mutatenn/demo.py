"""`mutatenn demo`: the bundled digits CNN, compared across deployment stacks."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from .compare import compare, format_table

DEMO_VARIANTS = "tvm:cpu:O0,tvm:cpu:O2,tvm:cpu-generic:O2,tvm:cpu:O3,onnxruntime"


def default_run_dir(prefix: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}-{stamp}"


def run_demo(out: Path | None, jobs: int) -> int:
    out = out or default_run_dir("demo")
    print("MutateNN demo: the bundled digits CNN on its 450 held-out digits,")
    print("deployed as PyTorch eager (baseline), TVM on several CPU stacks, and ONNX Runtime.\n")
    result = compare("digits", "digits", DEMO_VARIANTS, "torch", out, jobs=jobs)
    print(format_table(result.table))
    print(f"\noutputs: {out.resolve()}")
    print(f"report:  {(out / 'report.html').resolve()}")
    return 0
