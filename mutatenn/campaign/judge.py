"""Judging: a mutant's outputs against the original's on the same stack -> a VerdictRow.

This is the one place a verdict row of a built mutant is made (a bounds-checked rebuild
of an unstable one too: `judge_rejudged`); rows settled without building (equivalent,
non-viable) are made by `plan.make_plan`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

import operators
from runfolder.verdicts import CHECKED

from ..errors import CampaignError
from ..records import JobStatus, Verdict, VerdictRow


def judge_failure(pair: tuple[str, str], artifact: dict) -> VerdictRow:
    """A mutant whose build failed (build_error), whose run crashed, failed a bounds check
    (memory_error) or a poison check (uninitialized_read), or timed out: that is its
    verdict. MutateNN's own failure in the job (internal_error) is no verdict: the
    campaign stops, naming the job."""
    mutant_id, stack = pair
    if artifact["status"] == JobStatus.INTERNAL_ERROR.value:
        raise CampaignError(f"internal error in job {artifact['key']} ({mutant_id} on stack {stack!r}): "
                            f"{artifact['reason']}")
    return VerdictRow(mutant_id, stack, Verdict(artifact["status"]), artifact["reason"] or "", artifact["key"],
                      build_s=artifact["build_s"], run_s=artifact["run_s"], log_tail=artifact["log_tail"] or "")


# How a verdict row says it was judged again by its bounds-checked rebuild ([run] rejudge_unstable).
REJUDGED = "bounds-checked rebuild"


def is_rejudged(row: VerdictRow) -> bool:
    return REJUDGED in (row.reason or "")


def judge_rejudged(row: VerdictRow, artifact: dict) -> VerdictRow:
    """An unstable pair's verdict after its rebuild with bounds checks: the verdict of the
    check that fired (`runfolder.verdicts.CHECKED`: ``memory_error``, ``uninitialized_read``;
    the reason keeps the first verdict and its reason); otherwise the
    first verdict stays and the reason says what the checked build did. The row keeps the
    first run's comparison values, flips and stability flag (what made it suspect)."""
    first = f"first verdict {row.verdict.value}" + (f": {row.reason}" if row.reason else "")
    status = artifact["status"]
    if status == JobStatus.INTERNAL_ERROR.value:
        judge_failure((row.mutant_id, row.stack), artifact)  # raises
    if status in CHECKED:
        return dataclasses.replace(row, verdict=Verdict(status),
                                   reason=f"{artifact['reason']} ({REJUDGED}; {first})",
                                   log_tail=artifact.get("log_tail") or "")
    if status == JobStatus.DONE.value:
        again = artifact.get("unstable_images")
        note = "no access outside its buffers"
        if again is not None:
            note += "; outputs still unstable" if again else "; outputs stable"
    else:
        note = f"{status}: {artifact['reason']}"
    reason = f"{row.reason}; " if row.reason else ""
    return dataclasses.replace(row, reason=f"{reason}{REJUDGED}: {note}")


def judged_values(ref: dict, out: dict, criterion, truth=None) -> dict:
    """Every catalogue metric of ``out`` against ``ref`` (``logits``/``latencies``), the
    criterion's parameterised terms (``rbo(depth=20)``), the counts of
    `operators.criteria.COUNT_TERMS` and ``flipped_images`` (the indices)."""
    from operators.criteria import count_values, term_values

    values = operators.compare_outputs(ref["logits"], out["logits"], ref["latencies"], out["latencies"])
    with np.errstate(all="ignore"):
        values.update(term_values(criterion, ref, out))
        flipped = [int(i) for i in np.flatnonzero(operators.flipped_images(ref["logits"], out["logits"]))]
    counts = count_values(ref["logits"], out["logits"], truth)
    counts["flipped"] = len(flipped)  # an integer in the tables
    return {**values, **counts, "flipped_images": flipped}


def judge_outputs(pair: tuple[str, str], artifact: dict, ref: dict, out: dict, criterion, truth=None,
                  passes=None) -> VerdictRow:
    """Killed or survived by ``criterion`` over every catalogue metric plus the counts of
    `operators.criteria.COUNT_TERMS` (``truth``: the images' class indices, for accuracy);
    flipped images and stability come along so each row explains itself. With stored
    passes (``passes``: `repeats.PassSettings` of a verdict other than the first pass's),
    the verdict is taken over every pass (`repeats.judge_passes`); the values shown stay
    the first pass's."""
    mutant_id, stack = pair
    run = artifact.get("images_run")
    if run is not None:  # fast kill: the images not run count as agreeing (the bound the worker stopped on)
        out = {"logits": np.concatenate([out["logits"][:run], ref["logits"][run:]]),
               "latencies": np.concatenate([out["latencies"][:run], ref["latencies"][run:]])}
    judged = judged_values(ref, out, criterion, truth)
    flipped = judged.pop("flipped_images")
    killed = criterion.is_killed(judged)
    shown = ", ".join(f"{m} = {judged[m]:.6g}" for m in criterion.metrics)
    reason = f"{shown} (killed when {criterion})" if killed else ""
    passes_killed = None
    over = _over_passes(ref, out, criterion, truth, passes, judged)
    if over is not None:
        killed, passes_killed = over.killed, over.passes_killed
        reason = f"{shown} in the first pass; {over.note}; killed when {criterion}"
    unstable = artifact.get("unstable_images")
    from operators.criteria import COUNT_TERMS

    # The catalogue's columns, and the count terms the criterion read (`tables.count_columns`).
    values = {k: v for k, v in judged.items() if k in operators.CATALOGUE
              or (k in COUNT_TERMS and k != "flipped" and k in criterion.metrics)}
    triage = None
    if not killed:
        triage, text = survivor_triage(ref["logits"], out["logits"])
        reason = f"{text}; {reason}" if reason else text
    return VerdictRow(mutant_id, stack, Verdict.KILLED if killed else Verdict.SURVIVED, reason, artifact["key"],
                      values, len(flipped), tuple(flipped), artifact["build_s"], artifact["run_s"],
                      unstable=None if unstable is None else int(bool(unstable)),
                      unstable_images=None if unstable is None else tuple(unstable), images_run=run,
                      passes_killed=passes_killed, triage=triage)


def survivor_triage(ref_logits, out_logits) -> tuple[str, str]:
    """A survivor's kind and why: ``no_effect`` when its outputs are the original's bit for
    bit on every image, else ``weak`` with the largest absolute output difference reached
    (and where), the survivor most worth a few more images having the largest."""
    ref = np.ascontiguousarray(ref_logits, dtype=np.float32)
    out = np.ascontiguousarray(out_logits, dtype=np.float32)
    same = (ref.view(np.uint32) == out.view(np.uint32)).all(axis=1)
    if same.all():
        return "no_effect", f"no effect: outputs bit-identical to the original's on all {len(same)} images"
    with np.errstate(all="ignore"):
        per_image = np.nanmax(np.where(np.isnan(ref) & np.isnan(out), 0.0, np.abs(ref - out)), axis=1)
    worst = int(np.nanargmax(np.where(np.isnan(per_image), np.inf, per_image)))
    return "weak", (f"weak: outputs changed on {int((~same).sum())} of {len(same)} images, below the kill "
                    f"criterion; largest max_abs_error {per_image[worst]:.6g} (image #{worst})")


def _over_passes(ref: dict, out: dict, criterion, truth, passes, first: dict):
    """The verdict over every pass (`repeats.judge_passes`), or None for a first-pass
    verdict or outputs stored without their passes. Each mutant pass is judged against
    the original's first pass; the original's own passes against it are its noise."""
    if passes is None or passes.method == "first" or "passes" not in out or "passes" not in ref:
        return None
    from .repeats import judge_passes

    def against_first(logits):
        values = judged_values(ref, {"logits": logits, "latencies": ref["latencies"]}, criterion, truth)
        values.pop("flipped_images")
        return values

    mutant = [first] + [against_first(p) for p in out["passes"]]
    original = [against_first(p) for p in ref["passes"]]
    return judge_passes(criterion, mutant, original, passes)
