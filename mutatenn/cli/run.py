"""`mutatenn run CONFIG.toml` and `mutatenn report RUN_DIR`."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError

FAIL_UNDER_EXIT = 3


def cmd_run(args) -> int:
    from ..api import run_campaign

    if args.jobs is not None and args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:
        raise InputError(f"--fail-under must be a percentage in 0..100, not {args.fail_under:g}")
    # Jobs sent to a Dask cluster run on its machines: this one's CPU and GPU are not checked.
    run = run_campaign(args.config, args.out, jobs=args.jobs, scheduler=args.scheduler, quiet=args.quiet,
                       report=not args.no_report, fast_kill=True if args.fast_kill else None,
                       build_cache=args.build_cache, share_builds=False if args.no_share_builds else None,
                       reuse=args.reuse, reuse_or_fresh=True if args.reuse_or_fresh else None,
                       trusted=args.trust_model)
    return finish(run, args.fail_under, args.fail_under_bound)


def finish(result, fail_under: float | None, bound: str = "score") -> int:
    """Print the scores and the folder; the exit status the gate asks for. ``bound``:
    ``score`` compares the score with ``fail_under``, ``lower`` the lower end of its 95%
    interval."""
    from ..campaign import format_scores, stacks_below

    print(format_scores(result.scores))
    print(f"\noutputs: {Path(result.path).resolve()}")
    if result.report is not None:
        print(f"report:  {Path(result.report).resolve()}")
    elif result.report_error:
        print(f"mutatenn: warning: report.html not written: {result.report_error}", file=sys.stderr)
    if fail_under is not None:
        below = stacks_below(result.scores, fail_under, bound)
        for stack, value in below:
            what = "mutation score" if bound == "score" else "lower bound of the 95% interval of the mutation score"
            print(f"mutatenn: {what} on stack {stack!r} is {value:.1f}%, below --fail-under {fail_under:g}%"
                  + (" (--fail-under-bound lower)" if bound == "lower" else ""), file=sys.stderr)
        if below:
            return FAIL_UNDER_EXIT
    return 0


def cmd_report(args) -> int:
    from ..campaign import render_run_report

    if not (Path(args.run_dir) / "run.json").is_file():
        raise InputError(f"{str(args.run_dir)!r} is not a run folder (run.json missing)")
    path, error = render_run_report(Path(args.run_dir))
    if path is None:
        raise InputError(f"cannot render the report of {str(args.run_dir)!r}: {error}")
    print(f"report: {Path(path).resolve()}")
    return 0
