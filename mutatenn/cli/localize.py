"""`mutatenn localize`: where two variants of one model (or a campaign's original and one
of its mutants) start to differ, layer by layer; ``--reduce`` cuts out a minimal failing
subgraph, ``--repair`` analyses a conversion and repairs it."""
from __future__ import annotations

import datetime as dt
import sys
import warnings
from pathlib import Path

from ..errors import CampaignError, InputError, MutateNNError


def add_arguments(p) -> None:
    """The command's arguments (registered by `mutatenn.cli.build_parser`)."""
    from ..models.formats import model_forms
    from . import add_trust_arg

    p.add_argument("run_dir", type=Path, nargs="?", default=None,
                   help="a campaign run folder (with --mutant); or give --model, --a, --b and --images")
    p.add_argument("--mutant", default=None, metavar="ID", help="a killed or survived mutant of RUN_DIR to localise")
    p.add_argument("--stack", default=None, help="its stack (default: the run's only stack)")
    p.add_argument("--model", default=None, help=model_forms())
    p.add_argument("--a", default=None, metavar="VARIANT", help="the reference variant: tvm:TARGET[:O<level>]"
                   "[(via=PATH, model=FILE, schedule=...)], torch, or onnxruntime[(via=PATH, model=FILE)]")
    p.add_argument("--b", default=None, metavar="VARIANT", help="the variant compared with it")
    p.add_argument("--images", default=None, help="an image folder, or a bundled set: digits, photos (NAME:COUNT)")
    p.add_argument("--image", default=None, metavar="NAME", help="localise on this image only")
    p.add_argument("--pretrained", default="auto", choices=["auto", "require", "never"])
    add_trust_arg(p)
    p.add_argument("--preset", default=None, help="preprocessing preset (as for compare)")
    p.add_argument("--out", type=Path, default=None, help="output folder, new or empty (default: runs/localize-TIMESTAMP)")
    p.add_argument("--tolerance", type=float, default=None, metavar="T",
                   help="a layer diverges when B's relative L2 against A's exceeds T (default 1e-4)")
    p.add_argument("--per-round", type=int, default=None, metavar="N",
                   help="layers exposed per build (default 8): bounds memory on large models")
    p.add_argument("--max-images", type=int, default=None, metavar="N",
                   help="localise on at most N of the images whose labels differ (default 4)")
    p.add_argument("--no-curve", action="store_true",
                   help="read only what the bisection needs, not every layer (the curve is partial)")
    p.add_argument("--reduce", action="store_true",
                   help="also save the smallest contiguous subgraph that still diverges, with its inputs")
    p.add_argument("--passes", action="store_true",
                   help="A and B differ by their build pipelines (opt levels, passes, TIR options, a pass mutant): "
                   "bisect to the one pass or option whose addition first makes B diverge from A, then localise "
                   "the layer between the builds just before and after it")
    p.add_argument("--precision", action="store_true",
                   help="B is a precision=fp16 TVM variant (A: its float32 twin unless given): find the layers to keep "
                   "in float32 (keep_fp32) that bring B's top-1 agreement with A to --target-agreement, and print the "
                   "variant that reproduces it")
    p.add_argument("--target-agreement", type=float, default=None, metavar="T",
                   help="with --precision: the top-1 agreement with float32 to restore, in (0, 1] (default 0.99)")
    p.add_argument("--repair", action="store_true", help="conversion analysis: compare parameters, "
                   "hyperparameters and preprocessing of A and B, repair B and report label agreement before/after")


def cmd_localize(args) -> int:
    """Check the arguments here, then localise in a worker process (a mutant that crashes
    its build or run is reported, not fatal)."""
    from ..isolation import DONE, run_isolated
    from ..loading import source_family
    from ..localize import DEFAULTS, localize_job

    options = _check(args)
    out = args.out or Path("runs") / f"localize-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    kwargs = {"run_dir": args.run_dir, "mutant": args.mutant, "stack": args.stack, "model": args.model,
              "a": args.a, "b": args.b, "images": args.images, "pretrained": args.pretrained,
              "preset": args.preset, "image": args.image, "reduce": args.reduce, "repair": args.repair,
              "full_curve": not args.no_curve, "trusted": args.trust_model, "passes": args.passes,
              "precision": args.precision,
              **{k: (v if v is not None else DEFAULTS[k]) for k, v in options.items()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # worker-pool and framework chatter; the result says what matters
        outcome = next(run_isolated(localize_job, [(kwargs, str(out))], family=source_family(args.model or "")))
    if outcome.status != DONE:
        raise CampaignError(f"localize failed: the worker process {outcome.status}: {outcome.reason}")
    value = outcome.value
    if value["status"] == "input_error":
        err = MutateNNError(value["reason"])
        err.exit_code = value["code"]
        raise err
    for line in value["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    print(value["text"])
    files = value.get("files") or ["divergence.json", "divergence.csv", "localize.html"]
    print(f"\nresults: {out}/{', '.join(files)}")
    return 0


def _check(args) -> dict:
    """One line for a command that names neither form, or both."""
    if args.precision:
        return _check_precision(args)
    if args.target_agreement is not None:
        raise InputError("--target-agreement goes with --precision")
    campaign = args.run_dir is not None
    variants = [args.model, args.a, args.b, args.images]
    if campaign and any(v is not None for v in variants):
        raise InputError("give either RUN_DIR --mutant ID, or --model, --a, --b and --images, not both")
    if campaign and not args.mutant:
        raise InputError("RUN_DIR needs --mutant ID (a killed or survived mutant to localise)")
    if not campaign:
        if args.mutant or args.stack:
            raise InputError("--mutant and --stack need a campaign RUN_DIR")
        missing = [f"--{n}" for n, v in zip(("model", "a", "b", "images"), variants) if v is None]
        if missing:
            raise InputError(f"localize needs {', '.join(missing)} (or RUN_DIR --mutant ID)")
    return _numbers(args)


def _numbers(args) -> dict:
    for name in ("tolerance", "per_round", "max_images"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be positive")
    return {"tolerance": args.tolerance, "per_round": args.per_round, "max_images": args.max_images,
            "target_agreement": args.target_agreement}


def _check_precision(args) -> dict:
    """``--precision`` takes --model, --b (a precision=fp16 TVM variant), --images, optionally
    --a, and a target agreement in (0, 1]."""
    if args.run_dir is not None or args.mutant or args.stack:
        raise InputError("--precision searches a variant of a model: give --model, --b and --images, not RUN_DIR")
    clashing = [f"--{n}" for n in ("passes", "repair", "reduce", "image") if getattr(args, n)]
    if clashing:
        raise InputError(f"--precision cannot be combined with {', '.join(clashing)}")
    missing = [f"--{n}" for n in ("model", "b", "images") if getattr(args, n) is None]
    if missing:
        raise InputError(f"localize --precision needs {', '.join(missing)}")
    target = args.target_agreement
    if target is not None and not 0 < target <= 1:
        raise InputError(f"--target-agreement must be in (0, 1], got {target:g}")
    return _numbers(args)
