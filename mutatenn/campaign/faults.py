"""Fault injection for testing the engine itself; never part of a user's config.

Tests set the environment variable ``MUTATENN_TEST_FAULTS`` to a JSON object mapping a
fault kind to the mutant ids (``ID`` or ``ID@STACK``) whose builds get it. Worker
processes inherit the variable, so a real campaign run by a test sees real segfaults,
hangs and exceptions in real workers:

- ``segfault``, ``hang``, ``raise``: the job dies, sleeps forever, or raises;
- ``unstable``: every inference pass after the first gets perturbed outputs.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

ENV = "MUTATENN_TEST_FAULTS"
KINDS = ("segfault", "hang", "raise", "unstable")


def fault_for(job) -> str:
    """The fault kind this job gets ('' for none, the normal case)."""
    text = os.environ.get(ENV, "")
    if not text:
        return ""
    wanted = json.loads(text)
    kind = ""
    for name in KINDS:
        ids = set(wanted.get(name, ()))
        if any(mid in ids or f"{mid}@{stack}" in ids for mid, stack in job.pairs):
            kind = name
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


def perturb_pass(kind: str, number: int, logits):
    """Inference pass ``number`` (1 = the second) as an unstable build would give it."""
    if kind != "unstable":
        return logits
    import numpy as np

    logits = logits.copy()
    logits[0] = np.where(np.isfinite(logits[0]), logits[0] + number, float(number))
    return logits
