"""Shared machinery of the mutation operators: sites, mutants, selection, hashing, diffs.

An operator enumerates its *sites* in an IRModule and rewrites one site at a time into
a new module; the input module is never modified. Every step here is deterministic, so
a worker process can rebuild any mutant from (module, operator name, site index).
"""
from __future__ import annotations

import difflib
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import tvm
import tvm_ffi
from tvm import relax

LEVELS = ("graph", "tir", "pass", "weight")
PENDING, EQUIVALENT, NON_VIABLE = "pending", "equivalent", "non_viable"


@dataclass(frozen=True)
class Site:
    """One place an operator can mutate. ``key`` is the operator's own locator."""

    index: int
    description: str
    key: Any = None


@dataclass
class Mutant:
    """A program changed at one site by one operator (or, for ``pass``, built differently)."""

    id: str
    operator: str
    level: str
    site_index: int
    site: str
    status: str = PENDING
    reason: str = ""
    mod: Any = field(default=None, repr=False)  # mutated IRModule (None when non-viable)
    build_options: dict = field(default_factory=dict)  # overrides of the stack's build options
    hash: str = ""  # hex structural hash of the lowered module (+ build options for pass level)
    diff_text: str | None = field(default=None, repr=False)

    def summary(self) -> dict:
        """The JSON-able description used by listings and result stores."""
        return {
            "id": self.id,
            "operator": self.operator,
            "level": self.level,
            "site_index": self.site_index,
            "site": self.site,
            "status": self.status,
            "reason": self.reason,
            "hash": self.hash,
            "build_options": dict(self.build_options),
        }


class MutationOperator:
    """Base class of every operator. Subclasses set ``name``, ``level``, ``doc``."""

    name: str = ""
    level: str = ""
    doc: str = ""

    def sites(self, mod: tvm.IRModule) -> list[Site]:
        """All sites of this operator in ``mod``, in a deterministic order."""
        raise NotImplementedError

    def apply(self, mod: tvm.IRModule, site: Site) -> tvm.IRModule:
        """A new module with ``site`` mutated. May raise: the mutant is then non-viable."""
        raise NotImplementedError

    def build_options(self, site: Site) -> dict:
        """Build-option overrides this mutant needs (only pass-level operators use it)."""
        return {}

    def diff(self, original: tvm.IRModule, mutated: tvm.IRModule, site: Site) -> str:
        """Unified diff of the IR text, only the changed hunks."""
        return ir_diff(original, mutated)


@dataclass(frozen=True)
class Selection:
    """Which sites of each operator become mutants.

    mode: ``all``, ``first``, ``last``, ``every`` (every k-th, starting at 0),
    ``positions`` (explicit site indices), ``sample`` (n sites drawn with ``seed``).
    """

    mode: str = "all"
    k: int = 1
    positions: tuple[int, ...] = ()
    n: int = 1
    seed: int = 0

    def pick(self, sites: Sequence[Site]) -> list[Site]:
        if not sites:
            return []
        if self.mode == "all":
            return list(sites)
        if self.mode == "first":
            return [sites[0]]
        if self.mode == "last":
            return [sites[-1]]
        if self.mode == "every":
            if self.k < 1:
                raise ValueError("selection 'every' needs k >= 1")
            return list(sites[:: self.k])
        if self.mode == "positions":
            wanted = set(self.positions)
            return [s for s in sites if s.index in wanted]
        if self.mode == "sample":
            rng = random.Random(self.seed)
            chosen = rng.sample(range(len(sites)), min(self.n, len(sites)))
            return [sites[i] for i in sorted(chosen)]
        raise ValueError(f"unknown site selection mode {self.mode!r}")


def lower(mod: tvm.IRModule) -> tvm.IRModule:
    """The module as compared for equivalence: graph ops legalised into TIR PrimFuncs."""
    return relax.transform.LegalizeOps()(mod)


def structural_hash_hex(mod: tvm.IRModule, extra: str = "") -> str:
    value = tvm_ffi.structural_hash(mod) & 0xFFFFFFFFFFFFFFFF
    if extra:
        value = (value * 1000003 ^ hash_text(extra)) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def hash_text(text: str) -> int:
    """A process-independent hash of a string (Python's hash() is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def ir_diff(original: tvm.IRModule, mutated: tvm.IRModule, context: int = 3) -> str:
    a = original.script().splitlines()
    b = mutated.script().splitlines()
    return "\n".join(difflib.unified_diff(a, b, "original", "mutant", n=context, lineterm=""))


def mutant_id(operator: str, site_index: int) -> str:
    """Stable id: a rerun on the same program finds its earlier results under it."""
    return f"{operator}#{site_index}"
