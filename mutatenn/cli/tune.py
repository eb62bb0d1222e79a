"""`mutatenn tune`: MetaSchedule tuning records for one model on one CPU target, used by
builds with ``schedule=tuned`` (`mutatenn.tuning`)."""
from __future__ import annotations

import warnings

from ..errors import InputError


def cmd_tune(args) -> int:
    """Check every argument before the model is loaded (tuning takes minutes; a typo
    should cost a second), then tune and say where the records went."""
    from .. import tuning
    from ..build import check_runnable, parse_target

    target = parse_target(args.target)
    tuning.check_tunable(target)
    check_runnable(target)  # candidates are measured here: the CPU must have the target's features
    if args.trials < 1:
        raise InputError(f"--trials must be at least 1, not {args.trials}")
    per_task = getattr(args, "max_trials_per_task", None)
    if per_task is not None and per_task < 1:
        raise InputError(f"--max-trials-per-task must be at least 1, not {per_task}")
    via = getattr(args, "via", "") or ""
    db_dir = tuning.database_dir(args.model, target, via)
    if tuning.has_database(db_dir) and not args.force:
        raise InputError(f"tuning records for {args.model!r} on {target.name!r} already exist in {db_dir}; "
                         "pass --force to tune again and replace them")
    from ..loading import UntrainedWeightsWarning, load_program

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedWeightsWarning)
        program = load_program(args.model, args.pretrained, via=via, trusted=getattr(args, "trust_model", False))
    if any(issubclass(w.category, UntrainedWeightsWarning) for w in caught):
        print("note: seeded weights (no pretrained weights cached); schedules do not depend on weights")
    report = tuning.tune(program.mod, target, args.trials, db_dir, max_trials_per_task=per_task,
                         seed=getattr(args, "seed", 0), model_spec=args.model)
    _print_summary(program.spec, target.name, report)
    return 0


def _print_summary(model: str, target: str, report) -> None:
    """What a tuned build will get, per kernel, and where the records are."""
    used = len(report.best_us) - len(report.kept_default)
    print(f"tuned {model} for {target} in {report.seconds:.0f} s: {report.tasks} tasks, {report.trials} trials "
          f"({report.failed_trials} failed; {report.strategy} search, {report.cost_model} cost model)")
    print(f"  {used} tasks get their tuned schedule (faster than the default schedule as measured)")
    print(f"  {len(report.kept_default)} tasks keep the default schedule (their best record measured slower)")
    if report.untuned:
        hint = " (fewer trials than tasks)" if report.trials < report.tasks else ""
        print(f"  {len(report.untuned)} tasks without a record keep the default schedule{hint}")
    print(f"records: {report.db_dir}")
    print(f"use them: a stack or variant with schedule=tuned, e.g. tvm:{target}:O2(schedule=tuned)")
