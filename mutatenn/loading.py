"""Loading models of every supported kind: a model reference becomes a `Source` (the model
as its framework holds it), and a `Program` (Relax IRModule + input spec) along one
import path (`mutatenn.frameworks.PATHS`).

Model references (`SOURCES`, tried in order): ``digits`` (bundled), ``torchvision:NAME``,
``keras:NAME``, ``*.pt2`` (a saved ``torch.export`` program), ``*.onnx``, ``*.keras`` /
``*.h5``, ``*.tflite``, a SavedModel folder, or an ``nn.Module`` through `program_from_torch`.
Framework imports stay inside the loaders: importing TensorFlow before torchvision in one
process segfaults, so each framework is imported only by the path that needs it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Callable

from .errors import ModelError
from .frameworks import Source, convert, import_form, resolve_via
from .frameworks.pytorch import SEED, TORCHVISION_MODELS, source_from_module, torchvision_weights_file
from .frameworks.relax_import import output_classes
from .frameworks.tensorflow import KERAS_MODELS
from .program import Program

__all__ = ["preprocessing_text", "PRETRAINED_CHOICES", "TORCHVISION_MODELS", "KERAS_MODELS", "SEED", "UntrainedWeightsWarning",
           "load_source", "load_program", "program_from_torch", "program_from_source", "torchvision_weights_file"]
PRETRAINED_CHOICES = ("auto", "require", "never")


class UntrainedWeightsWarning(UserWarning):
    """Pretrained weights were not in the local cache; seeded weights are used instead."""


@dataclass(frozen=True)
class SourceKind:
    """One kind of model reference: how it is recognised and which loader reads it."""

    name: str
    matches: Callable[[str], bool]
    loader: str  # "module:function(spec, pretrained) -> Source"
    is_file: bool = True  # a path that must exist (a folder for SavedModels)
    family: str = ""  # "tensorflow": loaded only in worker processes (never beside torchvision)
    framework: str = "torch"  # the framework of its models (`frameworks.FRAMEWORK_NAMES`)


def _suffix(*suffixes: str) -> Callable[[str], bool]:
    return lambda spec: Path(spec).suffix.lower() in suffixes


def _saved_model(spec: str) -> bool:
    return Path(spec).is_dir() and (Path(spec) / "saved_model.pb").is_file()


SOURCES = (
    SourceKind("digits", lambda s: s in ("digits", "bundled:digits"), "mutatenn.frameworks.pytorch:load_digits", False),
    SourceKind("torchvision", lambda s: s.startswith("torchvision:"),
               "mutatenn.frameworks.pytorch:load_torchvision", False),
    SourceKind("keras", lambda s: s.startswith("keras:"),
               "mutatenn.frameworks.tensorflow:load_keras_application", False, "tensorflow", "keras"),
    SourceKind("pt2", _suffix(".pt2"), "mutatenn.frameworks.pytorch:load_pt2"),
    SourceKind("onnx", _suffix(".onnx"), "mutatenn.frameworks.onnx_file:load_onnx", framework="onnx"),
    SourceKind("keras file", _suffix(".keras", ".h5"), "mutatenn.frameworks.tensorflow:load_keras_file",
               family="tensorflow", framework="keras"),
    SourceKind("tflite", _suffix(".tflite"), "mutatenn.frameworks.tensorflow:load_tflite", family="tensorflow",
               framework="tflite"),
    SourceKind("savedmodel", _saved_model, "mutatenn.frameworks.tensorflow:load_saved_model", family="tensorflow",
               framework="savedmodel"),
)
MODEL_FORMS = ("digits", "torchvision:NAME", "keras:NAME", "a .pt2, .onnx, .keras, .h5 or .tflite file",
               "a SavedModel folder")


def source_kind(spec: str) -> SourceKind:
    """The kind of a model reference, or one line saying what would have been accepted."""
    for kind in SOURCES:
        if kind.matches(spec):
            return kind
    if Path(spec).is_dir():
        raise ModelError(f"model folder {spec!r} is not a SavedModel (no saved_model.pb in it)")
    raise ModelError(f"model {spec!r} is not a known model: give {', '.join(MODEL_FORMS)}")


def load_source(spec: str, pretrained: str = "auto", preset: str | None = None) -> Source:
    """The model named by ``spec`` as its framework holds it. Never downloads anything."""
    if pretrained not in PRETRAINED_CHOICES:
        raise ModelError(f"--pretrained must be one of {', '.join(PRETRAINED_CHOICES)}, not {pretrained!r}")
    kind = source_kind(spec)
    if kind.is_file:
        _check_path(Path(spec), kind.name == "savedmodel")
    module, _, func = kind.loader.partition(":")
    source = getattr(import_module(module), func)(spec, pretrained)
    if preset:
        from .images import PRESETS

        if preset not in PRESETS:
            raise ModelError(f"unknown preprocessing preset {preset!r} (known: {', '.join(PRESETS)})")
        source.preset = preset
    else:
        _fit_default_preset(source)
    return source


def _fit_default_preset(source: Source) -> None:
    """A model file's default preset (imagenet) that does not fit its input (an 8x8x1
    digit model) becomes ``raw``, a resize to the input's size, and a note says so; a
    preset the user named is kept as named."""
    from .images import FALLBACK_PRESET, preset_misfit

    if len(source.input.shape) != 4:
        return
    misfit = preset_misfit(source.preset, source.input.shape, source.input.layout)
    if misfit:
        source.preset_note = f"chosen, not {source.preset}: {misfit}; --preset or [model] preset chooses"
        source.preset = FALLBACK_PRESET


def preprocessing_text(source: Source) -> str:
    """What every command prints first and every report's overview shows: the preset, what
    it does, the input it feeds, and why it was chosen when MutateNN chose it."""
    from .images import preprocessing_line

    line = preprocessing_line(source.preset, source.input.shape, source.input.layout)
    return f"{line} ({source.preset_note})" if source.preset_note else line


def source_framework(spec: str) -> str:
    """The framework of a model reference's models, known before loading it ("" when unknown)."""
    try:
        return source_kind(spec).framework
    except ModelError:
        return ""


def source_family(spec: str) -> str:
    """The framework family a model reference's processes import ("" when unknown or not TensorFlow)."""
    try:
        return source_kind(spec).family
    except ModelError:
        return ""


def load_source_isolated(spec: str, pretrained: str = "auto", preset: str | None = None,
                         vias: tuple[str, ...] = ()) -> tuple[Source, dict[str, str]]:
    """`load_source` for a coordinator that must stay free of TensorFlow (it may import
    torchvision later): a TensorFlow model is loaded and converted along ``vias`` in a
    worker process, and comes back without its native object but with those forms, which
    TVM's ONNX and TFLite frontends import without TensorFlow. Returns (source, via -> why
    its conversion failed); other models load here, as `load_source` does."""
    if source_family(spec) != "tensorflow":
        return load_source(spec, pretrained, preset), {}
    from .isolation import DONE, run_isolated

    outcome = next(run_isolated(_source_job, [(spec, pretrained, preset, tuple(vias))], family="tensorflow"))
    if outcome.status != DONE:
        raise ModelError(f"load (TensorFlow) failed for {spec!r}: the worker process {outcome.status}: {outcome.reason}")
    error, source, failed = outcome.value
    if error:
        raise ModelError(error)
    for note in source.notes:
        if "pretrained weights not found" in note:
            warnings.warn(note, UntrainedWeightsWarning, stacklevel=2)
    return source, failed


def _source_job(spec: str, pretrained: str, preset: str | None, vias: tuple[str, ...]):
    """Worker side of `load_source_isolated`: (error line, picklable source, failed conversions)."""
    import dataclasses

    from .errors import InputError
    from .execute import cached_source

    try:
        source = cached_source(spec, pretrained, preset)
    except InputError as err:
        return str(err), None, {}
    failed = {}
    for via in vias:
        try:
            convert(source, resolve_via(source.framework, via))
        except InputError as err:
            failed[via] = str(err)
    return "", dataclasses.replace(source, native=None, exported=None, forms=dict(source.forms)), failed


def load_program(spec: str, pretrained: str = "auto", preset: str | None = None, via: str = "",
                 relax: bool = True) -> Program:
    """The model imported into Relax along ``via`` (empty: the framework's default path).
    ``relax=False`` converts but does not import (native runners need only the form)."""
    return program_from_source(load_source(spec, pretrained, preset), via, relax)


def program_from_source(source: Source, via: str = "", relax: bool = True) -> Program:
    """A source along one import path: converted, then (``relax``) imported into Relax.
    ``via=""`` with ``relax=False`` is the source as it is (for runners of the framework itself)."""
    if not via and not relax:
        return Program(name=source.name, spec=source.spec, mod=None, input=source.input, preset=source.preset,
                       labels=source.labels, framework=source.framework, native=source.native,
                       notes=list(source.notes), source=source)
    via = resolve_via(source.framework, via, who=f"model {source.spec!r}")
    form = convert(source, via)
    mod = import_form(form, source.spec, source.framework) if relax else None
    labels = source.labels
    classes = output_classes(mod) if mod is not None else 0
    if classes and classes != len(labels):
        labels = [str(i) for i in range(classes)]
    return Program(name=source.name, spec=source.spec, mod=mod, input=form.input, preset=source.preset,
                   labels=labels, framework=source.framework, native=source.native,
                   notes=list(source.notes) + form.notes, via=via, source=source, form=form)


def program_from_torch(model, input_shape: tuple[int, ...], name: str = "torch-model", spec: str = "",
                       preset: str = "imagenet", labels: list[str] | None = None) -> Program:
    """An ``nn.Module`` (evaluated in eval mode) exported with ``torch.export`` and imported."""
    source = source_from_module(model, input_shape, name, spec or f"module:{name}", preset, labels)
    return program_from_source(source)


def untrained(name: str, file: Path, pretrained: str, seed: int) -> str:
    """Pretrained weights absent from the local cache: refuse when demanded, else warn and
    say so (the note is kept with the results)."""
    if pretrained == "require":
        raise ModelError(f"pretrained weights for {name} are not in the local cache: expected {file} "
                         "(MutateNN never downloads; place the file there)")
    message = (f"{name}: pretrained weights not found at {file}; using seeded random weights "
               f"(seed {seed}). Label comparisons on untrained weights are weak evidence.")
    warnings.warn(message, UntrainedWeightsWarning, stacklevel=3)
    return message


def _check_path(path: Path, folder: bool) -> None:
    if not path.exists():
        raise ModelError(f"model {'folder' if folder else 'file'} {str(path)!r} does not exist")
    if not folder and not path.is_file():
        raise ModelError(f"model path {str(path)!r} is not a file")
