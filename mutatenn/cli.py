"""The `mutatenn` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from .errors import UserError

DEFAULT_DEMO_VARIANTS = "tvm:cpu:O0,tvm:cpu:O2,tvm:cpu-generic:O3,torch,onnxruntime"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="digits, torchvision:NAME, a .onnx or .pt2 file")
    p.add_argument("--pretrained", default="auto", choices=["auto", "require", "never"],
                   help="torchvision weights: from the local cache if there (auto), demanded (require), or seeded (never)")
    p.add_argument("--preset", default=None, help="preprocessing preset: imagenet, inception, caffe, raw")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mutatenn", description="Mutation and differential testing of "
                                     "image-recognition models on TVM's compiler IR (Relax + TensorIR).")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="deploy one model as several variants and compare each with a baseline")
    _add_model_args(p)
    p.add_argument("--images", required=True, help="an image folder, or a bundled set: digits, photos (NAME:COUNT for the first COUNT)")
    p.add_argument("--variants", required=True, help="comma-separated: tvm:TARGET[:O<level>], torch, onnxruntime")
    p.add_argument("--baseline", required=True, help="the variant the others are compared with")
    p.add_argument("--out", required=True, type=Path, help="output folder (must be new or empty)")
    p.add_argument("--jobs", type=int, default=1, help="variants run at once, each in its own worker process")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")

    p = sub.add_parser("run", help="run a mutation campaign described by a TOML config (see examples/)")
    p.add_argument("config", type=Path, help="campaign config (TOML)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/campaign-TIMESTAMP); an interrupted run resumes in its folder")
    p.add_argument("--jobs", type=int, default=None, help="jobs at once, each in its own worker process "
                   "(default: the config's run.jobs, else 1)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run the jobs on an existing Dask cluster instead of local worker processes")
    p.add_argument("--fail-under", type=float, default=None, metavar="SCORE",
                   help="exit 3 when any stack's mutation score (percent) is below SCORE")
    p.add_argument("--quiet", action="store_true", help="no progress bar (for CI logs)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")

    p = sub.add_parser("report", help="(re)render report.html of a run folder")
    p.add_argument("run_dir", type=Path, help="a campaign or comparison run folder")

    p = sub.add_parser("demo", help="the bundled digits CNN across several deployment stacks")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/demo-TIMESTAMP)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))

    p = sub.add_parser("mutants", help="list the mutants of a model, or the operator catalogue")
    p.add_argument("--model", help="digits, torchvision:NAME, a .onnx or .pt2 file")
    p.add_argument("--pretrained", default="auto", choices=["auto", "require", "never"])
    p.add_argument("--operators", default=None, help="comma-separated operator names")
    p.add_argument("--level", default=None, help="graph, tir, pass or weight (comma-separated for several)")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument("--show", default=None, metavar="ID", help="print one mutant with its IR diff")
    p.add_argument("--list-operators", action="store_true", help="print the operator catalogue")

    p = sub.add_parser("targets", help="list the named deployment targets")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        os.environ.setdefault("TVM_LOG_DEBUG", "0")
    try:
        return _dispatch(args)
    except UserError as err:
        if args.debug:
            raise
        print(f"mutatenn: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("mutatenn: interrupted", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    if args.command == "compare":
        return cmd_compare(args)
    if args.command == "run":
        from .campaign_cli import cmd_run

        return cmd_run(args)
    if args.command == "report":
        from .campaign_cli import cmd_report

        return cmd_report(args)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.out, args.jobs)
    if args.command == "mutants":
        from .mutants_cli import cmd_mutants

        return cmd_mutants(args)
    if args.command == "targets":
        from .build import CPU_TARGETS, host_cpu_name

        for name, mcpu in CPU_TARGETS.items():
            print(f"{name:14s} LLVM, mcpu={mcpu or host_cpu_name()}")
        print(f"{'cuda':14s} CUDA (built anywhere; runs only where a GPU exists)")
        print(f"{'rpc://H:P[/T]':14s} TVM RPC server at H:P, code built for target T (default cpu-generic)")
        return 0
    raise UserError(f"unknown command {args.command!r}")


def cmd_compare(args) -> int:
    from .compare import compare, format_table

    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compare(args.model, args.images, args.variants, args.baseline, args.out,
                         pretrained=args.pretrained, preset=args.preset, jobs=args.jobs, render=not args.no_report)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    print(format_table(result.table))
    print(f"\nresults: {result.out_dir}/comparison.csv, per_image.csv"
          + ("" if args.no_report else ", report.html"))
    for name, err in result.errors.items():
        print(f"mutatenn: error: variant {name}: {err}", file=sys.stderr)
    if result.user_errors:
        return 2
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
