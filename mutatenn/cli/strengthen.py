"""`mutatenn strengthen RUN_DIR --stack S --out DIR`: new images that kill survived mutants."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..strengthen import MAX_EPSILON, TRANSFORMS

    p.add_argument("run_dir", type=Path, help="a campaign run folder")
    p.add_argument("--stack", required=True, help="the stack whose survived mutants to kill")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder (new or empty; a folder of an interrupted run with the same settings resumes)")
    p.add_argument("--sample", type=int, default=None, metavar="N", help="search for N survivors drawn with --seed, weak "
                   "ones (outputs moved, below the kill criterion) before no_effect ones (default: every survivor)")
    p.add_argument("--budget", type=int, default=200, metavar="Q",
                   help="queries per mutant, each one original and one mutant inference (default 200)")
    p.add_argument("--epsilon", type=int, default=8, metavar="E",
                   help=f"L-infinity bound of the pixel perturbation in grey levels, 0..{MAX_EPSILON} (default 8; "
                   "0: transforms only)")
    p.add_argument("--transforms", default=None, metavar="NAME[=BOUND],...",
                   help="natural transforms with bounded parameters: "
                   + "; ".join(f"{t.name} ({t.doc}; default {t.default:g}, at most {t.limit:g})"
                               for t in TRANSFORMS.values()))
    p.add_argument("--seeds", type=int, default=3, metavar="K",
                   help="seed images per mutant, those whose outputs already differ most first (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sample and the search (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="mutants searched at once, each in its own worker process")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on one mutant's builds and search after SECONDS (default: the campaign's "
                   "run.timeout plus 2 s per query)")
    p.add_argument("--no-rescore", action="store_true",
                   help="skip the campaign on old + new images (score after, cover)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_strengthen(args) -> int:
    from ..strengthen import format_result, make_request, strengthen

    request = make_request(args.run_dir, args.stack, args.budget, args.epsilon, args.transforms, args.sample,
                           args.seeds, args.seed, args.jobs)
    result = strengthen(request, args.out, quiet=args.quiet, rescore_run=not args.no_rescore, timeout=args.timeout)
    print(format_result(result))
    print(f"\noutputs: {Path(args.out).resolve()}")
    return 0
