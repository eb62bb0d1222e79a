"""Fault injection for testing the engine itself; never part of a user's config.

Tests set the environment variable ``MUTATENN_TEST_FAULTS`` to a JSON object mapping a
fault kind to the mutant ids (``ID`` or ``ID@STACK``) whose builds get it. Worker
processes inherit the variable, so a real campaign run by a test sees real segfaults,
hangs and exceptions in real workers:

- ``segfault``, ``hang``, ``raise``: the job dies, sleeps forever, or raises;
- ``unstable``: every inference pass after the first gets perturbed outputs;
- ``slow``: every inference call of the build sleeps 50 ms first (a latency fault);
- ``flip_passes``: maps an id to the pass numbers (0 = the first) whose first image gets
  its logits negated (its top-1 label changes): a kill that comes and goes between passes.

An original program's build is named ``original`` or ``original@STACK``.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

ENV = "MUTATENN_TEST_FAULTS"
KINDS = ("segfault", "hang", "raise", "unstable", "slow", "flip_passes")
SLOW_S = 0.05


def _names(job) -> set[str]:
    """The ids a fault may name this job's build by."""
    pairs = job.pairs or (("original", job.stack),)
    return {n for mid, stack in pairs for n in (mid, f"{mid}@{stack}")}


def fault_for(job) -> str:
    """The fault kind this job gets ('' for none, the normal case); a ``flip_passes`` fault
    comes as ``flip_passes:0,2`` (the passes it flips)."""
    text = os.environ.get(ENV, "")
    if not text:
        return ""
    wanted = json.loads(text)
    names, kind = _names(job), ""
    for name in KINDS:
        hits = [n for n in wanted.get(name, ()) if n in names]
        if hits:
            kind = name if name != "flip_passes" else \
                "flip_passes:" + ",".join(str(p) for p in wanted[name][hits[0]])
    return kind


def inject_before_build(kind: str, key: str) -> None:
    """Stop the job the way ``kind`` says (segfault, hang, raise); other kinds do nothing here."""
    if kind == "segfault":
        sys.stderr.write(f"fault injection: segfault in job {key}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "hang":
        time.sleep(10 ** 6)
    if kind == "raise":
        raise RuntimeError(f"fault injection: exception in job {key}")


def slow_down(kind: str, runner) -> None:
    """A ``slow`` build: wrap the runner's inference so each call sleeps first."""
    if kind != "slow":
        return
    open_impl = runner.open_impl

    def slowed():
        infer = open_impl()

        def call(x):
            time.sleep(SLOW_S)
            return infer(x)
        return call
    runner.open_impl = slowed


def perturb_pass(kind: str, number: int, logits):
    """Inference pass ``number`` (0 = the first) as an unstable build would give it."""
    import numpy as np

    if kind.startswith("flip_passes:"):
        if str(number) not in kind.partition(":")[2].split(","):
            return logits
        logits = logits.copy()
        logits[0] = -logits[0]
        return logits
    if kind != "unstable" or number == 0:
        return logits
    logits = logits.copy()
    logits[0] = np.where(np.isfinite(logits[0]), logits[0] + number, float(number))
    return logits
