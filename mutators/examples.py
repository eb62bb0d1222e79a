"""Small example programs the operators' worked examples (`base.Example`) run on.

Each entry of `PROGRAMS` builds a Relax module with TVM alone (no framework), cached
because building is not free: callers must not modify what they get (operators never
do; ``PROGRAMS[name].__wrapped__()`` builds a fresh copy). Between them the programs give every operator of the
catalogue at least one site. Like a model imported from a framework, ``main`` keeps
its weights as constants, works in one dataflow block and returns a 1-tuple.

- ``cnn``: (1, 1, 8, 8) -> conv2d (padding 1) + bias -> relu -> max_pool2d 2x2 ->
  conv2d (padding 1) -> relu -> avg_pool2d 2x2 -> reshape (1, 16) -> matmul + bias
  -> (1, 10). Its TIR has padding conditions (``<``, ``<=``), reductions and loops.
- ``arith``: (1, 2, 4, 4) -> batch_norm -> subtract -> multiply -> divide ->
  sigmoid -> tanh: the ops and activations the CNN lacks.
- ``compare``: one hand-written PrimFunc whose conditions use ``>``, ``>=``, ``==``
  and ``!=`` (lowered Relax ops use only ``<`` and ``<=``).

Weight and pass operators do not change the IR text: their diff is a summary
(changed values, or build options) rather than a unified diff. `diff_sides` treats
every line of such a summary as both removed and added.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import tvm
from tvm import relax

__all__ = ["PROGRAMS", "diff_sides"]


def _const(rng: np.random.Generator, *shape: int, scale: float = 0.5) -> relax.Expr:
    return relax.const((rng.standard_normal(shape) * scale).astype("float32"))


def _tensor(*shape: int) -> relax.TensorType:
    return relax.TensorType(shape, "float32")


@functools.lru_cache(maxsize=None)
def cnn() -> tvm.IRModule:
    """conv2d + bias, relu, max_pool2d, conv2d, relu, avg_pool2d, flatten, linear."""
    rng = np.random.default_rng(0)
    bb = relax.BlockBuilder()
    x = relax.Var("x", _tensor(1, 1, 8, 8))
    nn = relax.op.nn
    with bb.function("main", [x]):
        with bb.dataflow():
            h = bb.emit(nn.conv2d(x, _const(rng, 4, 1, 3, 3), padding=1))  # (1, 4, 8, 8)
            h = bb.emit(relax.op.add(h, _const(rng, 1, 4, 1, 1, scale=0.1)))
            h = bb.emit(nn.relu(h))
            h = bb.emit(nn.max_pool2d(h, pool_size=2, strides=2))  # (1, 4, 4, 4)
            h = bb.emit(nn.conv2d(h, _const(rng, 4, 4, 3, 3, scale=0.3), padding=1))
            h = bb.emit(nn.relu(h))
            h = bb.emit(nn.avg_pool2d(h, pool_size=2, strides=2))  # (1, 4, 2, 2)
            h = bb.emit(relax.op.reshape(h, (1, 16)))
            h = bb.emit(relax.op.matmul(h, _const(rng, 16, 10, scale=0.3)))
            h = bb.emit(relax.op.add(h, _const(rng, 10, scale=0.1)))
            out = bb.emit_output(relax.Tuple([h]))
        bb.emit_func_output(out)
    return bb.get()


@functools.lru_cache(maxsize=None)
def arith() -> tvm.IRModule:
    """batch_norm, subtract, multiply, divide, sigmoid and tanh on a (1, 2, 4, 4) input."""
    rng = np.random.default_rng(1)
    bb = relax.BlockBuilder()
    x = relax.Var("x", _tensor(1, 2, 4, 4))
    gamma = relax.const(np.array([1.5, 0.5], "float32"))
    beta = relax.const(np.array([0.1, -0.2], "float32"))
    mean = relax.const(np.array([0.3, -0.1], "float32"))
    var = relax.const(np.array([0.8, 1.2], "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            bn = bb.emit(relax.op.nn.batch_norm(x, gamma, beta, mean, var, axis=1, training=False))
            h = bb.emit(relax.TupleGetItem(bn, 0))
            h = bb.emit(relax.op.subtract(h, _const(rng, 1, 2, 1, 1, scale=0.2)))
            h = bb.emit(relax.op.multiply(h, _const(rng, 1, 2, 4, 4)))
            h = bb.emit(relax.op.divide(h, relax.const(np.array([[[[2.0]], [[4.0]]]], "float32"))))
            h = bb.emit(relax.op.sigmoid(h))
            h = bb.emit(relax.op.tanh(h))
            out = bb.emit_output(relax.Tuple([h]))
        bb.emit_func_output(out)
    return bb.get()


@functools.lru_cache(maxsize=None)
def compare() -> tvm.IRModule:
    """One PrimFunc with the comparisons `>`, `>=`, `==` and `!=` in its conditions."""
    from tvm.script import ir as I
    from tvm.script import relax as R
    from tvm.script import tirx as T

    @I.ir_module
    class Compare:
        @T.prim_func(private=True, s_tir=True)
        def compare(x: T.Buffer((8,), "float32"), y: T.Buffer((8,), "float32")):
            for i in range(8):
                with T.sblock("y"):
                    vi = T.axis.spatial(8, i)
                    y[vi] = (T.Select(T.GT(x[vi], T.float32(0.5)), T.float32(1), T.float32(0))
                             + T.Select(T.GE(x[vi], T.float32(0.25)), T.float32(2), T.float32(0))
                             + T.if_then_else(vi == 3, T.float32(4), T.float32(0))
                             + T.if_then_else(vi != 5, T.float32(8), T.float32(0)))

        @R.function
        def main(x: R.Tensor((8,), "float32")) -> R.Tuple(R.Tensor((8,), "float32")):
            cls = Compare
            with R.dataflow():
                y = R.call_tir(cls.compare, (x,), out_ty=R.Tensor((8,), "float32"))
                gv = (y,)
                R.output(gv)
            return gv

    return Compare


PROGRAMS: dict[str, Callable[[], tvm.IRModule]] = {"cnn": cnn, "arith": arith, "compare": compare}


def diff_sides(diff_text: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines of a mutant's diff, without their ``-``/``+`` marks.

    A unified diff (IR text) gives its ``-`` and ``+`` lines (not the ``---``/``+++``
    headers); a summary (weight and pass operators) gives all its lines to both sides.
    """
    lines = diff_text.splitlines()
    if not diff_text.startswith("---"):
        return lines, lines
    removed = [ln[1:] for ln in lines if ln.startswith("-") and not ln.startswith("---")]
    added = [ln[1:] for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
    return removed, added
