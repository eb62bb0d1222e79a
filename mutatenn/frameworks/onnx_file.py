"""ONNX files: loaded and checked as they are; their only path is the file itself."""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from ..program import InputSpec, guess_layout
from . import Form, Source, stage_message

DEFAULT_HW = 224


def load_onnx(spec: str, pretrained: str, trusted: bool = False) -> Source:
    import onnx

    path = Path(spec)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as err:
        raise ModelError(stage_message("load", "ONNX", spec, f"not a valid ONNX model: {err}".splitlines()[0])) from None
    return Source(spec, path.stem, "onnx", model, onnx_input(model, spec), "imagenet",
                  [str(i) for i in range(output_classes(model))], path=str(path))


def onnx_input(model, spec: str) -> InputSpec:
    """The one image input of an ONNX graph (symbolic sizes become batch 1 and 224x224);
    its layout is NHWC when the last dimension looks like channels and the second does not."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"ONNX model {spec!r} has {len(inputs)} inputs; MutateNN needs exactly one image input")
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelError(f"ONNX model {spec!r} input {inputs[0].name!r} has rank {len(dims)}; "
                         "MutateNN needs a 4-d image batch")
    layout = guess_layout(dims, "NCHW")
    if layout == "NCHW":
        shape = (1, dims[1] or 3, dims[2] or DEFAULT_HW, dims[3] or DEFAULT_HW)
    else:
        shape = (1, dims[1] or DEFAULT_HW, dims[2] or DEFAULT_HW, dims[3] or 3)
    return InputSpec(inputs[0].name, shape, "float32", layout)


def output_classes(model) -> int:
    """The class count of the first output (0 when the graph does not say)."""
    dims = model.graph.output[0].type.tensor_type.shape.dim
    return int(dims[-1].dim_value) if dims and dims[-1].HasField("dim_value") else 0


def as_onnx(source: Source) -> Form:
    return Form("onnx", "onnx", source.native, source.input)
