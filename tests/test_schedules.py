"""The default CPU schedule (`mutatenn.schedules`): it parallelises and vectorises the fused
PrimFuncs, changes no result (originals and TIR mutants alike), keeps unsound blocks serial,
and leaves non-LLVM targets alone. Real TVM builds on the host CPU; no mocks."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import relax, tirx
from tvm.script import tirx as T

from mutatenn import schedules
from mutatenn.build import BuildOptions, BuildStats, build_artifact, parse_target

HOST = {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu()}
CUDA = {"kind": "cuda", "arch": "sm_80"}


# ---------------------------------------------------------------- helpers

def _front_passes():
    """The product's passes of a default build up to FuseTIR (to look at the fused
    PrimFuncs a build schedules; builds themselves go through `build_artifact`)."""
    from mutatenn.tuning import front_passes

    return front_passes(parse_target("cpu"))


def build(mod, schedule: bool, stats: schedules.ScheduleStats | None = None, disabled=()):
    """The product's build (`mutatenn.build.build_artifact`) on the host CPU, with the
    default schedule or none; ``stats`` receives what the schedule pass did."""
    record = BuildStats()
    options = BuildOptions(schedule="default" if schedule else "none", disabled_pass=tuple(disabled))
    executable = build_artifact(mod, parse_target("cpu"), options, stats=record)
    if stats is not None:
        stats.merge(record.kernels)
    return executable


def run(executable, inputs: list[np.ndarray]) -> np.ndarray:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return np.stack([vm["main"](tvm.runtime.tensor(x)).numpy() for x in inputs])


def fused(mod):
    """The module after FuseTIR (what the schedule pass sees)."""
    with tvm.target.Target(HOST), tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(_front_passes())(mod)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


def annotated_loops(func) -> set[str]:
    """Which of "parallel" and "vectorized" loop kinds a PrimFunc has."""
    kinds = set()

    def visit(loop):
        if loop.kind == tirx.ForKind.PARALLEL:
            kinds.add("parallel")
        elif loop.kind == tirx.ForKind.VECTORIZED:
            kinds.add("vectorized")

    tvm_ffi.structural_walk(func, (tirx.For, visit))
    return kinds


def prim_funcs(mod) -> dict:
    return {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)}


def inputs_for(shape, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype("float32") for _ in range(n)]


@functools.lru_cache(maxsize=None)
def small_convnet():
    """A seeded torchvision-like CNN: conv+bn+relu+pool twice, then a linear layer."""
    import torch

    from mutatenn.loading import program_from_torch

    class SmallNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.bn1 = torch.nn.BatchNorm2d(16)
            self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
            self.bn2 = torch.nn.BatchNorm2d(32)
            self.pool = torch.nn.MaxPool2d(2)
            self.fc = torch.nn.Linear(32 * 8 * 8, 10)

        def forward(self, x):
            x = self.pool(torch.relu(self.bn1(self.conv1(x))))
            x = self.pool(torch.relu(self.bn2(self.conv2(x))))
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(0)
    model = SmallNet().eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return program_from_torch(model, (1, 3, 32, 32), name="small-convnet")


@functools.lru_cache(maxsize=None)
def digits():
    from mutatenn.loading import load_program

    return load_program("digits", "auto", None)


PROGRAMS = {"digits": digits, "small-convnet": small_convnet}


# ---------------------------------------------------------------- whole models

@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_scheduled_build_agrees_with_unscheduled(name):
    program = PROGRAMS[name]()
    xs = inputs_for(program.input.shape)
    stats = schedules.ScheduleStats()
    plain = run(build(program.mod, schedule=False), xs)
    scheduled = run(build(program.mod, schedule=True, stats=stats), xs)
    assert stats.num_scheduled > 0, stats.summary()
    assert not stats.failed, stats.failed
    assert np.isfinite(plain).all()
    assert rel_l2(plain, scheduled) <= 1e-5
    assert (plain.argmax(axis=-1) == scheduled.argmax(axis=-1)).all()


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_pass_parallelises_and_vectorises_the_fused_functions(name):
    mod = fused(PROGRAMS[name]().mod)
    before = prim_funcs(mod)
    assert not any(annotated_loops(f) for f in before.values())
    stats = schedules.ScheduleStats()
    scheduled_pass = schedules.default_schedule_pass(HOST, stats=stats)
    assert isinstance(scheduled_pass, tvm.transform.Pass)
    assert scheduled_pass.stats is stats
    after = prim_funcs(scheduled_pass(mod))
    assert after.keys() == before.keys()
    touched = {n for n, f in after.items() if annotated_loops(f)}
    # every convolution and matmul gets a vector lane; the larger ones parallel loops too
    # (blocks under MIN_PARALLEL_WORK iterations, like the digits CNN's, stay serial)
    heavy = [n for n in after if "conv2d" in n or "matmul" in n]
    assert heavy
    for n in heavy:
        assert "vectorized" in annotated_loops(after[n]), n
    assert any("parallel" in annotated_loops(after[n]) for n in heavy)
    assert len(touched) >= 0.6 * len(after), (sorted(touched), sorted(after))
    # the stats say the same, and untouched functions are the very same objects
    assert set(stats.scheduled) == touched
    assert set(stats.untouched) | set(stats.failed) == set(after) - touched
    for n in set(after) - touched:
        assert after[n].same_as(before[n])
    # the input module was not modified
    assert not any(annotated_loops(f) for f in prim_funcs(mod).values())


def test_unfused_build_is_scheduled_too():
    """At opt levels 0 and 1 (FuseOps / FuseTIR switched off) the pass sees the legalised
    PrimFuncs one per operator, and schedules them just as well."""
    program = digits()
    xs = inputs_for(program.input.shape)
    off = ["FoldConstant", "FuseOps", "FuseTIR"]
    stats = schedules.ScheduleStats()
    plain = run(build(program.mod, schedule=False, disabled=off), xs)
    scheduled = run(build(program.mod, schedule=True, stats=stats, disabled=off), xs)
    assert not any(n.startswith("fused_") for n in stats.scheduled + stats.untouched)
    assert any(n.startswith("conv2d") for n in stats.scheduled), stats.summary()
    assert rel_l2(plain, scheduled) <= 1e-5
    assert (plain.argmax(axis=-1) == scheduled.argmax(axis=-1)).all()


# ---------------------------------------------------------------- mutants

def _store_add_one_mutants(program, block_role: str):
    import mutators

    mutants = mutators.enumerate_mutants(program.mod, operators=["tir_store_add1"])
    chosen = [m for m in mutants if m.site.startswith("conv2d") and block_role in m.site]
    assert chosen, [m.site for m in mutants]
    return chosen[:2]


@pytest.mark.parametrize("role", ["conv2d_nchw: store", "conv2d_nchw: init store"])
def test_tir_mutant_is_scheduled_and_still_computes_the_same(role):
    program = small_convnet()
    xs = inputs_for(program.input.shape, n=2)
    original = run(build(program.mod, schedule=False), xs)
    for mutant in _store_add_one_mutants(program, role):
        func_name = mutant.site.split(" /")[0]
        # the mutated PrimFunc itself gets the schedule (this test is not vacuous)
        fused_mod = fused(mutant.mod)
        names = [n for n in prim_funcs(fused_mod) if func_name in n.split("_")]
        assert names, (func_name, sorted(prim_funcs(fused_mod)))
        stats = schedules.ScheduleStats()
        plain = run(build(mutant.mod, schedule=False), xs)
        scheduled = run(build(mutant.mod, schedule=True, stats=stats), xs)
        assert any(n in stats.scheduled for n in names), (names, stats.summary(), stats.kept_blocks)
        assert not stats.kept_blocks.get(names[0]), stats.kept_blocks
        assert rel_l2(original, plain) > 1e-3, mutant.site  # the mutant is visible...
        assert rel_l2(original, scheduled) > 1e-3, mutant.site  # ...with the schedule too
        assert rel_l2(plain, scheduled) <= 1e-5, mutant.site


# ---------------------------------------------------------------- soundness of single blocks

@T.prim_func(s_tir=True)
def scale(A: T.Buffer((256, 256), "float32"), B: T.Buffer((256, 256), "float32")):
    for i, j in T.grid(256, 256):
        with T.sblock("scale"):
            vi, vj = T.axis.remap("SS", [i, j])
            B[vi, vj] = A[vi, vj] * T.float32(2)


@T.prim_func(s_tir=True)
def matmul(A: T.Buffer((64, 128), "float32"), W: T.Buffer((128, 64), "float32"), C: T.Buffer((64, 64), "float32")):
    for i, j, k in T.grid(64, 64, 128):
        with T.sblock("matmul"):
            vi, vj, vk = T.axis.remap("SSR", [i, j, k])
            with T.init():
                C[vi, vj] = T.float32(0)
            C[vi, vj] = C[vi, vj] + A[vi, vk] * W[vk, vj]


@T.prim_func(s_tir=True)
def matmul_prime(A: T.Buffer((64, 96), "float32"), W: T.Buffer((96, 37), "float32"), C: T.Buffer((64, 37), "float32")):
    # 37 output columns: no divisor fills a vector register, so the lane loop is split into
    # full vectors and a tail vector (loop_partition)
    for i, j, k in T.grid(64, 37, 96):
        with T.sblock("matmul"):
            vi, vj, vk = T.axis.remap("SSR", [i, j, k])
            with T.init():
                C[vi, vj] = T.float32(0)
            C[vi, vj] = C[vi, vj] + A[vi, vk] * W[vk, vj]


@T.prim_func(s_tir=True)
def halve_index(A: T.Buffer((64, 64), "float32"), B: T.Buffer((64, 32), "float32")):
    # declared spatial, but two iterations write each element: parallel lanes would race
    for i, j in T.grid(64, 64):
        with T.sblock("halve"):
            vi, vj = T.axis.remap("SS", [i, j])
            B[vi, vj // 2] = A[vi, vj]


def _replace_loops(func, rewrite):
    return tvm_ffi.structural_map(func, (tirx.For, rewrite))


def _shift_store(func):
    """`B[vi, vj] = ...` becomes `B[vi, 255 - vj] = ...`: still one-to-one, but no longer
    the iterators themselves."""
    def rewrite(store):
        i, j = store.indices
        return tirx.BufferStore(store.buffer, store.value, [i, tirx.Sub(tirx.IntImm("int32", 255), j)])

    return tvm_ffi.structural_map(func, (tirx.stmt.BufferStore, rewrite))


def _run_func(func, arrays):
    exe = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=tvm.target.Target(HOST))
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    exe["main"](*tensors)
    return tensors[-1].numpy()


def test_sound_blocks_are_scheduled():
    for func in (scale, matmul, matmul_prime):
        new, report = schedules.schedule_prim_func_report(func, HOST)
        assert report.status == "scheduled", report
        assert annotated_loops(new) == {"parallel", "vectorized"}
    rng = np.random.default_rng(0)
    for func, (m, k, n) in ((matmul, (64, 128, 64)), (matmul_prime, (64, 96, 37))):
        a, w = rng.standard_normal((m, k)).astype("float32"), rng.standard_normal((k, n)).astype("float32")
        c = np.zeros((m, n), "float32")
        plain = _run_func(func, [a, w, c])
        assert np.array_equal(plain, _run_func(schedules.schedule_prim_func(func, HOST), [a, w, c]))
        np.testing.assert_allclose(plain, a @ w, rtol=1e-4, atol=1e-4)


def test_blocks_that_are_not_plainly_one_to_one_keep_their_loops():
    def shorter(loop):  # a mutant's loop bound: the block no longer covers its domain
        if loop.loop_var.name == "j":
            return tirx.For(loop.loop_var, loop.min, tirx.IntImm(str(loop.extent.ty.dtype), 255), loop.kind, loop.body)
        return loop

    def later(loop):  # a reduction loop starting at 1: the init must not move
        if loop.loop_var.name == "k":
            return tirx.For(loop.loop_var, tirx.IntImm(str(loop.min.ty.dtype), 1), tirx.IntImm(str(loop.extent.ty.dtype), 127),
                            loop.kind, loop.body)
        return loop

    cases = {
        "halved index": halve_index,
        "shifted store": _shift_store(scale),
        "shorter loop": _replace_loops(scale, shorter),
        "reduction from 1": _replace_loops(matmul, later),
    }
    for label, func in cases.items():
        new, report = schedules.schedule_prim_func_report(func, HOST)
        assert report.status == "untouched", (label, report)
        assert report.kept_blocks, label
        assert new.same_as(func), label
        assert not annotated_loops(new), label


def test_already_scheduled_and_non_llvm_functions_are_left_alone():
    once = schedules.schedule_prim_func(scale, HOST)
    again, report = schedules.schedule_prim_func_report(once, HOST)
    assert again.same_as(once) and report.reason == "already scheduled"
    untouched, report = schedules.schedule_prim_func_report(scale, CUDA)
    assert untouched.same_as(scale) and report.status == "untouched"


# ---------------------------------------------------------------- targets

def test_non_llvm_target_leaves_the_module_unchanged():
    mod = fused(digits().mod)
    new, stats = schedules.schedule_module(mod, CUDA)
    assert new.same_as(mod)
    assert stats.skipped_target and stats.num_scheduled == 0
    cuda_target = tvm.target.Target(CUDA, host={"kind": "llvm"})
    stats = schedules.ScheduleStats()
    out = schedules.default_schedule_pass(cuda_target, stats=stats)(mod)
    assert tvm_ffi.structural_equal(out, mod)
    assert not any(annotated_loops(f) for f in prim_funcs(out).values())
    assert stats.skipped_target
    # the same module for the host CPU does get scheduled
    assert schedules.schedule_module(mod, HOST)[1].num_scheduled > 0


@pytest.mark.parametrize("mcpu, bits", [("x86-64", 128), ("haswell", 256), ("skylake-avx512", 512)])
def test_vector_width_follows_the_target_cpu(mcpu, bits):
    assert schedules.vector_bits({"kind": "llvm", "mcpu": mcpu}) == bits
    tile = schedules._DefaultRule(tvm.target.Target({"kind": "llvm", "mcpu": mcpu})).tile
    assert tile == (16 if bits == 512 else 8)
    lanes = bits // 32
    new = schedules.schedule_prim_func(scale, {"kind": "llvm", "mcpu": mcpu})
    extents = []
    tvm_ffi.structural_walk(new, (tirx.For, lambda f: extents.append(int(f.extent))
                                  if f.kind == tirx.ForKind.VECTORIZED else None))
    assert extents == [lanes]
