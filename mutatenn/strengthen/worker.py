"""The worker side of `mutatenn strengthen`: build the stack's original and one survived
mutant, then search new images from the mutant's seed images (`search.search_seed`).

One mutant is one job in a worker process (`isolation.run_isolated`), so a mutant that
segfaults or hangs during the search is that mutant's line in the table, not the end of
the command. The original's build is kept per worker process and reused by its next jobs.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass

import numpy as np

from .search import SearchSettings, search_seed


@dataclass(frozen=True)
class SearchTask:
    """What one job needs, as plain values (IRModules do not pickle)."""

    model: str
    pretrained: str
    preset: str | None
    images: str
    via: str
    variant: str  # the stack's variant text
    options: object  # the stack's BuildOptions (the original's build)
    mutant_options: object  # the mutant's BuildOptions (a pass mutant's own)
    operator: str  # empty for a pass mutant (the program's own module, built with its options)
    site: int
    mutant_hash: str
    mutant_id: str
    stack: str
    seeds: tuple[tuple[int, int], ...]  # (image index, the original's label there), most promising first
    seed_count: int  # how many of them to search from (the first whose label is the ground truth)
    settings: SearchSettings
    rng_seed: int
    log_path: str


def search_job(task: SearchTask) -> dict:
    """Worker entry point: a build or search failure becomes this mutant's status."""
    from ..campaign.job import run_logged

    return run_logged(_search, task, task.log_path)


def _search(task: SearchTask, stage: list) -> dict:
    from types import SimpleNamespace

    from ..campaign import faults
    from ..execute import cached_images, cached_program

    started = time.perf_counter()
    fault = faults.fault_for(SimpleNamespace(pairs=((task.mutant_id, task.stack),)))
    stage[0] = "run"
    faults.inject_before_build(fault, task.mutant_id)
    stage[0] = "setup"
    program = cached_program(task.model, task.pretrained, task.preset, task.via, True)
    images = cached_images(task.images)
    original = _original_infer(task.model, task.pretrained, task.preset, task.via, task.variant, task.options)
    stage[0] = "build"
    mutant = _mutant_infer(task, program)
    stage[0] = "run"
    classify = _classifier(program, original, mutant)
    rng = np.random.default_rng([task.rng_seed, _stable_int(task.mutant_id)])
    seeds = _labelled_correctly(task.seeds, images, program.labels)[:task.seed_count]
    if not seeds:
        return {"status": "no_seed", "queries": 0, "seconds": time.perf_counter() - started, "tried": [],
                "reason": "no image of the set that the original labels correctly and the mutant alike"}
    left, queries, tried = task.settings.budget, 0, []
    for index, label in seeds:
        if left < 1:
            break
        share = max(1, left // (len(seeds) - len(tried)))  # unspent queries pass to the next seeds
        outcome = search_seed(images.images[index], label, classify, task.settings, share, rng)
        tried.append(images.names[index])
        queries += outcome.queries
        left -= outcome.queries
        if outcome.image is not None:
            return {"status": "killed", "queries": queries, "seed": images.names[index], "seed_index": index,
                    "image": outcome.image, "original_label": program.labels[outcome.original_label],
                    "mutant_label": program.labels[outcome.mutant_label], "params": outcome.params,
                    "seconds": time.perf_counter() - started, "tried": tried}
    return {"status": "not_found", "queries": queries, "seconds": time.perf_counter() - started, "tried": tried,
            "reason": f"no image found in {queries} queries from {len(tried)} seed image(s)"}


def _labelled_correctly(seeds, images, labels) -> list[tuple[int, int]]:
    """The seeds whose original label is the image's ground truth (all of them when the
    set is unlabelled): a new image must be one the deployed model gets right."""
    from ..compare import label_indices

    truth = label_indices(images, list(labels))
    return [(i, c) for i, c in seeds if truth is None or int(truth[i]) == c]


def _stable_int(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=2)
def _original_build(model: str, pretrained: str, preset: str | None, via: str, variant: str, options):
    """The stack's original, built once per worker process: (runner, its inference)."""
    from ..execute import cached_program
    from ..runners import make_runner, parse_variant

    program = cached_program(model, pretrained, preset, via, True)
    runner = make_runner(dataclasses.replace(parse_variant(variant), options=options), program)
    runner.prepare()
    return runner, runner.open_impl()


def _original_infer(model, pretrained, preset, via, variant, options):
    return _original_build(model, pretrained, preset, via, variant, options)[1]


def _mutant_infer(task: SearchTask, program):
    """The mutant's build (linking the original's kernels it did not change) and inference."""
    from ..campaign.job import rebuild_mutant
    from ..runners import make_runner, parse_variant

    mod = rebuild_mutant(program, task.operator, task.site, task.mutant_hash)
    variant = dataclasses.replace(parse_variant(task.variant), options=task.mutant_options)
    runner = make_runner(variant, program, mod=mod)
    if mod is not None:
        base = _original_build(task.model, task.pretrained, task.preset, task.via, task.variant, task.options)[0]
        runner.share_kernels(base.kernels)
    runner.prepare()
    return runner.open_impl()


def _classifier(program, original, mutant):
    """uint8 image -> (original logits, mutant logits), through the program's own
    preprocessing (what `--images DIR` does with the image written as a PNG)."""
    from ..execute import input_batch
    from ..images import ImageSet

    def classify(image: np.ndarray):
        batch = input_batch(program, ImageSet("query", ["query"], [image], [None]))
        return (np.asarray(original(batch), dtype=np.float32).reshape(-1),
                np.asarray(mutant(batch), dtype=np.float32).reshape(-1))
    return classify
