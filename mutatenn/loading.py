"""Loading models of every supported kind into one `Program` (Relax IRModule + input spec).

Model references: ``digits`` (bundled), ``torchvision:NAME``, ``*.onnx``, ``*.pt2``
(a saved ``torch.export`` program), or an ``nn.Module`` through `program_from_torch`.
Framework imports stay inside functions: importing TensorFlow before torchvision in one
process segfaults, so each framework is imported only by the path that needs it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from .errors import ModelError
from .program import InputSpec, Program

TORCHVISION_MODELS = (
    "mobilenet_v2", "resnet18", "resnet50", "resnet101", "densenet121", "inception_v3",
    "squeezenet1_1", "shufflenet_v2_x1_0", "alexnet", "efficientnet_b0",
)
PRETRAINED_CHOICES = ("auto", "require", "never")
SEED = 0


class UntrainedWeightsWarning(UserWarning):
    """Pretrained weights were not in the local cache; seeded weights are used instead."""


def load_program(spec: str, pretrained: str = "auto", preset: str | None = None) -> Program:
    """Import the model named by ``spec`` into Relax. Never downloads anything."""
    if pretrained not in PRETRAINED_CHOICES:
        raise ModelError(f"--pretrained must be one of {', '.join(PRETRAINED_CHOICES)}, not {pretrained!r}")
    if spec in ("digits", "bundled:digits"):
        program = load_digits()
    elif spec.startswith("torchvision:"):
        program = load_torchvision(spec.split(":", 1)[1], pretrained)
    else:
        path = Path(spec)
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            program = load_onnx(path)
        elif suffix == ".pt2":
            program = load_exported_program(path)
        elif suffix in (".keras", ".h5", ".tflite") or spec.startswith("keras:"):
            raise ModelError(f"model {spec!r}: Keras, TensorFlow and TFLite models are not supported yet")
        else:
            names = ", ".join(f"torchvision:{n}" for n in TORCHVISION_MODELS[:3])
            raise ModelError(
                f"model {spec!r} is not a known model: give 'digits', a .onnx or .pt2 file, or {names}, …"
            )
    if preset:
        from .images import PRESETS

        if preset not in PRESETS:
            raise ModelError(f"unknown preprocessing preset {preset!r} (known: {', '.join(PRESETS)})")
        program.preset = preset
    return program


def load_digits() -> Program:
    from .models import digits

    model = digits.load_trained()
    return program_from_torch(model, (1, 1, 8, 8), name="digits-cnn", spec="digits",
                              preset="raw", labels=list(digits.LABELS))


def program_from_torch(model, input_shape: tuple[int, ...], name: str = "torch-model", spec: str = "",
                       preset: str = "imagenet", labels: list[str] | None = None) -> Program:
    """An ``nn.Module`` (evaluated in eval mode) exported with ``torch.export`` and imported."""
    import torch

    model = model.eval()
    example = torch.zeros(input_shape, dtype=torch.float32)
    try:
        with torch.no_grad():
            exported = torch.export.export(model, (example,))
    except Exception as err:  # export failures name the torch-level problem
        raise ModelError(f"torch.export failed for {name}: {_first_line(err)}") from err
    program = program_from_exported(exported, name=name, spec=spec or f"module:{name}", preset=preset, labels=labels)
    program.native = model
    return program


def program_from_exported(exported, name: str, spec: str, preset: str = "imagenet",
                          labels: list[str] | None = None) -> Program:
    from tvm.relax.frontend.torch import from_exported_program

    placeholders = [s for s in exported.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(placeholders) != 1:
        raise ModelError(f"model {spec!r} takes {len(placeholders)} inputs; MutateNN needs exactly one image input")
    node = next(n for n in exported.graph.nodes if n.op == "placeholder" and n.name == placeholders[0].arg.name)
    meta = node.meta.get("val")
    shape = tuple(int(d) for d in meta.shape)
    if len(shape) != 4:
        raise ModelError(f"model {spec!r} input has shape {shape}; MutateNN needs a 4-d image batch (N, C, H, W)")
    try:
        mod = from_exported_program(exported, keep_params_as_input=False, unwrap_unit_return_tuple=True)
    except Exception as err:
        raise ModelError(f"TVM cannot import {spec!r}: {_first_line(err)}") from err
    mod = _single_output(mod, spec)
    num_classes = _output_classes(mod)
    return Program(name=name, spec=spec, mod=mod, input=InputSpec("input", shape, "float32", "NCHW"),
                   preset=preset, labels=labels or [str(i) for i in range(num_classes)], framework="torch")


def load_exported_program(path: Path) -> Program:
    import torch

    _check_file(path)
    try:
        exported = torch.export.load(str(path))
    except Exception as err:
        raise ModelError(f"cannot read exported program {str(path)!r}: {_first_line(err)}") from None
    program = program_from_exported(exported, name=path.stem, spec=str(path))
    program.native = exported.module()
    return program


def torchvision_weights_file(name: str) -> tuple[Path, object]:
    """Where torchvision's pretrained weights for ``name`` would sit in the local cache."""
    import torch
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name, weights


def load_torchvision(name: str, pretrained: str = "auto") -> Program:
    if name not in TORCHVISION_MODELS:
        raise ModelError(f"unknown torchvision model {name!r} (known: {', '.join(TORCHVISION_MODELS)})")
    import torch
    import torchvision

    file, weights = torchvision_weights_file(name)
    kwargs = {"aux_logits": True, "init_weights": True} if name == "inception_v3" else {}
    torch.manual_seed(SEED)
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    notes = []
    if pretrained != "never" and file.is_file():
        model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        notes.append(f"pretrained weights from {file}")
    elif pretrained == "require":
        raise ModelError(f"pretrained weights for {name} are not in the local cache: expected {file} "
                        "(MutateNN never downloads; place the file there)")
    else:
        message = (f"{name}: pretrained weights not found at {file}; using seeded random weights "
                   f"(seed {SEED}). Label comparisons on untrained weights are weak evidence.")
        warnings.warn(message, UntrainedWeightsWarning, stacklevel=2)
        notes.append(message)
    size = 299 if name == "inception_v3" else 224
    preset = "inception" if name == "inception_v3" else "imagenet"
    program = program_from_torch(model, (1, 3, size, size), name=name, spec=f"torchvision:{name}",
                                 preset=preset, labels=list(weights.meta["categories"]))
    program.notes = notes
    return program


def load_onnx(path: Path) -> Program:
    import onnx

    _check_file(path)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as err:
        raise ModelError(f"{str(path)!r} is not a valid ONNX model: {_first_line(err)}") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"ONNX model {str(path)!r} has {len(inputs)} inputs; MutateNN needs exactly one image input")
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelError(f"ONNX model {str(path)!r} input {inputs[0].name!r} has rank {len(dims)}; "
                        "MutateNN needs a 4-d image batch")
    layout = "NHWC" if dims[3] in (1, 3) and dims[1] not in (1, 3) else "NCHW"
    default_hw = 224
    if layout == "NCHW":
        shape = (1, dims[1] or 3, dims[2] or default_hw, dims[3] or default_hw)
    else:
        shape = (1, dims[1] or default_hw, dims[2] or default_hw, dims[3] or 3)
    from tvm.relax.frontend.onnx import from_onnx

    try:
        mod = from_onnx(model, shape_dict={inputs[0].name: list(shape)}, keep_params_in_input=False)
    except Exception as err:
        raise ModelError(f"TVM cannot import ONNX model {str(path)!r}: {_first_line(err)}") from None
    mod = _single_output(mod, str(path))
    num_classes = _output_classes(mod)
    return Program(name=path.stem, spec=str(path), mod=mod, input=InputSpec(inputs[0].name, shape, "float32", layout),
                   preset="imagenet", labels=[str(i) for i in range(num_classes)], framework="onnx")


def _single_output(mod, spec: str):
    """Make ``main`` return one tensor (tuples cannot be read back over TVM RPC)."""
    from tvm import relax

    func = mod["main"]
    ret = func.body.body
    if isinstance(ret, relax.Tuple):
        if len(ret.fields) == 0:
            raise ModelError(f"model {spec!r} has no outputs")
        new_body = relax.SeqExpr(func.body.blocks, ret.fields[0])
        func = relax.Function(func.params, new_body, attrs=func.attrs)
        mod = _replace_main(mod, func)
    return mod


def _replace_main(mod, func):
    import tvm

    new = tvm.IRModule({gv: f for gv, f in mod.functions_items() if gv.name_hint != "main"}, attrs=mod.attrs)
    new["main"] = func
    return new


def _output_classes(mod) -> int:
    from tvm import relax

    ret = mod["main"].ret_ty
    if not isinstance(ret, relax.TensorType) or ret.ndim != 2 or ret.shape is None:
        return 0
    return int(ret.shape[1])


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"model file {str(path)!r} does not exist")
    if not path.is_file():
        raise ModelError(f"model path {str(path)!r} is not a file")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("Traceback"):
            return f"{type(err).__name__}: {line}"[:400]
    return type(err).__name__
