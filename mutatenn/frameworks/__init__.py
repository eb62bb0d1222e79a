"""Framework paths: a model as its own framework holds it (a `Source`), the conversions
that turn it into another framework's file (a `Form`), and the import of a form into Relax.

One table, `PATHS`, is the single source of truth for how a model reaches TVM and the
native runtimes: each import path names the source frameworks it accepts, the form it
produces (``exported``: a torch.export program; ``onnx``; ``tflite``) and the function
that converts. ``via`` in a variant (``tvm:cpu(via=tflite)``, ``onnxruntime(via=tf2onnx)``)
or in a campaign (``[model] via``, a stack's ``via``) names a path. Adding a path = one
function + one line in `PATHS`.

Framework imports stay inside the functions each path names: TensorFlow imported before
torchvision in one process segfaults, so a process imports only what its path needs.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelError, first_line
from ..models.formats import default_via, framework_name
from ..program import InputSpec

FORMS = ("exported", "onnx", "tflite")


@dataclass
class Source:
    """A model as its framework holds it, before any conversion.

    ``framework`` is a key of `mutatenn.models.formats.FRAMEWORKS`; ``native``
    is the framework's object (an ``nn.Module``, a ``keras.Model``, a SavedModel's serving
    function, an ``onnx.ModelProto``, the ``.tflite`` bytes); ``input`` is the framework's
    own input (NCHW for PyTorch and ONNX files, NHWC for TensorFlow models).
    """

    spec: str
    name: str
    framework: str
    native: Any = field(repr=False)
    input: InputSpec
    preset: str
    labels: list[str]
    notes: list[str] = field(default_factory=list)
    exported: Any = field(default=None, repr=False)  # a saved torch.export program (.pt2)
    path: str = ""  # the file or folder the model came from, when there is one
    forms: dict = field(default_factory=dict, repr=False)  # via -> Form, filled by `convert`
    preset_note: str = ""  # why the preset differs from the loader's default, when it does

    @property
    def framework_name(self) -> str:
        return framework_name(self.framework)


@dataclass
class Form:
    """A source converted along one import path: what TVM imports and native runtimes run.
    ``payload`` is a ``torch.export.ExportedProgram``, an ``onnx.ModelProto`` or ``.tflite``
    bytes; ``input`` is this form's input (name, shape and layout may differ from the source's)."""

    via: str
    kind: str  # one of FORMS
    payload: Any = field(repr=False)
    input: InputSpec
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportPath:
    """One way from a source framework to a form TVM imports (and native runtimes run)."""

    name: str
    accepts: tuple[str, ...]  # source frameworks
    form: str  # one of FORMS
    convert: str  # "module:function" taking a Source, returning a Form
    summary: str


PATHS: dict[str, ImportPath] = {p.name: p for p in (
    ImportPath("torch.export", ("torch",), "exported", "mutatenn.frameworks.pytorch:to_exported",
               "torch.export, then TVM's PyTorch frontend"),
    ImportPath("torch.onnx", ("torch",), "onnx", "mutatenn.frameworks.pytorch:to_onnx",
               "torch.onnx.export (dynamo), then TVM's ONNX frontend"),
    ImportPath("onnx", ("onnx",), "onnx", "mutatenn.frameworks.onnx_file:as_onnx",
               "the ONNX file as it is, TVM's ONNX frontend"),
    ImportPath("tflite", ("keras", "savedmodel", "tflite"), "tflite", "mutatenn.frameworks.tensorflow:to_tflite",
               "tf.lite.TFLiteConverter (a .tflite file as it is), then TVM's TFLite frontend"),
    ImportPath("tf2onnx", ("keras", "savedmodel", "tflite"), "onnx", "mutatenn.frameworks.tensorflow:to_onnx",
               "tf2onnx (opset 17), then TVM's ONNX frontend"),
)}


def check_via_name(via: str, where: str) -> None:
    """Refuse an unknown path name before any model is loaded."""
    if via and via not in PATHS:
        raise InputError(f"{where}: unknown import path {via!r} (known: {', '.join(PATHS)})")


def resolve_via(source_framework: str, via: str, forms: tuple[str, ...] = FORMS, who: str = "tvm") -> str:
    """The path a runner takes for a source: ``via`` checked against the framework and the
    forms the runner runs, or the default for the framework when ``via`` is empty."""
    name = framework_name(source_framework)
    if via:
        check_via_name(via, f"variant {who!r}")
        path = PATHS[via]
        if source_framework not in path.accepts:
            accepted = ", ".join(framework_name(f) for f in path.accepts)
            raise InputError(f"{who}: import path {via!r} takes a {accepted} model, not a {name} model")
        if path.form not in forms:
            raise InputError(f"{who}: import path {via!r} gives a {path.form} model; {who} runs {'/'.join(forms)}")
        return via
    default = default_via(source_framework)  # `mutatenn.models.formats.FRAMEWORKS`
    if default and PATHS[default].form in forms:
        return default
    for path in PATHS.values():
        if source_framework in path.accepts and path.form in forms:
            return path.name
    raise InputError(f"{who} cannot run a {name} model")


def paths_for(source_framework: str) -> list[str]:
    """The import paths a framework's models can take."""
    return [p.name for p in PATHS.values() if source_framework in p.accepts]


def convert(source: Source, via: str) -> Form:
    """The source converted along ``via`` (memoised per source object: conversions of large
    models take seconds, and a worker converts each (model, path) once)."""
    if via not in source.forms:
        source.forms[via] = _convert(source, via)
    return source.forms[via]


def _convert(source: Source, via: str) -> Form:
    """One conversion; a failure is one line naming the stage and the framework."""
    path = PATHS[resolve_via(source.framework, via)]
    module, _, func = path.convert.partition(":")
    try:
        return getattr(import_module(module), func)(source)
    except ModelError as err:  # a converter's own line (an op TFLite lacks): point to the other paths
        raise ModelError(f"{err}{other_paths_hint(source.framework, via)}") from None
    except InputError:
        raise
    except Exception as err:  # converters fail in many ways; the user needs the first line
        raise ModelError(stage_message("convert", f"{source.framework_name} -> {path.form} via {via}",
                                       source.spec, err) + other_paths_hint(source.framework, via)) from None


def other_paths_hint(source_framework: str, via: str) -> str:
    """``; try via=tf2onnx``: the other import paths a model of this framework can take,
    appended to a failure on one path (empty when there is no other)."""
    others = [name for name in paths_for(source_framework) if name != via]
    return f"; try {' or '.join(f'via={name}' for name in others)}" if others else ""


def stage_message(stage: str, framework: str, spec: str, err: BaseException | str) -> str:
    """``convert (Keras -> onnx via tf2onnx) failed for 'M': Type: first line``: the one form
    of a failure on a framework path (stages: load, convert, import, build, run)."""
    detail = err if isinstance(err, str) else first_line(err, 300)
    return f"{stage} ({framework}) failed for {spec!r}: {detail}"


IMPORTERS = {
    "exported": "mutatenn.frameworks.relax_import:from_exported",
    "onnx": "mutatenn.frameworks.relax_import:from_onnx",
    "tflite": "mutatenn.frameworks.relax_import:from_tflite",
}


def import_form(form: Form, spec: str, source_framework: str = ""):
    """The form imported into a Relax IRModule whose ``main`` returns one tensor; a failure
    names the other paths ``source_framework``'s models can take."""
    module, _, func = IMPORTERS[form.kind].partition(":")
    try:
        return getattr(import_module(module), func)(form)
    except InputError:
        raise
    except Exception as err:  # an op the frontend lacks, a shape it cannot infer, ...
        raise ModelError(stage_message("import", f"TVM {form.kind} frontend, via {form.via}", spec, err)
                         + other_paths_hint(source_framework, form.via)) from None


class UntrainedWeightsWarning(UserWarning):
    """Pretrained weights were not in the local cache; seeded weights are used instead."""


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
