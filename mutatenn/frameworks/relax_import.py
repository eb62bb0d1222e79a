"""Importing a form into Relax, one function per form kind (`IMPORTERS` in the package).
Every importer returns a module whose ``main`` takes the form's input and returns one
tensor (tuples cannot be read back over TVM RPC)."""
from __future__ import annotations

from ..errors import ModelError


def from_exported(form):
    from tvm.relax.frontend.torch import from_exported_program

    mod = from_exported_program(form.payload, keep_params_as_input=False, unwrap_unit_return_tuple=True)
    return single_output(mod)


def from_onnx(form):
    from tvm.relax.frontend.onnx import from_onnx as frontend

    mod = frontend(form.payload, shape_dict={form.input.name: list(form.input.shape)}, keep_params_in_input=False)
    return single_output(mod)


def from_tflite(form):
    import tflite
    from tvm.relax.frontend.tflite import from_tflite as frontend

    model = tflite.Model.GetRootAsModel(form.payload, 0)
    return single_output(frontend(model))  # a (1, 1, 1, C) output is read back as (1, C) by the runner


def single_output(mod):
    """``main`` returning its first output when it returns a tuple."""
    from tvm import relax

    from mutators.base import replace_main

    func = mod["main"]
    ret = func.body.body
    if isinstance(ret, relax.Tuple):
        if len(ret.fields) == 0:
            raise ModelError("the model has no outputs")
        func = relax.Function(func.params, relax.SeqExpr(func.body.blocks, ret.fields[0]), attrs=func.attrs)
        mod = replace_main(mod, func)
    return mod


def output_classes(mod) -> int:
    from tvm import relax

    ret = mod["main"].ret_ty
    if not isinstance(ret, relax.TensorType) or ret.ndim != 2 or ret.shape is None:
        return 0
    return int(ret.shape[1])
