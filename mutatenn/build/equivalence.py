"""Trivial compiler equivalence: a TIR mutant whose changed kernels compile to the same
machine code as the original's kernels computes what the original computes.

With shared builds a TIR mutant compiles only the PrimFuncs it changed (the original's
names with an ``_mN`` suffix, the graph untouched) into a library of their own. That
library's assembly, names restored, is compared as text with the original's kernels of
those names compiled together the same way (once per worker and set of kernels), debug
sections, source locations, symbol sizes and comments dropped. Identical text means the
mutant is `equivalent` without running it (the TCE of mutation testing for compiled
languages: Papadakis et al., ICSE 2015).
"""
from __future__ import annotations

import re

# Assembly lines that say where code came from or how long a symbol is, not what it does
# (a renamed kernel's name string is three bytes longer; its contents are compared).
_NOISE = re.compile(r"^\s*(#|\.loc\b|\.file\b|\.cfi_|\.ident\b|\.size\b|\.Ltmp\d+:|\.Lfunc_end\d+:|\.addrsig|$)")


def normalized_asm(text: str) -> str:
    """``text`` (a module's assembly) without debug sections, locations, sizes and comments."""
    out, debug = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(".section"):
            debug = ".debug" in stripped
        if debug or _NOISE.match(line):
            continue
        out.append(re.sub(r"\s+#.*$", "", line))
    return "\n".join(out)


def compiled_asm(funcs: dict, target, options) -> str:
    """PrimFuncs (name -> func) compiled together, as a shared build compiles a mutant's
    changed kernels: their assembly, normalised."""
    import tvm

    from .pipeline import pass_context

    mod = tvm.IRModule({n: f.with_attr("global_symbol", n) for n, f in funcs.items()})
    with pass_context(options):
        lib = tvm.tirx.build(mod, target=target.tvm_target())
    return normalized_asm(lib.inspect_source("asm"))


def original_asm(original, names: tuple[str, ...], target, options) -> str:
    """`compiled_asm` of the original's kernels ``names`` (kept on ``original`` per set)."""
    if names not in original.asm:
        original.asm[names] = compiled_asm({n: original.funcs[n] for n in names}, target, options)
    return original.asm[names]


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
    ``shared``: the mutant's library holds exactly those (a shared build), compared as
    assembly with the ``_mN`` names restored; else (a full build) they are compiled
    together once more for the comparison."""
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
        text = mutant.lib.inspect_source("asm")
        for name in sorted(names, key=len, reverse=True):
            text = text.replace(name, names[name])
        text = normalized_asm(text)
    else:
        text = compiled_asm({names[n]: mutant.funcs[n] for n in names}, target, options)
    if text != original_asm(original, bases, target, options):
        return ""
    return f"compiles to the original's machine code (kernel{'s' if len(bases) > 1 else ''} {', '.join(bases)})"
