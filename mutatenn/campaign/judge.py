"""Judging: a mutant's outputs against the original's on the same stack -> a VerdictRow.

This is the one place a verdict row of a built mutant is made; rows settled without
building (equivalent, non-viable) are made by `plan.make_plan`.
"""
from __future__ import annotations

import numpy as np

import operators

from ..records import Verdict, VerdictRow


def accuracy_drop(ref_logits, out_logits, truth) -> float:
    """The original's top-1 accuracy minus the mutant's (NaN without labels)."""
    if truth is None:
        return float("nan")
    with np.errstate(all="ignore"):
        return float(operators.accuracy(ref_logits, truth) - operators.accuracy(out_logits, truth))


def judge_failure(pair: tuple[str, str], artifact: dict) -> VerdictRow:
    """A mutant whose build or run crashed or timed out: that is its verdict."""
    mutant_id, stack = pair
    return VerdictRow(mutant_id, stack, Verdict(artifact["status"]), artifact["reason"] or "", artifact["key"],
                      build_s=artifact["build_s"], run_s=artifact["run_s"], log_tail=artifact["log_tail"] or "")


def judge_outputs(pair: tuple[str, str], artifact: dict, ref: dict, out: dict, criterion, truth=None) -> VerdictRow:
    """Killed or survived by ``criterion`` over every catalogue metric plus the counts of
    `operators.criteria.COUNT_TERMS` (``truth``: the images' class indices, for accuracy);
    flipped images and stability come along so each row explains itself."""
    mutant_id, stack = pair
    run = artifact.get("images_run")
    if run is not None:  # fast kill: the images not run count as agreeing (the bound the worker stopped on)
        out = {"logits": np.concatenate([out["logits"][:run], ref["logits"][run:]]),
               "latencies": np.concatenate([out["latencies"][:run], ref["latencies"][run:]])}
    values = operators.compare_outputs(ref["logits"], out["logits"], ref["latencies"], out["latencies"])
    with np.errstate(all="ignore"):
        flipped = [int(i) for i in np.flatnonzero(operators.flipped_images(ref["logits"], out["logits"]))]
    judged = {**values, "flipped": len(flipped), "accuracy_drop": accuracy_drop(ref["logits"], out["logits"], truth)}
    killed = criterion.is_killed(judged)
    shown = ", ".join(f"{m} = {judged[m]:.6g}" for m in criterion.metrics)
    reason = f"{shown} (killed when {criterion})" if killed else ""
    unstable = artifact.get("unstable_images")
    return VerdictRow(mutant_id, stack, Verdict.KILLED if killed else Verdict.SURVIVED, reason, artifact["key"],
                      values, len(flipped), tuple(flipped), artifact["build_s"], artifact["run_s"],
                      unstable=None if unstable is None else int(bool(unstable)),
                      unstable_images=None if unstable is None else tuple(unstable), images_run=run)
