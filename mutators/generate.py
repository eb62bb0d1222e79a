"""Turning (module, operators, selection) into mutants with status, hash and diff."""
from __future__ import annotations

import json
from typing import Iterable

import tvm
import tvm_ffi

from .base import (
    EQUIVALENT,
    LEVELS,
    NON_VIABLE,
    PENDING,
    Mutant,
    MutationOperator,
    Selection,
    Site,
    lower,
    mutant_id,
    structural_hash_hex,
)


def catalogue() -> tuple[MutationOperator, ...]:
    """Every operator MutateNN knows, in a fixed order (graph, weight, tir, pass)."""
    from . import graph, passes, tir, weight

    return tuple(graph.OPERATORS) + tuple(weight.OPERATORS) + tuple(tir.OPERATORS) + tuple(passes.OPERATORS)


def operator_by_name(name: str) -> MutationOperator:
    for op in catalogue():
        if op.name == name:
            return op
    known = ", ".join(op.name for op in catalogue())
    raise KeyError(f"unknown mutation operator {name!r} (known: {known})")


def select_operators(names: Iterable[str] | None = None, levels: Iterable[str] | None = None) -> list[MutationOperator]:
    ops = list(catalogue())
    if names:
        ops = [operator_by_name(n) for n in names]
    if levels:
        levels = list(levels)
        for lv in levels:
            if lv not in LEVELS:
                raise KeyError(f"unknown mutation level {lv!r} (known: {', '.join(LEVELS)})")
        ops = [op for op in ops if op.level in levels]
    return ops


class _Reference:
    """The original module, lowered once, shared by the mutants of one enumeration."""

    def __init__(self, mod: tvm.IRModule):
        self.mod = mod
        self._lowered = None
        self.memo: dict = {}  # per-enumeration cache an operator may use (module hash, ...)

    @property
    def lowered(self) -> tvm.IRModule:
        if self._lowered is None:
            self._lowered = lower(self.mod)
        return self._lowered


def _build_mutant(ref: _Reference, op: MutationOperator, site: Site, with_diff: bool) -> Mutant:
    m = Mutant(id=mutant_id(op.name, site.index), operator=op.name, level=op.level,
               site_index=site.index, site=site.description)
    if op.level == "pass":
        m.mod = ref.mod
        m.build_options = op.build_options(site)
        m.hash = structural_hash_hex(ref.lowered, json.dumps(m.build_options, sort_keys=True))
        return m
    relax_fast = getattr(op, "mutate_relax", None)
    if relax_fast is not None:
        # Graph and weight operators judge status and hash on the Relax module (no lowering).
        result = relax_fast(ref.mod, site, ref.memo)
        m.mod, m.hash, m.status, m.reason = result.mod, result.hash, result.status, result.reason
        if with_diff and result.mod is not None:
            m.diff_text = op.diff(ref.mod, result.mod, site)
        return m
    fast = getattr(op, "mutate_lowered", None)
    if fast is not None:
        # Operators on the lowered module judge hash and equivalence on what they changed.
        result = fast(ref.lowered, site, ref.memo)
        m.mod, m.hash, m.status, m.reason = result.mod, result.hash, result.status, result.reason
        if with_diff and result.mod is not None:
            m.diff_text = op.diff(ref.lowered, result.mod, site)
        return m
    try:
        mutated = op.apply(ref.mod, site)
        mutated_lowered = lower(mutated)
        # well_formed raises on some ill-formed modules and returns False on others.
        if tvm.relax.analysis.well_formed(mutated_lowered) is False:
            raise ValueError("mutated module is not well-formed")
    except Exception as err:  # any failure of the rewrite makes the mutant non-viable
        m.status = NON_VIABLE
        m.reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:300]
        return m
    m.mod = mutated
    m.hash = structural_hash_hex(mutated_lowered)
    if tvm_ffi.structural_equal(mutated_lowered, ref.lowered):
        m.status = EQUIVALENT
        m.reason = "lowered module structurally equal to the original"
    if with_diff:
        m.diff_text = op.diff(ref.mod, mutated, site)
    return m


def enumerate_mutants(mod: tvm.IRModule, operators: Iterable[str] | None = None,
                      levels: Iterable[str] | None = None, selection: Selection | None = None,
                      with_diff: bool = False) -> list[Mutant]:
    """One mutant per selected site of each chosen operator; ``mod`` is left unchanged."""
    selection = selection or Selection()
    ref = _Reference(mod)
    out: list[Mutant] = []
    for op in select_operators(operators, levels):
        for site in selection.pick(_sites(op, ref)):
            out.append(_build_mutant(ref, op, site, with_diff))
    return out


def make_mutant(mod: tvm.IRModule, operator: str, site_index: int, with_diff: bool = True) -> Mutant:
    """Rebuild one mutant by operator name and site index (what worker processes do)."""
    op = operator_by_name(operator)
    ref = _Reference(mod)
    sites = [s for s in _sites(op, ref) if s.index == site_index]
    if not sites:
        raise KeyError(f"operator {operator!r} has no site {site_index} in this program")
    return _build_mutant(ref, op, sites[0], with_diff)


def _sites(op: MutationOperator, ref: _Reference) -> list[Site]:
    # Lowering an already lowered module is nearly free; TIR operators get the shared copy.
    return op.sites(ref.lowered if op.level == "tir" else ref.mod)
