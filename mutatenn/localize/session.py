"""Opening the two sides of a localisation (two variants of one model, or a campaign's
original and mutant on one stack), choosing the images, and running the search."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .align import CONVERSION, SAME_PROGRAM, Pair, align, drop_background
from .capture import Tap, tap_class
from .divergence import DEFAULT_PER_ROUND, DEFAULT_TOLERANCE, Localizer, Search, measure
from .layers import LayerGraph

DEFAULT_MAX_IMAGES = 4


@dataclass
class Side:
    """One variant to localise: its variant text, the program, what its runner runs
    (``mod``: a Relax module, a mutant's or the program's own; an ONNX model; a torch
    module) and its layer records, read by the runner's tap (`capture.TAPS`)."""

    role: str  # "a" or "b"
    text: str  # what the user named (a variant, or "mutant ID on stack S")
    variant: object
    program: object
    mod: object = None  # None: what the tap takes from the program
    graph: LayerGraph = None

    def __post_init__(self):
        self.tap_type = tap_class(self.variant, self.role)
        if self.mod is None:
            self.mod = self.tap_type.model_of(self.program)
        if self.graph is None:
            self.graph = self.tap_type.layer_graph(self.program, self.mod)

    def tap(self, batch: np.ndarray) -> Tap:
        return self.tap_type(self.role, self.variant, self.program, self.mod, batch)


@dataclass
class Pairing:
    """Two sides of one model, the images both run and how their layers are paired."""

    model: str
    images_spec: str
    image_names: list[str]
    a: Side
    b: Side
    same_program: bool
    preferred_rows: list[int] = field(default_factory=list)  # images to localise on (a killed mutant's)
    what: str = ""  # in words: "two variants", "mutant X on stack S"
    campaign: dict = field(default_factory=dict)  # run folder, mutant id, stack (the RUN_DIR form)
    background: str = ""  # "a" or "b": the side with one class more, its column 0 a background class


@dataclass
class Localization:
    """The result: which images, which layer, the curve, the cost."""

    pairing: Pairing
    pairs: list[Pair]
    search: Search
    rows: list[int]
    disagreeing: int  # images whose top-1 labels differ
    tolerance: float
    per_round: int
    output_rel_l2: float
    builds: int
    build_s: float
    notes: list[str] = field(default_factory=list)
    reduced: object = None  # reduce.Reduction, when asked
    fault_report: object = None  # conversion.ConversionReport, when asked
    passes: object = None  # passes.PassBisection, with --passes
    taps: tuple = field(default=(), repr=False)
    outputs: tuple = field(default=(), repr=False)  # (A's, B's) outputs on every image

    @property
    def diverges(self) -> bool:
        return self.search.first is not None

    @property
    def image_names(self) -> list[str]:
        return [self.pairing.image_names[i] for i in self.rows]


# ---------------------------------------------------------------- opening the two sides
def open_variants(model: str, a_text: str, b_text: str, images_spec: str, pretrained: str = "auto",
                  preset: str | None = None, image: str | None = None, trusted: bool = False) -> Pairing:
    """Two TVM variants of one model (two stacks, two import paths, another release)."""
    from ..compare import variant_sources
    from ..execute import cached_images
    from ..loading import load_source_isolated, source_framework
    from ..runners import parse_variant, runner_class

    a_var, b_var = parse_variant(a_text), parse_variant(b_text)
    for side, v in (("a", a_var), ("b", b_var)):
        tap_class(v, side)
        runner_class(v.kind).preflight(v)
    if a_var.text == b_var.text:
        raise InputError(f"--a and --b name the same variant {a_text!r}")
    images = cached_images(images_spec)
    check_image(image, images_spec, list(images.names))
    framework = source_framework(model)
    vias = tuple(runner_class(v.kind).resolve_via(v, framework) for v in (a_var, b_var)) if framework else ()
    source, _ = load_source_isolated(model, pretrained, preset, vias=tuple(filter(None, vias)), trusted=trusted)
    sources = variant_sources(source, [a_var, b_var], pretrained, trusted)
    a, b = (Side(role, v.text, v, _program(sources[v.text], v)) for role, v in (("a", a_var), ("b", b_var)))
    background = _check_one_model(a, b)
    same = (a.program.spec == b.program.spec and a.program.via == b.program.via
            and a.variant.kind == b.variant.kind)
    return Pairing(source.spec, images_spec, list(images.names), a, b, same, what="two variants",
                   background=background)


def _program(source, variant):
    from ..loading import program_from_source
    from ..runners import runner_class

    cls = runner_class(variant.kind)
    return program_from_source(source, cls.resolve_via(variant, source.framework), relax=cls.builds)


def _check_one_model(a: Side, b: Side) -> str:
    """Two variants of one model take the same image and give the same classes, or one
    class more on one side (a background class at column 0, as TF-slim releases have:
    `compare.align_label_spaces` drops it the same way); returns that side ("" if none)."""
    ia, ib = a.program.input, b.program.input
    shape_a = (ia.channels, ia.height, ia.width)
    shape_b = (ib.channels, ib.height, ib.width)
    out_a, out_b = a.graph[a.graph.output].shape, b.graph[b.graph.output].shape
    extra = {out_a[-1] + 1: "b", out_b[-1] + 1: "a"}
    if shape_a == shape_b and out_a[-1] != out_b[-1] and max(out_a[-1], out_b[-1]) in extra:
        return extra[max(out_a[-1], out_b[-1])]
    if shape_a != shape_b or out_a[-1] != out_b[-1]:
        raise InputError(f"variants {a.text!r} and {b.text!r} are not of one model: A takes "
                         f"{'x'.join(map(str, shape_a))} images and gives {out_a[-1]} outputs, B takes "
                         f"{'x'.join(map(str, shape_b))} and gives {out_b[-1]}")
    return ""


JUDGED_ONLY = "localize compares the outputs of killed and survived mutants"


def open_mutant(run_dir: Path, mutant_id: str, stack: str | None, trusted: bool = False) -> Pairing:
    """A campaign's original (A) and mutant (B) on one stack, on the images that killed it
    (a survived mutant: every image; its outputs may still differ below the kill criterion).
    The model is trusted when the campaign's config trusted it, or ``trusted``."""
    from ..campaign.job import MutantMismatch, rebuild_mutant
    from ..execute import cached_images, cached_program
    from ..repro import open_case
    from ..runners import parse_variant

    try:
        case = open_case(Path(run_dir), mutant_id, stack, allow=("survived",))
    except InputError as err:  # repro's words for a mutant with nothing to compare
        raise InputError(str(err).split(": nothing to reproduce")[0] + (
            f": {JUDGED_ONLY}" if "nothing to reproduce" in str(err) else "")) from None
    if case.verdict["verdict"] not in ("killed", "survived"):
        raise InputError(f"mutant {mutant_id!r} is {case.verdict['verdict']} on stack {case.stack.name!r}: "
                         f"{JUDGED_ONLY}")
    config = case.config
    base = parse_variant(case.stack.variant_text)
    tap_class(base, "stack")
    program = cached_program(config.model, config.pretrained, config.preset, case.stack.via, True,
                             trusted or config.trusted)
    pass_mutant = bool(json.loads(case.mutant.get("build_options") or "{}"))  # changes the build only
    try:
        mod = None if pass_mutant else rebuild_mutant(program, case.mutant["operator"], int(case.mutant["site_index"]),
                                                    case.mutant["hash"])
    except MutantMismatch as err:
        raise InputError(f"{err}: the model is not the one the campaign ran") from None
    a = Side("a", f"original on {case.stack.name}", dataclasses.replace(base, options=case.stack.options),
             program, program.mod)
    b = Side("b", f"{mutant_id} on {case.stack.name}", dataclasses.replace(base, options=case.options),
             program, program.mod if mod is None else mod)
    names = list(cached_images(config.images).names)
    return Pairing(config.model, config.images, names, a, b, True, list(case.indices),
                   what=f"mutant {mutant_id} on stack {case.stack.name}",
                   campaign={"run_dir": str(run_dir), "mutant": mutant_id, "stack": case.stack.name,
                             "operator": case.mutant["operator"], "site": case.mutant.get("site", "")})


# ---------------------------------------------------------------- the search
def localize(pairing: Pairing, image: str | None = None, tolerance: float = DEFAULT_TOLERANCE,
             per_round: int = DEFAULT_PER_ROUND, max_images: int = DEFAULT_MAX_IMAGES,
             full_curve: bool = True) -> Localization:
    """Run both sides on every image, pick the images to localise on, and search."""
    from ..execute import cached_images, input_batch

    if tolerance <= 0:
        raise InputError("--tolerance must be a positive number")
    if per_round < 1 or max_images < 1:
        raise InputError("--per-round and --max-images must be at least 1")
    check_image(image, pairing.images_spec, pairing.image_names)
    images = cached_images(pairing.images_spec)
    taps = [s.tap(input_batch(s.program, images)) for s in (pairing.a, pairing.b)]
    out_a, out_b = (drop_background(pairing, role, t.run([])["__output__"].reshape(len(images), -1))
                    for role, t in zip("ab", taps))
    disagree = np.flatnonzero(out_a.argmax(axis=1) != out_b.argmax(axis=1))
    rows, notes = choose_rows(pairing, image, disagree, out_a, out_b, max_images)
    if pairing.background:
        side = getattr(pairing, pairing.background)
        notes.append(f"{side.text} gives one class more: its column 0 (a background class) is dropped before "
                     "its outputs are compared")
    pairs = align(pairing.a.graph, pairing.b.graph, pairing.same_program)
    output_rel = measure(out_a[rows], out_b[rows])[0]
    search = Localizer(taps[0], taps[1], pairs, rows, tolerance, per_round,
                       trim=lambda role, values: drop_background(pairing, role, values)).search(full_curve)
    if pairing.same_program:
        notes.append(f"layers paired by {SAME_PROGRAM} (one program)")
    else:
        notes.append(f"layers paired by {CONVERSION} (a conversion: ops fused or folded on one side only are "
                     "left unpaired, and the pairs just before them may differ by construction)")
    builds = sum(t.builds for t in taps)
    return Localization(pairing, pairs, search, rows, len(disagree), tolerance, per_round, output_rel, builds,
                        sum(t.build_s for t in taps), notes, taps=tuple(taps), outputs=(out_a, out_b))


def check_image(image: str | None, images_spec: str, names: list[str]) -> None:
    """``--image`` must name an image of the set."""
    if image is not None and image not in names:
        raise InputError(f"image {image!r} is not in image set {images_spec!r} "
                         f"({len(names)} images, e.g. {', '.join(names[:3])})")


def choose_rows(pairing: Pairing, image: str | None, disagree, out_a, out_b, max_images: int):
    """The images to localise on: the one named; else those where top-1 labels differ
    (a killed mutant's killing images first); else the one whose outputs differ most."""
    if image is not None:
        return [pairing.image_names.index(image)], [f"image {image} as asked"]
    preferred = [i for i in pairing.preferred_rows if i in set(disagree.tolist())]
    ordered = preferred + [int(i) for i in disagree if int(i) not in preferred]
    if ordered:
        rows = ordered[:max_images]
        return rows, [f"{len(disagree)} image(s) with different top-1 labels; localised on {len(rows)}"]
    per_image = [measure(out_a[i], out_b[i])[0] for i in range(len(out_a))]
    worst = int(np.argmax(per_image))
    return [worst], ["no image changes its top-1 label; localised on the image whose outputs differ most"]
