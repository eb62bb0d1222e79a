"""Shared machinery of the mutation operators: sites, mutants, selection, hashing, diffs.

An operator enumerates its *sites* in an IRModule and rewrites one site at a time into
a new module; the input module is never modified. Every step here is deterministic, so
a worker process can rebuild any mutant from (module, operator name, site index).
"""
from __future__ import annotations

import difflib
import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Sequence

import tvm
import tvm_ffi
from tvm import relax

LEVELS = ("graph", "tir", "pass", "weight")


class MutantStatus(str, Enum):
    """What enumeration decides about a mutant before anything is built."""

    PENDING = "pending"  # to be built and judged
    EQUIVALENT = "equivalent"  # shown to compute what the original computes: never built
    NON_VIABLE = "non_viable"  # the rewrite failed or gave ill-formed IR: never built

    def __str__(self) -> str:
        return self.value


PENDING, EQUIVALENT, NON_VIABLE = MutantStatus.PENDING, MutantStatus.EQUIVALENT, MutantStatus.NON_VIABLE


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
    status: MutantStatus = PENDING
    reason: str = ""
    mod: Any = field(default=None, repr=False)  # mutated IRModule (None when non-viable)
    build_options: dict = field(default_factory=dict)  # overrides of the stack's build options
    # Hex structural hash of the mutant program: graph and weight levels hash the Relax
    # module (constants by content, see relax_program_hash), tir the lowered module,
    # pass the lowered original plus the build options.
    hash: str = ""
    diff_text: str | None = field(default=None, repr=False)

    def summary(self) -> dict:
        """The JSON-able description used by listings and result stores."""
        return {
            "id": self.id,
            "operator": self.operator,
            "level": self.level,
            "site_index": self.site_index,
            "site": self.site,
            "status": self.status.value,
            "reason": self.reason,
            "hash": self.hash,
            "build_options": dict(self.build_options),
        }


@dataclass(frozen=True)
class Example:
    """A worked example of an operator, run by one test for every operator: the mutant of
    example program ``program`` (`mutators.examples.PROGRAMS`) at site ``site`` has the
    status ``status`` and, when it is built, a diff whose removed lines contain ``before``
    and whose added lines contain ``after``."""

    program: str
    site: int
    before: str
    after: str
    status: str = "pending"


@dataclass
class Outcome:
    """What an operator's ``mutate`` gives for one site: module (None when non-viable), hash, status."""

    mod: Any
    hash: str
    status: MutantStatus = PENDING
    reason: str = ""


class MutationOperator:
    """Base class of every operator: the hooks the engine calls, and what each must do.

    Subclasses set ``name``, ``level``, ``doc`` and implement ``sites`` and ``apply``.
    ``mutate`` (status and hash of one mutant) has a sound default here (apply, lower,
    compare); the level bases (`RelaxOperator`, `tir.TirOperator`,
    `passes.PassOperator`) replace it with fast paths. ``examples`` gives worked
    examples that tests/test_mutator_examples.py runs for every operator.
    """

    name: str = ""
    level: str = ""
    doc: str = ""
    works_on: str = "relax"  # "relax": sites of the Relax module; "lowered": of the LegalizeOps output
    params: dict = {}  # parameter name -> default, for operators that take parameters (`configure`)
    # False: only when named (parameterised forms whose defaults repeat a fixed operator,
    # so campaigns over "every operator" do not count one mutant twice)
    by_default: bool = True

    def configure(self, **values) -> "MutationOperator":
        """This operator with some parameters set: a new operator named ``NAME(k=v, ...)``,
        from which a worker rebuilds it (`generate.operator_by_name`). Unknown names and
        bad values raise ValueError naming them."""
        if not values:
            return self
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            known = ", ".join(self.params) or "none"
            raise ValueError(f"operator {self.name!r} has no parameter {unknown[0]!r} (parameters: {known})")
        checked = {k: self.check_param(k, v) for k, v in sorted(values.items())}
        operator = self.with_params({**self.params, **checked})
        operator.name = f"{self.name}({', '.join(f'{k}={v}' for k, v in checked.items())})"
        return operator

    def check_param(self, name: str, value):
        """``value`` for parameter ``name``, checked (ValueError naming the problem)."""
        return value

    def with_params(self, params: dict) -> "MutationOperator":
        """A new operator of this kind with every parameter in ``params`` set."""
        raise NotImplementedError(f"{type(self).__name__} takes no parameters")

    def sites(self, mod: tvm.IRModule) -> list[Site]:
        """All sites of this operator in ``mod``, in a deterministic order."""
        raise NotImplementedError(f"{type(self).__name__} must implement sites")

    def apply(self, mod: tvm.IRModule, site: Site) -> tvm.IRModule:
        """A new module with ``site`` mutated. May raise: the mutant is then non-viable."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply")

    def mutate(self, mod: tvm.IRModule, site: Site, memo: dict) -> Outcome:
        """The mutant at ``site``: module, hash, status. Never raises.

        The default applies the rewrite, lowers both modules and compares them; ``memo``
        lives for one enumeration (the lowered original is kept there)."""
        if "lowered" not in memo:
            memo["lowered"] = lower(mod)
        try:
            mutated = self.apply(mod, site)
            mutated_lowered = lower(mutated)
            # well_formed raises on some ill-formed modules and returns False on others.
            if tvm.relax.analysis.well_formed(mutated_lowered) is False:
                raise ValueError("mutated module is not well-formed")
        except Exception as err:  # any failure of the rewrite makes the mutant non-viable
            return Outcome(None, "", NON_VIABLE, error_reason(err))
        if tvm_ffi.structural_equal(mutated_lowered, memo["lowered"]):
            return Outcome(mutated, structural_hash_hex(mutated_lowered), EQUIVALENT,
                           "lowered module structurally equal to the original")
        return Outcome(mutated, structural_hash_hex(mutated_lowered))

    def build_options(self, site: Site) -> dict:
        """Build-option overrides this mutant needs (only pass-level operators use it)."""
        return {}

    def diff(self, original: tvm.IRModule, mutated: tvm.IRModule, site: Site) -> str:
        """Unified diff of the IR text, only the changed hunks."""
        return ir_diff(original, mutated)

    def examples(self) -> list[Example]:
        """Worked examples of this operator (see `Example`)."""
        return []


class SiteSelectionError(ValueError):
    """A selection names site positions an operator does not have. Dropping them silently
    would run a smaller campaign than the one asked for."""

    def __init__(self, operator: str, positions: Sequence[int], count: int):
        self.operator, self.positions, self.count = operator, tuple(positions), count
        last = f"positions 0..{count - 1}" if count else "no position"
        past = (f"position {self.positions[0]} is" if len(self.positions) == 1 else
                f"positions {', '.join(map(str, self.positions))} are")
        super().__init__(f"operator {operator!r} has {count} sites on this program ({last}): "
                         f"{past} past the last site")


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

    def pick(self, sites: Sequence[Site], operator: str = "") -> list[Site]:
        """The selected sites of ``operator``; positions past its last site raise `SiteSelectionError`."""
        if self.mode == "positions":
            beyond = sorted({p for p in self.positions if p >= len(sites)})
            if beyond:
                raise SiteSelectionError(operator, beyond, len(sites))
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


# ---------------------------------------------------------------- Relax-level fast path

def error_reason(err: BaseException) -> str:
    """One readable line from a TVM error (type inference errors dump the whole Op first)."""
    import re

    text = " ".join(ln.strip() for ln in str(err).strip().splitlines() if ln.strip())
    dumped = re.search(r'ir\.Op\(.*?name="([^"]+)".*?support_level=\d+\),?\s*(.*)', text)
    if dumped:
        text = f"{dumped.group(1)}: {dumped.group(2)}"
    return f"{type(err).__name__}: {text}"[:300]


def main_function(mod: tvm.IRModule):
    """The entry Relax function (``main``) of a module."""
    return mod["main"]


def replace_main(mod: tvm.IRModule, func) -> tvm.IRModule:
    """A copy of ``mod`` whose ``main`` is ``func``; ``mod`` itself is untouched."""
    out = mod.clone()
    out["main"] = func
    return out


def array_digest(array) -> bytes:
    """Content digest of a numpy array (dtype, shape and bytes)."""
    import hashlib

    import numpy as np

    array = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.view(np.uint8).reshape(-1).data if array.size else b"")
    return h.digest()


class ConstantTable:
    """The constants of ``main`` in order of first use, with content digests.

    Hashing a whole module hashes every weight byte (~10 ms per mutant on
    mobilenet_v2). Instead a program hash is the structural hash of its *skeleton*
    (``main`` with each constant replaced by a tiny placeholder naming its slot here,
    same declared type) combined with the digests of the slots: equal hashes mean
    equal modules, constants included. Graph operators rewrite by binding position
    and never read constant values, so they can rewrite the skeleton just as they
    rewrite the real module, and the rewritten skeleton is cheap to hash and compare.
    """

    def __init__(self, mod: tvm.IRModule):
        from tvm.relax.expr_functor import PyExprVisitor, visitor

        found: list = []
        slot: dict = {}

        @visitor
        class _Collect(PyExprVisitor):
            def visit_generic_const_(self, const):
                if const not in slot:  # keys compare by object identity
                    slot[const] = len(found)
                    found.append(const)

        _Collect().visit_expr(main_function(mod))
        self.mod = mod
        self.constants = found
        self.slot = slot
        self._digests: list | None = None
        self._skeleton = None
        self._skeleton_hash: int | None = None
        self._others: int | None = None

    @property
    def digests(self) -> list:
        if self._digests is None:
            self._digests = [array_digest(c.value.numpy()) for c in self.constants]
        return self._digests

    @property
    def skeleton(self) -> tvm.IRModule:
        """The module with every constant of ``main`` replaced by its slot placeholder."""
        if self._skeleton is None:
            import numpy as np
            from tvm.relax.expr_functor import PyExprMutator, mutator

            slot = self.slot

            @mutator
            class _Skeleton(PyExprMutator):
                def visit_generic_const_(self, const):
                    # Same declared type, so re-normalising the consumer infers the same types.
                    return tvm.ir.GenericConst(tvm.runtime.tensor(np.array([slot[const]], "int64")), const.ty)

            self._skeleton = replace_main(self.mod, _Skeleton().visit_expr(main_function(self.mod)))
        return self._skeleton

    @property
    def skeleton_hash(self) -> int:
        if self._skeleton_hash is None:
            self._skeleton_hash = _hash64(main_function(self.skeleton))
        return self._skeleton_hash

    @property
    def others_hash(self) -> int:
        """Structural hash of every function but ``main`` (they are never mutated here)."""
        if self._others is None:
            rest = tvm.IRModule({gv: f for gv, f in self.mod.functions.items() if gv.name_hint != "main"})
            self._others = _hash64(rest)
        return self._others

    def program_hash(self, skeleton_hash: int | None = None, digests: Sequence[bytes] | None = None) -> str:
        """Hash of a program given its skeleton hash and slot digests (default: the original's)."""
        import hashlib

        h = hashlib.blake2b(digest_size=8)
        skeleton_hash = self.skeleton_hash if skeleton_hash is None else skeleton_hash
        h.update(f"{skeleton_hash:016x}{self.others_hash:016x}".encode())
        for d in self.digests if digests is None else digests:
            h.update(d)
        return h.hexdigest()


def _hash64(obj) -> int:
    return tvm_ffi.structural_hash(obj) & 0xFFFFFFFFFFFFFFFF


def constant_table(mod: tvm.IRModule, memo: dict | None) -> ConstantTable:
    """The table of ``mod``, shared through ``memo`` by all mutants of one enumeration."""
    if memo is None:
        return ConstantTable(mod)
    table = memo.get("relax.constants")
    if table is None or not table.mod.same_as(mod):
        table = memo["relax.constants"] = ConstantTable(mod)
    return table


def relax_program_hash(mod: tvm.IRModule, memo: dict | None = None) -> str:
    """The hash graph and weight levels give a program; an equivalent mutant has its original's."""
    return constant_table(mod, memo).program_hash()


class RelaxOperator(MutationOperator):
    """An operator that rewrites ``main`` of the Relax module (graph and weight levels).

    ``mutate`` decides status and hash without lowering. Soundness of the
    equivalence check: LegalizeOps is deterministic, so structurally equal Relax
    modules lower to equal modules (equivalent). The converse is taken for these
    operators: each rewrite that changes the Relax module changes a call, its op or
    attributes, the dataflow or a constant, and LegalizeOps keeps every call as its
    own call_tir over its own PrimFunc and constants, so the lowered modules differ
    too. This saves lowering every mutant (0.25 s each on mobilenet_v2); at worst a
    mutant that lowering would make equal is built and survives.

    Subclasses implement ``apply``; it must locate its site by binding position and
    must not read constant values, because it is also applied to the skeleton.
    """

    def mutate(self, mod: tvm.IRModule, site: Site, memo: dict) -> Outcome:
        try:
            mutated = self.apply(mod, site)
            # Types were inferred while the rewrite was normalised (that raises on a
            # mismatch); the full type re-check of well_formed costs 30 ms on
            # mobilenet_v2, so only scoping and structure are checked here.
            tvm.relax.analysis.well_formed(mutated, check_ty=False)
        except Exception as err:  # any failure of the rewrite makes the mutant non-viable
            return Outcome(None, "", NON_VIABLE, error_reason(err))
        table = constant_table(mod, memo)
        try:
            skeleton = main_function(self.apply(table.skeleton, site))
        except Exception:  # cannot happen for position-based rewrites; hash the real thing then
            return Outcome(mutated, structural_hash_hex(mutated))
        if tvm_ffi.structural_equal(skeleton, main_function(table.skeleton)):
            return Outcome(mutated, table.program_hash(), EQUIVALENT, "Relax module structurally equal to the original")
        return Outcome(mutated, table.program_hash(_hash64(skeleton)))
