"""Every operator's worked examples (`MutationOperator.examples`), run on the small
programs of `mutators.examples`: each example's mutant has the stated status, and its
diff removes a line containing ``before`` and adds one containing ``after``."""
from __future__ import annotations

import pytest
import tvm_ffi

import mutators
from mutators.examples import PROGRAMS, diff_sides

OPERATORS = mutators.catalogue()


@pytest.mark.parametrize("op", OPERATORS, ids=[op.name for op in OPERATORS])
def test_operator_examples(op):
    examples = op.examples()
    assert examples, f"{op.name} has no worked example"
    for ex in examples:
        where = f"{op.name} example {ex.program}#{ex.site}"
        assert ex.program in PROGRAMS, f"{where}: unknown example program"
        mod = PROGRAMS[ex.program]()
        mutant = mutators.make_mutant(mod, op.name, ex.site, with_diff=True)
        assert mutant.status.value == ex.status, f"{where}: {mutant.status.value} ({mutant.reason})"
        # The (cached, shared) program is left as a fresh build of it.
        assert tvm_ffi.structural_equal(mod, PROGRAMS[ex.program].__wrapped__()), f"{where}: program modified"
        if mutant.diff_text is None:  # non-viable: nothing was built
            continue
        removed, added = diff_sides(mutant.diff_text)
        assert removed or added, f"{where}: empty diff"
        if ex.before:
            assert any(ex.before in line for line in removed), \
                f"{where}: no removed line has {ex.before!r}:\n{mutant.diff_text}"
        assert any(ex.after in line for line in added), \
            f"{where}: no added line has {ex.after!r}:\n{mutant.diff_text}"
