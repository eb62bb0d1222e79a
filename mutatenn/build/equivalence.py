"""Trivial compiler equivalence: a TIR mutant whose changed kernels compile to the same
code as the original's kernels computes what the original computes.

With shared builds a TIR mutant compiles only the PrimFuncs it changed (the original's
names with an ``_mN`` suffix, the graph untouched) into a library of their own. That
library's LLVM module after optimisation (what machine code is generated from, for one
target: the same module gives the same code), names restored, is compared as text with
the original's kernels of those names compiled together the same way (once per worker
and set of kernels), with debug metadata, comments and string-constant lengths dropped
(a renamed kernel's name string is three bytes longer; its contents are compared).
Identical text means the mutant is `equivalent` without running it (the TCE of mutation
testing for compiled languages: Papadakis et al., ICSE 2015). Reading the module is
cheap (milliseconds); emitting assembly would cost about a kernel's compile again.
"""
from __future__ import annotations

import re

_DROPPED = ("!", "; ModuleID", "source_filename")  # metadata nodes, the module's name and file


def normalized_ir(text: str) -> str:
    """``text`` (an LLVM module) without debug metadata, comments and string lengths."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or line.startswith(_DROPPED) or stripped.startswith("#dbg"):
            continue
        line = re.sub(r",?\s*!dbg !\d+", "", line)
        line = re.sub(r'\[\d+ x i8\] c"', '[_ x i8] c"', line)
        out.append(line if 'c"' in line else re.sub(r"\s*;.*$", "", line))  # no ';' of a string cut
    return "\n".join(out)


def compiled_ir(funcs: dict, target, options) -> str:
    """PrimFuncs (name -> func) compiled together, as a shared build compiles a mutant's
    changed kernels: their optimised LLVM module, normalised."""
    import tvm

    from .pipeline import pass_context

    mod = tvm.IRModule({n: f.with_attr("global_symbol", n) for n, f in funcs.items()})
    with pass_context(options):
        lib = tvm.tirx.build(mod, target=target.tvm_target())
    return normalized_ir(lib.inspect_source("ll"))


def original_ir(original, names: tuple[str, ...], target, options) -> str:
    """`compiled_ir` of the original's kernels ``names`` (kept on ``original`` per set)."""
    if names not in original.code:
        original.code[names] = compiled_ir({n: original.funcs[n] for n in names}, target, options)
    return original.code[names]


def changed_kernels(original, mutant) -> list[str]:
    """The kernels of a full build of a mutant that the original does not hold as they are."""
    return sorted(n for n, f in mutant.funcs.items() if not original.has(n, f))


def base_name(name: str, original_funcs) -> str | None:
    """The original kernel a compiled kernel stands for: its own name, or the name before
    the ``_mN`` suffix a shared build gives a changed kernel (`pipeline._fresh_name`)."""
    if name in original_funcs:
        return name
    match = re.fullmatch(r"(.+)_m\d+", name)
    return match.group(1) if match and match.group(1) in original_funcs else None


def same_machine_code(original, mutant, compiled: list[str], target, options, shared: bool = True) -> str:
    """Why the mutant compiles to the original's code ("" when it does not): ``original``
    and ``mutant`` are `pipeline.Kernels`, ``compiled`` the mutant's changed kernels.
    ``shared``: the mutant's library holds exactly those (a shared build), compared with
    the ``_mN`` names restored; else (a full build) they are compiled together once more
    for the comparison."""
    if not compiled or target.spec["kind"] != "llvm":
        return ""
    names = {}
    for name in compiled:
        base = base_name(name, original.funcs)
        if base is None:  # a kernel the original lacks: the graph changed, not one kernel's code
            return ""
        names[name] = base
    bases = tuple(sorted(names.values()))
    if shared:
        text = mutant.lib.inspect_source("ll")
        for name in sorted(names, key=len, reverse=True):
            text = text.replace(name, names[name])
        text = normalized_ir(text)
    else:
        text = compiled_ir({names[n]: mutant.funcs[n] for n in names}, target, options)
    if text != original_ir(original, bases, target, options):
        return ""
    return f"compiles to the original's machine code (kernel{'s' if len(bases) > 1 else ''} {', '.join(bases)})"
