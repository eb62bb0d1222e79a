"""Worker isolation: every submitted job comes back exactly once, however workers die."""
from __future__ import annotations

from _crashy import square_or_die

from mutatenn.isolation import CRASHED, DONE, run_isolated


def test_every_job_ends_in_one_outcome_when_workers_segfault():
    numbers = list(range(10))
    outcomes = list(run_isolated(square_or_die, [(n,) for n in numbers], jobs=2, timeout=120))
    indices = sorted(o.index for o in outcomes)
    assert indices == numbers  # none lost, none twice
    by_index = {o.index: o for o in outcomes}
    for n in numbers:
        if n % 3 == 0 and n % 2:
            assert by_index[n].status is CRASHED and "worker process died" in by_index[n].reason
        else:
            assert by_index[n].status is DONE and by_index[n].value == n * n
