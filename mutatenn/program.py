"""The program: a Relax IRModule plus what is needed to feed it and read its output."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputSpec:
    """The single image input of a program: name, shape (batch first), dtype, layout."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "NCHW"

    @property
    def channels(self) -> int:
        return self.shape[1] if self.layout == "NCHW" else self.shape[-1]

    @property
    def height(self) -> int:
        return self.shape[2] if self.layout == "NCHW" else self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[3] if self.layout == "NCHW" else self.shape[2]


def guess_layout(shape, default: str) -> str:
    """NCHW or NHWC for a 4-d image input: the side whose size looks like channels (1 or 3)
    when only one does, else the framework's ``default`` (0 = an unknown size)."""
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if first != last:
        return "NCHW" if first else "NHWC"
    return default


@dataclass
class Program:
    """A model imported into TVM Relax along one import path.

    ``spec`` is the model reference the user gave (``digits``, ``torchvision:resnet18``,
    a file path) and ``via`` the import path (`mutatenn.frameworks.PATHS`): worker
    processes rebuild the program from both, because IRModules that hold constants
    cannot be serialised in TVM 0.27 (pickling segfaults).
    ``framework`` names the framework the model came from (``torch``, ``keras``, ``onnx``,
    ...); ``native`` holds the framework's own model object; ``source`` and ``form`` are the
    `mutatenn.frameworks` records the program was made from (the form is what native
    runtimes such as ONNX Runtime and the TFLite interpreter run). ``mod`` is None when the
    program was loaded for a native runner only.
    """

    name: str
    spec: str
    mod: Any  # tvm.IRModule, or None (not imported)
    input: InputSpec
    preset: str
    labels: list[str]
    framework: str
    native: Any = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    via: str = ""
    source: Any = field(default=None, repr=False)  # mutatenn.frameworks.Source
    form: Any = field(default=None, repr=False)  # mutatenn.frameworks.Form
