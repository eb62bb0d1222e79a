"""`mutatenn mutants`: list a model's mutants, one mutant with its diff, or the operator catalogue."""
from __future__ import annotations

import json
import sys
import warnings

from ..errors import InputError


def _split(text: str | None) -> list[str] | None:
    """Comma-separated names; commas inside an operator's ``(k=v, ...)`` do not split."""
    from ..runners import split_variants

    return split_variants(text) if text else None


def cmd_mutants(args) -> int:
    import mutators

    if args.list_operators:
        ops = mutators.catalogue()
        if args.json:
            print(json.dumps([{"name": op.name, "level": op.level, "doc": op.doc, "params": dict(op.params)}
                              for op in ops], indent=2))
        else:
            for op in ops:
                params = ", ".join(f"{k} = {v!r}" for k, v in op.params.items())
                print(f"{op.name:32s} {op.level:7s} {op.doc}" + (f"  [parameters: {params}]" if params else ""))
        return 0
    if not args.model:
        raise InputError("mutants: give --model MODEL (or --list-operators)")
    from ..loading import load_program, preprocessing_text

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = load_program(args.model, args.pretrained, via=args.via or "", trusted=args.trust_model)
    if program.source is not None:
        print(f"preprocessing: {preprocessing_text(program.source)}", file=sys.stderr)
    operators = _split(args.operators)
    levels = _split(args.level)
    try:
        mutators.generate.select_operators(operators, levels)
    except KeyError as err:
        raise InputError(str(err.args[0])) from None
    if args.show:
        return _show(program, args.show)
    mutants = mutators.enumerate_mutants(program.mod, operators=operators, levels=levels)
    if args.json:
        print(json.dumps([m.summary() for m in mutants], indent=2))
        return 0
    print(f"{len(mutants)} mutants of {program.spec}")
    print(f"{'id':36s} {'level':7s} {'status':11s} site")
    for m in mutants:
        print(f"{m.id:36s} {m.level:7s} {m.status.value:11s} {m.site}" + (f"  [{m.reason}]" if m.reason else ""))
    return 0


def _show(program, mutant_id: str) -> int:
    import mutators

    operator, sep, index = mutant_id.rpartition("#")
    if not sep or not index.isdigit():
        raise InputError(f"mutant id {mutant_id!r} is not of the form OPERATOR#SITE")
    try:
        m = mutators.make_mutant(program.mod, operator, int(index), with_diff=True)
    except KeyError as err:
        raise InputError(str(err.args[0])) from None
    print(f"id:       {m.id}\noperator: {m.operator}\nlevel:    {m.level}\nsite:     {m.site}")
    print(f"status:   {m.status}" + (f" ({m.reason})" if m.reason else ""))
    print(f"hash:     {m.hash}")
    if m.build_options:
        print(f"build:    {json.dumps(m.build_options)}")
    print()
    print(m.diff_text or "(no IR text change)")
    return 0
