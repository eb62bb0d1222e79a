"""The Runner contract: every way of running a program (TVM, a framework's own runtime)
is one subclass that fills in two hooks.

The base class does the bookkeeping every runner needs and no runner should repeat:
checking the batch, warm-up calls, timing each image, shaping the logits, and turning a
framework's output into float32 (N, classes). A subclass implements

- ``prepare_impl()``: build or load once (a TVM build, an ONNX export, a session);
- ``open_impl()``: return ``infer(x) -> array`` for one pass over the images (TVM
  gives each pass a fresh VM, so repeated passes catch builds that read stale memory);

and may override ``parse`` (what follows ``NAME:`` in a variant), ``check_program``
(which programs it can run) and ``preflight`` (cheap checks before any work starts).
New runners are registered by name in `mutatenn.runners.RUNNERS`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import InputError, TargetError

WARMUP_CALLS = 2


@dataclass
class RunOutput:
    """Logits (N, classes) float32 and per-image latency in seconds (one image per call)."""

    logits: np.ndarray
    latencies: np.ndarray
    images_run: int | None = None  # None: every image; else the rows after it are NaN (stopped early)

    @property
    def latency_ms_median(self) -> float:
        return float(np.median(self.latencies) * 1e3)


@dataclass(frozen=True)
class Variant:
    """One way of deploying a program: a runner name plus its options.

    ``text`` is what the user wrote (``tvm:cpu:O3``, ``torch``); ``kind`` is the runner's
    name in the table; ``target`` is set by runners that build (TVM); ``options`` holds
    every build option of the schema (`mutatenn.build.options`), each runner honouring
    the ones it takes. A job carries the Variant itself, so nothing is lost on the way.
    """

    text: str
    kind: str
    target: Any = None  # mutatenn.build.Target
    options: Any = None  # mutatenn.build.BuildOptions (the defaults when None is given)
    via: str = ""  # the import path (`mutatenn.frameworks.PATHS`); empty: the framework's default
    model: str = ""  # another file of the same model (another framework's release); empty: the compared model

    def __post_init__(self):
        if self.options is None:
            from ..build.options import BuildOptions

            object.__setattr__(self, "options", BuildOptions())

    @property
    def canonical(self) -> str:
        """The variant written out in full (every option not at its default): parsing it
        gives this variant again, so it names the build wherever a text is needed."""
        from ..build.options import options_text

        head = self.kind
        if self.target is not None:
            head += f":{self.target.name}:O{self.options.opt_level}"
        inside = options_text(self.options, {"via": self.via, "model": self.model})
        return f"{head}({inside})" if inside else head


def parse_options(text: str, rest: str, runner_cls) -> tuple[dict, dict]:
    """``(build option fields, program options)`` of a variant's ``(key=value, ...)``, each
    key an option of the schema that ``runner_cls`` takes; one TargetError line otherwise."""
    from ..build.options import OptionError, options_from_text

    if not (rest.startswith("(") and rest.endswith(")")):
        raise TargetError(f"variant {text!r}: expected NAME or NAME(key=value, ...)")
    try:
        return options_from_text(text, rest[1:-1], runner_cls)
    except OptionError as err:
        raise TargetError(str(err)) from None


def make_variant(text: str, runner_cls, fields: dict, program: dict, target=None) -> Variant:
    """The Variant for parsed options (one InputError line for options the schema refuses)."""
    from ..build.options import BuildOptions
    from ..compression import check_variant

    variant = Variant(text, runner_cls.name, target, BuildOptions(**fields), via=program.get("via", ""),
                      model=program.get("model", ""))
    check_variant(variant)
    return variant


class Runner:
    """Prepare a program once, then run image batches: logits and per-image latencies."""

    name = ""  # the variant prefix this runner answers to (its table key)
    syntax = ""  # the variant's form for help and errors, when it takes options
    builds = False  # True: prepare() compiles the program's Relax module (its time is the build time)
    # What the runner runs: the forms of `mutatenn.frameworks.FORMS` (a converted model,
    # chosen by the variant's via), or () for the source model itself, from `frameworks`.
    forms: tuple[str, ...] = ()
    frameworks: tuple[str, ...] = ()

    def __init__(self, variant: Variant, program, mod=None):
        """``mod`` replaces the program's IRModule (a mutant) for runners that build one."""
        self.variant = variant
        self.program = program
        self.mod = mod if mod is not None else getattr(program, "mod", None)
        self.prepare_s = 0.0
        self._prepared = False
        self.kernels = None  # what a later build may link against, after prepare() (builders only)
        self.images = None  # the run's preprocessed images: a quantisation's calibration set (`use_images`)
        self.threads = 0  # threads the runtime may use (`use_threads`); 0: the runtime's own choice

    # ------------------------------------------------------------ class-level hooks
    @classmethod
    def parse(cls, text: str, rest: str) -> Variant:
        """The variant for ``text`` (``rest`` is what follows ``NAME:``, or its ``(...)``);
        default: ``NAME``, ``NAME(model=FILE)`` or, for runners of converted forms, ``NAME(via=PATH)``."""
        if not rest:
            return Variant(text, cls.name)
        return make_variant(text, cls, *parse_options(text, rest, cls))

    @classmethod
    def resolve_via(cls, variant: Variant, framework: str) -> str:
        """The import path this runner takes for a model of ``framework`` ("" when it runs
        the source model itself); one clear InputError when it cannot run that model."""
        from ..frameworks import resolve_via
        from ..models.formats import framework_name

        if cls.forms:
            return resolve_via(framework, variant.via, cls.forms, variant.text)
        if cls.frameworks and framework not in cls.frameworks:
            wanted = " or ".join(framework_name(f) for f in cls.frameworks)
            raise InputError(f"variant {variant.text!r} needs a {wanted} model; this is a "
                             f"{framework_name(framework)} model")
        return ""

    @classmethod
    def check_program(cls, program) -> None:
        """Raise InputError when this runner cannot run ``program`` (default: any program)."""

    @classmethod
    def preflight(cls, variant: Variant) -> None:
        """Cheap checks in the coordinator before any work starts (a reachable address...)."""

    # ------------------------------------------------------------ the contract
    def prepare(self) -> float:
        """Build or load once; returns the seconds it took (0 when already prepared)."""
        if self._prepared:
            return 0.0
        self.check_program(self.program)
        start = time.perf_counter()
        self.prepare_impl()
        self.prepare_s = time.perf_counter() - start
        self._prepared = True
        return self.prepare_s

    def run(self, batch: np.ndarray, stop: Callable[[np.ndarray], bool] | None = None,
            calls: int = 1) -> RunOutput:
        """One pass over ``batch`` (N images, input layout): warm up, then time each image
        (one call per image: the latency is one image's inference, nothing else; with
        ``calls`` > 1 the median of that many calls, the output being the first call's).
        ``stop(logits so far)``, asked after each image, ends the pass early (fast kill)."""
        if len(batch) == 0:
            raise InputError("no images to run")
        self.prepare()
        infer = self.open_impl()
        for _ in range(WARMUP_CALLS):
            infer(batch[:1])
        outs, lat = [], np.full(len(batch), np.nan)
        for i in range(len(batch)):
            times = []
            for call in range(max(1, calls)):
                start = time.perf_counter()
                result = infer(batch[i : i + 1])
                times.append(time.perf_counter() - start)
                if call == 0:
                    out = result
            lat[i] = float(np.median(times))
            outs.append(np.asarray(out, dtype=np.float32).reshape(1, -1))
            if stop is not None and i + 1 < len(batch) and stop(np.concatenate(outs, axis=0)):
                logits = np.full((len(batch), outs[0].shape[1]), np.nan, dtype=np.float32)
                logits[: i + 1] = np.concatenate(outs, axis=0)
                return RunOutput(logits, lat, images_run=i + 1)
        return RunOutput(np.concatenate(outs, axis=0), lat)

    def use_images(self, batch: np.ndarray) -> None:
        """The images this runner will run (preprocessed): int8-static calibration draws from them."""
        self.images = batch

    def use_threads(self, threads: int) -> None:
        """Run on ``threads`` threads (TVM's pool, ONNX Runtime's intra-op threads,
        ``torch.set_num_threads``, the TFLite interpreter): latencies compare only at equal counts."""
        self.threads = int(threads)

    def artifact(self) -> dict:
        """What is deployed, after prepare(): ``size_bytes`` (the deployable file), and where
        known ``parameters`` / ``nonzeros`` (a sparse format's size; zeros do not shrink a file)."""
        return {}

    def share_kernels(self, kernels) -> None:
        """Build against an earlier build's ``kernels`` (a runner that builds nothing ignores them)."""

    def build_info(self) -> dict | None:
        """What the last build did, for the run folder's builds table (None: nothing built)."""
        return None

    # ------------------------------------------------------------ instance hooks
    def prepare_impl(self) -> None:
        """Build or load what ``open_impl`` needs (default: nothing)."""

    def open_impl(self) -> Callable[[np.ndarray], Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement open_impl")
