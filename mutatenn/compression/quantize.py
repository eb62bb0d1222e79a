"""int8 quantisation: ONNX Runtime's quantiser, and the same scheme as a Relax rewrite for TVM.

- ONNX Runtime, ``int8-static``: ``quant_pre_process`` then ``quantize_static`` in QDQ
  format (activations uint8 per tensor, weights int8 per channel, MinMax calibration over a
  seeded choice of the run's images). ``int8-dynamic``: ``quantize_dynamic`` (weights int8,
  activations quantised at run time); on CNNs it makes ``ConvInteger``, for which ONNX
  Runtime may have no CPU kernel: the session then fails to load and the error says so.
- TVM, ``int8-static``: TVM 0.27 has no int8 conv kernels of its own to pick; its ONNX
  frontend imports a QDQ model as ``R.quantize``/``R.dequantize`` around float ops, i.e.
  fake-quantised float math. `relax_int8_static` makes exactly that program from any
  imported module (so a mutant can be quantised after it is made, and every import path
  works): weights of conv2d/matmul quantised per output channel (int8, symmetric), their
  data inputs per tensor (uint8, asymmetric) with ranges calibrated on the module itself.
  TVM runs it in float: it measures quantisation's effect on outputs, not int8 speed.
  TVM has no ``int8-dynamic``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

TVM_QUANTIZE = ("none", "int8-static")
QUANTISED_OPS = ("relax.nn.conv2d", "relax.matmul", "relax.nn.conv1d")


# ------------------------------------------------------------------ ONNX Runtime
def onnx_quantize(model, mode: str, input_name: str, calibration: np.ndarray):
    """The ONNX model quantised (``mode``: int8-static or int8-dynamic); ``calibration``
    holds the calibration images in the model's input layout, one per row."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(range(len(calibration)))

        def get_next(self):
            i = next(self.rows, None)
            return None if i is None else {input_name: calibration[i : i + 1]}

    with tempfile.TemporaryDirectory(prefix="mutatenn-quant-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("model.onnx", "pre.onnx", "quant.onnx"))
        onnx.save(model, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if mode == "int8-dynamic":
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
        else:
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return onnx.load(str(out))


# ------------------------------------------------------------------ TVM (Relax)
def fake_quantize_weight(array: np.ndarray, axis: int | None) -> np.ndarray:
    """The int8 values a symmetric quantiser keeps, back in float: per channel along
    ``axis`` (per tensor when None), scale = max |w| / 127."""
    if axis is None:
        peak = np.abs(array).max(keepdims=True)
    else:
        peak = np.abs(np.moveaxis(array, axis, 0)).reshape(array.shape[axis], -1).max(axis=1)
        shape = [1] * array.ndim
        shape[axis] = -1
        peak = peak.reshape(shape)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(array.dtype)
    return (np.clip(np.round(array / scale), -127, 127) * scale).astype(array.dtype)


def quantised_inputs(mod) -> list:
    """The data inputs (Relax variables) of ``main``'s conv and matmul calls, in order."""
    from tvm import relax

    found = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and getattr(value.op, "name", "") in QUANTISED_OPS:
                arg = value.args[0]
                if isinstance(arg, relax.Var) and not any(arg.same_as(v) for v in found):
                    found.append(arg)
    return found


def with_outputs(mod, variables: list):
    """A copy of ``mod`` whose ``main`` returns ``(output, *variables)`` (calibration reads them)."""
    from tvm import relax

    from mutators.base import replace_main

    func = mod["main"]
    params = list(func.params)
    wanted = [v for v in variables if not any(v.same_as(p) for p in params)]
    blocks, mapped = [], {}
    for block in func.body.blocks:
        extra = []
        for binding in block.bindings:
            for v in wanted:
                if binding.var.same_as(v) and isinstance(block, relax.DataflowBlock):
                    out = relax.Var(f"{getattr(v, 'name', 'v')}_calib", binding.var.ty)
                    extra.append(relax.VarBinding(out, binding.var))
                    mapped[id(v)] = out
                elif binding.var.same_as(v):
                    mapped[id(v)] = binding.var
        blocks.append(relax.DataflowBlock(list(block.bindings) + extra) if extra else block)
    outs = [mapped.get(id(v), v) for v in variables]
    body = relax.SeqExpr(blocks, relax.Tuple([func.body.body, *outs]))
    ret = relax.TupleType([func.ret_ty, *[o.ty for o in outs]])
    return replace_main(mod, relax.Function(func.params, body, ret_ty=ret, attrs=func.attrs))


def activation_ranges(mod, calibration: np.ndarray, build: Callable) -> list:
    """(variable, min, max) of each quantised input over the calibration images; ``build``
    compiles a module into a callable ``main`` (the stack's own target)."""
    variables = quantised_inputs(mod)
    if not variables:
        return []
    main = build(with_outputs(mod, variables))
    low = np.full(len(variables), np.inf)
    high = np.full(len(variables), -np.inf)
    for i in range(len(calibration)):
        outs = main(np.ascontiguousarray(calibration[i : i + 1]))[1:]
        for j, out in enumerate(outs):
            low[j], high[j] = min(low[j], float(np.min(out))), max(high[j], float(np.max(out)))
    return [(v, lo, hi) for v, lo, hi in zip(variables, low, high)]


def uint8_params(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) of an asymmetric uint8 quantiser whose range holds [low, high] and 0."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0 if high > low else 1.0
    return scale, int(np.clip(round(-low / scale), 0, 255))


def relax_int8_static(mod, calibration: np.ndarray, build: Callable):
    """``mod`` as a calibrated QDQ program: weights fake-quantised per channel (int8), the
    data inputs of conv and matmul calls quantised and dequantised per tensor (uint8)."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    from mutators.base import main_function, replace_main

    from .pruning import relax_weights, replace_constants

    ranges = [(v, uint8_params(lo, hi)) for v, lo, hi in activation_ranges(mod, calibration, build)]

    @mutator
    class _QDQ(PyExprMutator):
        def visit_call_(self, call):
            new = super().visit_call_(call)
            if getattr(call.op, "name", "") not in QUANTISED_OPS or not isinstance(call.args[0], relax.Var):
                return new
            found = next((p for v, p in ranges if v.same_as(call.args[0])), None)
            if found is None:
                return new
            scale, zero = relax.const(found[0], "float32"), relax.const(found[1], "uint8")
            axis = 1 if len(call.args[0].ty.shape) > 1 else 0
            q = self.builder_.emit(relax.op.quantize(new.args[0], scale, zero, axis=axis, out_dtype="uint8"))
            dq = self.builder_.emit(relax.op.dequantize(q, scale, zero, axis=axis, out_dtype="float32"))
            return relax.Call(new.op, [dq, *new.args[1:]], new.attrs, new.ty_args)

    mod = replace_main(mod, _QDQ().visit_expr(main_function(mod)))
    weights = relax_weights(mod)  # after the rewrite: the variables calibrated were the original's
    return replace_constants(mod, {c: fake_quantize_weight(c.value.numpy(), axis) for c, axis in weights})
