"""`mutatenn compare`: one model deployed as several variants, each against a baseline."""
from __future__ import annotations

import sys
import warnings


def cmd_compare(args) -> int:
    from ..api import compare
    from ..compare import format_table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compare(args.model, args.images, args.variants, args.baseline, args.out,
                         pretrained=args.pretrained, preset=args.preset, jobs=args.jobs, report=not args.no_report,
                         save_outputs=args.save_outputs, threads=args.threads, trusted=args.trust_model)
    for w in caught:
        if issubclass(w.category, UserWarning) and "loky" not in w.filename:  # worker-pool chatter is not the user's
            print(f"warning: {w.message}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(format_table(result.comparison))
    print(f"\nresults: {result.path}/comparison.csv, per_image.csv" + ("" if args.no_report else ", report.html"))
    if args.save_outputs is not None:
        print(f"saved outputs: {args.save_outputs}/ (replay with --baseline saved:{args.save_outputs}[:VARIANT])")
    for name, err in result.errors.items():
        print(f"mutatenn: error: variant {name}: {err}", file=sys.stderr)
    if result.user_errors:
        return 2
    return 1 if result.errors else 0
