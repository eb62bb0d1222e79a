"""The one table of model formats: how a model reference is recognised, which loader reads
it, which framework its models belong to, and which safety check runs before the loader.

Loading (`mutatenn.loading`), tuning's cache key (`mutatenn.tuning.model_key`), the CLI's
``--model`` help, config checks and the framework paths (`mutatenn.frameworks`) all read
these two tables; nothing else lists model formats. Adding a format = its loader (and its
check, for a file a user may have been sent) + one `FORMATS` line; a new framework also
takes one `FRAMEWORKS` line (and an import path in `mutatenn.frameworks.PATHS`).

This module imports nothing heavy: loaders and checks are ``"module:function"`` strings,
imported only when a model of that format is loaded (TensorFlow imported before
torchvision in one process segfaults).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from ..errors import ModelError


@dataclass(frozen=True)
class Framework:
    """A framework whose models MutateNN loads: its display name and its default import path."""

    key: str  # ``Source.framework``
    name: str  # in messages and reports
    default_via: str  # the import path taken when none is named (`mutatenn.frameworks.PATHS`)


FRAMEWORKS: dict[str, Framework] = {f.key: f for f in (
    Framework("torch", "PyTorch", "torch.export"),
    Framework("onnx", "ONNX", "onnx"),
    Framework("keras", "Keras", "tflite"),
    Framework("savedmodel", "TensorFlow SavedModel", "tflite"),
    Framework("tflite", "TFLite", "tflite"),
)}


@dataclass(frozen=True)
class ModelFormat:
    """One kind of model reference. Exactly one way of recognising it is set: ``names``
    (exact references), ``prefix`` (``torchvision:NAME``), ``suffixes`` (a file) or
    ``folder_file`` (a folder holding that file)."""

    name: str  # in messages ("PyTorch .pt2")
    framework: str  # a `FRAMEWORKS` key
    loader: str  # "module:function(spec, pretrained, trusted) -> Source"
    names: tuple[str, ...] = ()
    prefix: str = ""
    suffixes: tuple[str, ...] = ()
    folder_file: str = ""
    form: str = ""  # how the help names a name, prefix or folder form ("keras:NAME")
    known: str = ""  # "module:ATTR": the names a prefix form accepts (checked in configs before loading)
    # "module:function(path)": refuses a file that would run code or reach outside its folder
    # when loaded or run (`mutatenn.models.safety`); skipped when the user trusts the file.
    check: str = ""
    family: str = ""  # "tensorflow": loaded only in worker processes (never beside torchvision)
    check_family: str = ""  # the family the check itself imports (a coordinator runs it in a worker)

    @property
    def is_file(self) -> bool:
        """A path that must exist (a file, or a folder for ``folder_file`` formats)."""
        return bool(self.suffixes or self.folder_file)

    def matches(self, spec: str) -> bool:
        if self.names:
            return spec in self.names
        if self.prefix:
            return spec.startswith(self.prefix)
        if self.suffixes:
            return Path(spec).suffix.lower() in self.suffixes
        return Path(spec).is_dir() and (Path(spec) / self.folder_file).is_file()

    def known_names(self) -> tuple[str, ...] | None:
        """The names after ``prefix`` this form accepts (None: not listed)."""
        if not self.known:
            return None
        module, _, attr = self.known.partition(":")
        return tuple(getattr(import_module(module), attr))

    def model_file(self, spec: str) -> Path | None:
        """The file whose bytes are the model (a folder form's marker file); None for names."""
        if self.suffixes:
            return Path(spec)
        return Path(spec) / self.folder_file if self.folder_file else None


_PT = "mutatenn.frameworks.pytorch"
_TF = "mutatenn.frameworks.tensorflow"
_CHECK = "mutatenn.models.safety"

FORMATS: tuple[ModelFormat, ...] = (
    ModelFormat("bundled digits CNN", "torch", f"{_PT}:load_digits", names=("digits", "bundled:digits"),
                form="digits"),
    ModelFormat("torchvision", "torch", f"{_PT}:load_torchvision", prefix="torchvision:", form="torchvision:NAME",
                known=f"{_PT}:TORCHVISION_MODELS"),
    ModelFormat("Keras application", "keras", f"{_TF}:load_keras_application", prefix="keras:", form="keras:NAME",
                known=f"{_TF}:KERAS_MODELS", family="tensorflow"),
    ModelFormat("PyTorch .pt2", "torch", f"{_PT}:load_pt2", suffixes=(".pt2",), check=f"{_CHECK}:check_pt2"),
    ModelFormat("ONNX", "onnx", "mutatenn.frameworks.onnx_file:load_onnx", suffixes=(".onnx",),
                check=f"{_CHECK}:check_onnx"),
    ModelFormat("Keras file", "keras", f"{_TF}:load_keras_file", suffixes=(".keras", ".h5"),
                check=f"{_CHECK}:check_keras", family="tensorflow"),
    ModelFormat("TFLite", "tflite", f"{_TF}:load_tflite", suffixes=(".tflite",), check=f"{_CHECK}:check_tflite",
                family="tensorflow"),
    ModelFormat("TensorFlow SavedModel", "savedmodel", f"{_TF}:load_saved_model", folder_file="saved_model.pb",
                form="a SavedModel folder", check=f"{_CHECK}:check_saved_model", family="tensorflow",
                check_family="tensorflow"),
)


def model_format(spec: str) -> ModelFormat:
    """The format of a model reference, or one line saying what would have been accepted."""
    for fmt in FORMATS:
        if fmt.matches(spec):
            return fmt
    if Path(spec).is_dir():
        folders = [f"{f.form} (no {f.folder_file} in it)" for f in FORMATS if f.folder_file]
        raise ModelError(f"model folder {spec!r} is not {' nor '.join(folders)}")
    raise ModelError(f"model {spec!r} is not a known model: give {model_forms()}")


def named_format(spec: str) -> ModelFormat | None:
    """The format of a model given by name (``digits``, ``torchvision:NAME``), None for a
    path; decided from the text alone (a path's format depends on the file it names)."""
    return next((f for f in FORMATS if not f.is_file and f.matches(spec)), None)


def find_format(spec: str) -> ModelFormat | None:
    """`model_format`, or None for a reference of no known format."""
    try:
        return model_format(spec)
    except ModelError:
        return None


def model_forms() -> str:
    """Every accepted reference in words (the CLI help and the unknown-model error)."""
    suffixes = [s for f in FORMATS for s in f.suffixes]
    files = f"a {', '.join(suffixes[:-1])} or {suffixes[-1]} file" if len(suffixes) > 1 else f"a {suffixes[0]} file"
    named = [f.form for f in FORMATS if f.names or f.prefix]
    folders = [f.form for f in FORMATS if f.folder_file]
    return ", ".join([*named, files]) + "".join(f", or {form}" for form in folders)


def framework_name(key: str) -> str:
    """A framework's display name (the key itself when unknown)."""
    return FRAMEWORKS[key].name if key in FRAMEWORKS else key


def default_via(key: str) -> str:
    """The import path a framework's models take when none is named ("" when unknown)."""
    return FRAMEWORKS[key].default_via if key in FRAMEWORKS else ""
