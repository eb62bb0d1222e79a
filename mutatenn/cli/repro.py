"""`mutatenn repro RUN_DIR MUTANT_ID --stack S`: rebuild one killed, crashed or timed-out
mutant of a campaign and run the images that killed it (optionally as a standalone script)."""
from __future__ import annotations

import warnings

from ..errors import InputError


def cmd_repro(args) -> int:
    from ..repro import case_preprocessing, format_reproduction, open_case, reproduce

    if args.timeout is not None and args.timeout <= 0:
        raise InputError("--timeout must be a positive number of seconds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # worker-pool and framework chatter; the result says what matters
        case = open_case(args.run_dir, args.mutant_id, args.stack, all_images=args.all_images)
        result = reproduce(case, script=args.script, timeout=args.timeout, trusted=args.trust_model)
    print(f"preprocessing: {case_preprocessing(case)}")  # the run's, as every command says first
    print(format_reproduction(result))
    return 0 if result.reproduced else 1
