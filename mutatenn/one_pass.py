"""One inference pass in a fresh process: ``python -m mutatenn.one_pass FOLDER N``.

A job with ``[run] repeat_in = "process"`` exports its build to FOLDER (``build.so``,
the input batch ``batch.npy``, and ``job.json`` naming the variant and its runner) and
starts this module once per extra pass. It loads the build without rebuilding anything,
runs the batch through the stack's own runner, and writes ``pass-N.npy``. A build that
reads memory it does not own may crash here; the job reports the exit as that pass's end.
This module sits outside `mutatenn.campaign`, whose import pulls in the whole engine.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


def main(folder: Path, number: int) -> None:
    # tvm_ffi imports PyTorch eagerly when it is installed (about 1.3 s of a 3 s start);
    # a pass runs a compiled build on NumPy arrays and needs no framework.
    sys.modules.setdefault("torch", None)
    import tvm

    from .runners import make_runner, parse_variant, with_host_cpu

    sys.stderr.write(f"pass {number + 1}: fresh process {os.getpid()}\n")
    info = json.loads((folder / "job.json").read_text())
    variant = with_host_cpu(parse_variant(info["variant"], info["runner"]), info["host_cpu"])
    runner = make_runner(variant, None, ref=info["runner"])
    runner.use_executable(tvm.runtime.load_module(str(folder / "build.so")))
    logits = runner.run(np.load(folder / "batch.npy")).logits
    tmp = folder / f".pass-{number}.npy"
    np.save(tmp, logits)
    tmp.replace(folder / f"pass-{number}.npy")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
