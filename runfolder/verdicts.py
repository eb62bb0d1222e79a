"""The verdict table: every verdict a mutant can get on a stack, with everything the
engine, the store, the report and the CLI need to know about it, in one place.

A verdict is added by one `Verdict` member and one `VERDICT_TABLE` line; the mutation
score, the report's colours and detail sections, the next-step command lines (`repro`,
`localize`) and the campaign's progress line are all read from the table.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(str, Enum):
    """The fate of one mutant on one stack."""

    KILLED = "killed"
    SURVIVED = "survived"
    CRASHED = "crashed"  # the worker process died, or the run raised
    MEMORY_ERROR = "memory_error"  # a bounds check (`mutatenn.bounds`) caught an access outside a buffer
    UNINITIALIZED_READ = "uninitialized_read"  # a kernel left elements of its output unwritten (`mutatenn.poison`)
    TIMED_OUT = "timed_out"
    BUILD_ERROR = "build_error"  # the compiler refused the mutant: counted apart, like non_viable
    NON_VIABLE = "non_viable"
    EQUIVALENT = "equivalent"

    def __str__(self) -> str:
        return self.value

    @property
    def is_judged(self) -> bool:
        """The mutant ran to the end and was compared with the original."""
        return self in (Verdict.KILLED, Verdict.SURVIVED)

    @property
    def info(self) -> "VerdictInfo":
        return VERDICT_INFO[self]


@dataclass(frozen=True)
class VerdictInfo:
    """What one verdict means to every reader. ``scored``: it counts in the mutation score
    (killed / scored); ``mutation_testing`` / ``junit``: what it is in each export; ``detail``: the order of the report's per-mutant detail sections
    (lower first; None: no detail section); ``repro`` / ``localize``: the command applies
    (a build to rebuild alone; outputs to compare layer by layer); ``progress``: named in
    the campaign's progress line; ``dark_text``: the badge's colour is light; ``checked``:
    found by a check of a checked build (``bounds_check``), so a pair rebuilt with checks
    (``rejudge_unstable``) takes it and ``repro`` rebuilds with checks to see it again."""

    verdict: Verdict
    label: str
    colour: str
    scored: bool
    detail: int | None
    repro: bool
    localize: bool
    progress: bool
    doc: str
    dark_text: bool = False
    checked: bool = False
    # How the verdict reads in the exports (`reports.exports`): the mutation-testing report
    # schema's MutantStatus, and the JUnit element of its test case ("": the case passed).
    mutation_testing: str = ""
    junit: str = ""


VERDICT_TABLE: tuple[VerdictInfo, ...] = (
    VerdictInfo(Verdict.KILLED, "killed", "#1f9d55", True, 2, True, True, True,
                "the mutant's outputs met the kill criterion",
                mutation_testing="Killed", junit=""),
    VerdictInfo(Verdict.SURVIVED, "survived", "#d0393e", True, 0, False, True, True,
                "the mutant ran and its outputs did not meet the kill criterion",
                mutation_testing="Survived", junit="failure"),
    VerdictInfo(Verdict.CRASHED, "crashed", "#e07b16", True, 1, True, False, True,
                "the run raised, or the worker process died (segfault, abort, out of memory)",
                mutation_testing="RuntimeError", junit="error"),
    VerdictInfo(Verdict.MEMORY_ERROR, "memory error", "#7b3fa0", True, 1, True, False, True,
                "a bounds check caught the build reading or writing outside a buffer",
                checked=True, mutation_testing="RuntimeError", junit="error"),
    VerdictInfo(Verdict.UNINITIALIZED_READ, "uninitialized read", "#b8457f", True, 1, True, False, True,
                "a checked build's kernel left elements of its output unwritten (they still held the poison)",
                checked=True, mutation_testing="RuntimeError", junit="error"),
    VerdictInfo(Verdict.TIMED_OUT, "timed out", "#c98a1b", True, 1, True, False, True,
                "no result within the job's timeout; the worker was killed",
                mutation_testing="Timeout", junit="error"),
    VerdictInfo(Verdict.BUILD_ERROR, "build error", "#5f6b7a", False, 1, True, False, True,
                "the compiler refused the mutant (counted apart, like non-viable)",
                mutation_testing="CompileError", junit="skipped"),
    VerdictInfo(Verdict.NON_VIABLE, "non-viable", "#8a9099", False, None, False, False, False,
                "the mutation made ill-formed IR; never built",
                mutation_testing="CompileError", junit="skipped"),
    VerdictInfo(Verdict.EQUIVALENT, "equivalent", "#b0b5bc", False, None, False, False, False,
                "the lowered program is the original's (or builds exactly as the stack does); never built",
                dark_text=True,
                mutation_testing="Ignored", junit="skipped"),
)
VERDICT_INFO: dict[Verdict, VerdictInfo] = {row.verdict: row for row in VERDICT_TABLE}
assert set(VERDICT_INFO) == set(Verdict), "every verdict needs one VERDICT_TABLE line"
assert all(row.mutation_testing for row in VERDICT_TABLE), "every verdict needs its mutation-testing status"

SCORED = tuple(row.verdict for row in VERDICT_TABLE if row.scored)
VERDICT_NAMES = tuple(row.verdict.value for row in VERDICT_TABLE)
SCORED_NAMES = tuple(v.value for v in SCORED)
DETAIL_PRIORITY = {row.verdict.value: row.detail for row in VERDICT_TABLE if row.detail is not None}
REPRODUCIBLE = tuple(row.verdict.value for row in VERDICT_TABLE if row.repro)
LOCALIZABLE = tuple(row.verdict.value for row in VERDICT_TABLE if row.localize)
PROGRESS = tuple(row.verdict for row in VERDICT_TABLE if row.progress)
CHECKED = tuple(row.verdict.value for row in VERDICT_TABLE if row.checked)
# The verdicts of a build or run that failed (no outputs to compare): the scored ones
# other than killed and survived, and build_error.
FAILED = tuple(row.verdict.value for row in VERDICT_TABLE if row.detail == 1)


def score_formula() -> str:
    """The score's definition in words, from the table (the report's note)."""
    return "killed / (" + " + ".join(VERDICT_INFO[v].label for v in SCORED) + ")"
