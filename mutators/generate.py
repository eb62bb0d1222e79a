"""Turning (module, operators, selection) into mutants with status, hash and diff."""
from __future__ import annotations

from typing import Iterable

import tvm

from .base import LEVELS, Mutant, MutantStatus, MutationOperator, Selection, Site, lower, mutant_id


def catalogue() -> tuple[MutationOperator, ...]:
    """Every operator MutateNN knows, in a fixed order (graph, weight, tir, pass)."""
    from . import graph, passes, tir, weight

    return tuple(graph.OPERATORS) + tuple(weight.OPERATORS) + tuple(tir.OPERATORS) + tuple(passes.OPERATORS)


def operator_by_name(name: str) -> MutationOperator:
    """An operator by catalogue name, or ``NAME(k=v, ...)``: a parameterised operator
    configured with those values (the name `MutationOperator.configure` gives it)."""
    base, _, rest = name.partition("(")
    for op in catalogue():
        if op.name == base:
            return op.configure(**parse_params(rest.rstrip(")"))) if rest else op
    known = ", ".join(op.name for op in catalogue())
    raise KeyError(f"unknown mutation operator {name!r} (known: {known})")


def parse_params(text: str) -> dict:
    """``k=v, ...`` of an operator name: numbers as numbers, anything else as text."""
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = (x.strip() for x in item.partition("="))
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def select_operators(names: Iterable[str] | None = None, levels: Iterable[str] | None = None) -> list[MutationOperator]:
    """The operators named (``NAME`` or ``NAME(k=v)``), else every operator used by default."""
    ops = [op for op in catalogue() if op.by_default]
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
        self.memo: dict = {}  # per-enumeration cache operators share (lowered module, hashes, ...)

    @property
    def lowered(self) -> tvm.IRModule:
        if "lowered" not in self.memo:
            self.memo["lowered"] = lower(self.mod)
        return self.memo["lowered"]

    def module_for(self, op: MutationOperator) -> tvm.IRModule:
        """The module an operator's sites live in (Relax, or the LegalizeOps output)."""
        return self.lowered if op.works_on == "lowered" else self.mod


def _build_mutant(ref: _Reference, op: MutationOperator, site: Site, with_diff: bool) -> Mutant:
    mod = ref.module_for(op)
    result = op.mutate(mod, site, ref.memo)
    m = Mutant(id=mutant_id(op.name, site.index), operator=op.name, level=op.level, site_index=site.index,
               site=site.description, status=MutantStatus(result.status), reason=result.reason, mod=result.mod,
               build_options=op.build_options(site), hash=result.hash)
    if with_diff and result.mod is not None:
        m.diff_text = op.diff(mod, result.mod, site)
    return m


def enumerate_mutants(mod: tvm.IRModule, operators: Iterable[str] | None = None,
                      levels: Iterable[str] | None = None, selection: Selection | None = None,
                      with_diff: bool = False) -> list[Mutant]:
    """One mutant per selected site of each chosen operator; ``mod`` is left unchanged."""
    selection = selection or Selection()
    ref = _Reference(mod)
    out: list[Mutant] = []
    for op in select_operators(operators, levels):
        for site in selection.pick(_sites(op, ref), op.name):
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
    return op.sites(ref.module_for(op))
