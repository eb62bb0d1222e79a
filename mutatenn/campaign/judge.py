"""Judging: a mutant's outputs against the original's on the same stack -> a VerdictRow.

This is the one place a verdict row of a built mutant is made; rows settled without
building (equivalent, non-viable) are made by `plan.make_plan`.
"""
from __future__ import annotations

import numpy as np

import operators

from ..records import Verdict, VerdictRow


def judge_failure(pair: tuple[str, str], artifact: dict) -> VerdictRow:
    """A mutant whose build or run crashed or timed out: that is its verdict."""
    mutant_id, stack = pair
    return VerdictRow(mutant_id, stack, Verdict(artifact["status"]), artifact["reason"] or "", artifact["key"],
                      build_s=artifact["build_s"], run_s=artifact["run_s"], log_tail=artifact["log_tail"] or "")


def judge_outputs(pair: tuple[str, str], artifact: dict, ref: dict, out: dict, criterion) -> VerdictRow:
    """Killed or survived by ``criterion`` over every catalogue metric; flipped images and
    stability come along so each row explains itself."""
    mutant_id, stack = pair
    run = artifact.get("images_run")
    if run is not None:  # fast kill: the images not run count as agreeing (the bound the worker stopped on)
        out = {"logits": np.concatenate([out["logits"][:run], ref["logits"][run:]]),
               "latencies": np.concatenate([out["latencies"][:run], ref["latencies"][run:]])}
    values = operators.compare_outputs(ref["logits"], out["logits"], ref["latencies"], out["latencies"])
    with np.errstate(all="ignore"):
        flipped = [int(i) for i in np.flatnonzero(operators.flipped_images(ref["logits"], out["logits"]))]
    killed = criterion.is_killed(values)
    reason = f"{criterion.metric} = {values[criterion.metric]:.6g} (killed when {criterion})" if killed else ""
    unstable = artifact.get("unstable_images")
    return VerdictRow(mutant_id, stack, Verdict.KILLED if killed else Verdict.SURVIVED, reason, artifact["key"],
                      values, len(flipped), tuple(flipped), artifact["build_s"], artifact["run_s"],
                      unstable=None if unstable is None else int(bool(unstable)),
                      unstable_images=None if unstable is None else tuple(unstable), images_run=run)
