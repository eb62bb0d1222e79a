"""Lower float precision: fp16 (and bf16 where the runtime and the CPU have it).

- TVM: Relax ``ToMixedPrecision`` after ``ConvertToDataflow`` (it rewrites dataflow
  blocks only). With ``out_dtype="float32"`` TVM 0.27 casts inputs and weights to float16
  and keeps conv2d/matmul accumulation in float32 (their ``out_dtype``), casting the results
  back to float16; its op policy is fixed (no block-list). It makes float16 only, so bf16
  is refused for TVM.
- ONNX Runtime: onnxconverter-common's ``convert_float_to_float16`` with inputs and
  outputs kept float32 (``keep_io_types``). Known traps: Resize with ``keep_io_types``,
  and Cast nodes left in float32; a model it cannot convert is that variant's error.
- PyTorch eager: the module and its input cast to float16 or bfloat16, output back to float32.
"""
from __future__ import annotations

TVM_PRECISIONS = ("fp32", "fp16")


def relax_fp16(mod):
    """``mod`` computing in float16 with float32 accumulation (inputs and output stay float32)."""
    from tvm import relax

    return relax.transform.ToMixedPrecision(out_dtype="float32")(relax.transform.ConvertToDataflow()(mod))


def onnx_fp16(model):
    """The ONNX model in float16, its inputs and outputs kept float32."""
    import warnings

    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about every value it clips to the float16 range
        return float16.convert_float_to_float16(model, keep_io_types=True)


def torch_dtype(precision: str):
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def torch_cast(module, precision: str):
    """A copy of the torch module whose parameters and buffers are in the precision's dtype."""
    import copy

    return copy.deepcopy(module).to(torch_dtype(precision))
