"""The `mutatenn` command line: one module per command; the only place that turns a typed
error (`mutatenn.errors.MutateNNError`) into one line and its exit code."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import MutateNNError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from ..models.formats import model_forms

    p.add_argument("--model", required=True, help=model_forms())
    p.add_argument("--pretrained", default="auto", choices=["auto", "require", "never"],
                   help="torchvision/Keras weights: from the local cache if there (auto), demanded (require), "
                   "or seeded (never)")
    p.add_argument("--preset", default=None, help="preprocessing preset: imagenet, inception, caffe, raw, tf, pixels")
    add_trust_arg(p)


def add_trust_arg(p: argparse.ArgumentParser) -> None:
    """``--trust-model``: the one switch that lets a model file skip its safety check."""
    p.add_argument("--trust-model", action="store_true",
                   help="load the model file even if it can run code or reach outside its folder when loaded or run "
                   "(pickled weights, Lambda layers, file/network/Python ops, custom ops, external data elsewhere): "
                   "only for files you trust")


def _model_help() -> str:
    from ..models.formats import model_forms

    return model_forms()


def _variant_forms() -> list[str]:
    from ..runners import RUNNERS, runner_class

    return [runner_class(name).syntax or name for name in RUNNERS]


def _variants_help() -> str:
    """--variants help: every runner's form, the import paths and examples (argparse keeps the lines)."""
    from ..build.options import options_help
    from ..frameworks import PATHS

    paths = "\n".join(f"  {p.name:<13}{'/'.join(p.accepts)} -> {p.form}: {p.summary}" for p in PATHS.values())
    return ("comma-separated variants:\n  " + "\n  ".join(_variant_forms())
            + "\noptions (key=value; the same keys as a campaign's [[stacks]]):\n  " + "\n  ".join(options_help())
            + "\nimport paths (via=):\n" + paths
            + '\nexamples: "tflite,onnxruntime(via=tf2onnx),tvm:cpu:O3(via=tflite)"'
            + '  "onnxruntime(via=torch.onnx),tvm:cpu(via=torch.onnx)"'
            + '\ncompression: "onnxruntime(quantize=int8-static),onnxruntime(precision=fp16),tvm:cpu(precision=fp16),'
            + 'tvm:cpu(quantize=int8-static),tvm:cpu(prune=0.5)"')

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mutatenn", description="Mutation and differential testing of "
                                     "image-recognition models on TVM's compiler IR (Relax + TensorIR).")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="deploy one model as several variants and compare each with a baseline",
                       formatter_class=argparse.RawTextHelpFormatter)
    _add_model_args(p)
    p.add_argument("--images", required=True, help="an image folder, or a bundled set: digits, photos (NAME:COUNT for the first COUNT)")
    p.add_argument("--variants", required=True, help=_variants_help())
    p.add_argument("--baseline", required=True, help="the variant the others are compared with, or saved outputs: "
                   "saved:DIR[:VARIANT] (DIR written by --save-outputs; VARIANT default: its baseline)")
    p.add_argument("--out", required=True, type=Path, help="output folder (must be new or empty)")
    p.add_argument("--jobs", type=int, default=1, help="variants run at once, each in its own worker process")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads every runner uses (TVM's pool, ONNX Runtime intra-op, torch, TFLite), the same for all "
                   "so latencies compare (default: the cores MutateNN may use); recorded in comparison.csv and run.json")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--save-outputs", type=Path, default=None, metavar="DIR",
                   help="also save every variant's outputs (logits .npy + manifest.json) to DIR (new or empty)")

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
    p.add_argument("--fail-under-bound", choices=["score", "lower"], default="score",
                   help="what --fail-under compares with SCORE: the score itself (default), or the lower end "
                   "of its 95%% Wilson interval (fail unless the score is surely above SCORE)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (for CI logs)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--fast-kill", action="store_true", help="stop running images on a mutant once the kill "
                   "criterion is met (the config's run.fast_kill)")
    p.add_argument("--build-cache", type=Path, default=None, metavar="DIR",
                   help="reuse builds stored in DIR by earlier runs, and store new ones there (run.build_cache)")
    p.add_argument("--no-share-builds", action="store_true",
                   help="build every mutant in full instead of linking the original's kernels (run.share_builds)")
    p.add_argument("--reuse", type=Path, default=None, metavar="OLD_RUN",
                   help="take the builds and outputs of OLD_RUN whose inputs are the same and build only the rest "
                   "(run.reuse); exit 2 when nothing of OLD_RUN can be reused")
    p.add_argument("--reuse-or-fresh", action="store_true",
                   help="with --reuse: when OLD_RUN cannot be reused, say why and run fresh (run.reuse_or_fresh)")
    add_trust_arg(p)

    p = sub.add_parser("export", help="write a campaign's results in a format other tools read: the mutation-"
                       "testing report schema (JSON) or JUnit XML")
    p.add_argument("run_dir", type=Path, help="a campaign run folder")
    p.add_argument("--format", required=True, metavar="FORMAT",
                   help="mutation-testing-report (JSON for mutation-testing-elements and dashboards) or junit (XML)")
    p.add_argument("--out", required=True, type=Path, help="the file to write (must not exist)")

    p = sub.add_parser("report", help="(re)render report.html of a run folder")
    p.add_argument("run_dir", type=Path, help="a campaign or comparison run folder")

    p = sub.add_parser("demo", help="the bundled digits CNN across several deployment stacks")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/demo-TIMESTAMP)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))

    p = sub.add_parser("mutants", help="list the mutants of a model, or the operator catalogue")
    p.add_argument("--model", help=_model_help())
    p.add_argument("--pretrained", default="auto", choices=["auto", "require", "never"])
    add_trust_arg(p)
    p.add_argument("--via", default="", help="the import path of the program to mutate (default: the framework's)")
    p.add_argument("--operators", default=None, help="comma-separated operator names")
    p.add_argument("--level", default=None, help="graph, tir, pass or weight (comma-separated for several)")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument("--show", default=None, metavar="ID", help="print one mutant with its IR diff")
    p.add_argument("--list-operators", action="store_true", help="print the operator catalogue")

    p = sub.add_parser("tune", help="tune a model's kernels for a CPU target with MetaSchedule (for schedule=tuned builds)")
    _add_model_args(p)
    p.add_argument("--target", default="cpu", help="cpu, cpu-generic, cpu-avx2 or cpu-avx512 (measured on this machine)")
    p.add_argument("--via", default="", help="the import path whose kernels to tune (default: the framework's)")
    p.add_argument("--trials", type=int, required=True,
                   help="schedule candidates measured in all (at least one per kernel: digits has 8, mobilenet_v2 57)")
    p.add_argument("--max-trials-per-task", type=int, default=None, help="cap per kernel (default: none)")
    p.add_argument("--seed", type=int, default=0, help="search seed")
    p.add_argument("--force", action="store_true", help="replace this model's existing tuning records for this target")

    p = sub.add_parser("repro", help="rebuild one killed, crashed or timed-out mutant of a campaign and rerun "
                       "the images that killed it (exit 0: same verdict again, 1: not)")
    p.add_argument("run_dir", type=Path, help="a campaign run folder")
    p.add_argument("mutant_id", help="the mutant's id (OPERATOR#SITE, or VIA/OPERATOR#SITE with several import paths)")
    p.add_argument("--stack", default=None, help="the stack (default: the run's only stack)")
    p.add_argument("--script", type=Path, default=None, metavar="FILE.py",
                   help="also write a standalone script (TVM and NumPy only) with the saved IR, library, "
                   "inputs and outputs in FILE_files/ beside it")
    p.add_argument("--all-images", action="store_true", help="run every image, not only those that killed it")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on the worker after SECONDS (default: the campaign's run.timeout)")
    add_trust_arg(p)

    p = sub.add_parser("targets", help="list the named deployment targets")

    p = sub.add_parser("localize", help="find the first layer where two variants (or a mutant and its "
                       "original) diverge; --reduce: a minimal failing subgraph; --repair: conversion faults")
    from .localize import add_arguments as add_localize_arguments

    add_localize_arguments(p)

    p = sub.add_parser("strengthen", help="search new images that kill the survived mutants of a campaign's stack, "
                       "and score the stack again with them")
    from .strengthen import add_arguments as add_strengthen_arguments

    add_strengthen_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        os.environ.setdefault("TVM_LOG_DEBUG", "0")
    from ..frameworks.quiet import quiet_tensorflow

    quiet_tensorflow()  # before any worker starts: workers inherit the environment
    try:
        return _dispatch(args)
    except MutateNNError as err:
        if args.debug:
            raise
        for line in str(err).splitlines() or [""]:  # several config problems: one line each
            print(f"mutatenn: error: {line}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("mutatenn: interrupted", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    from importlib import import_module

    module, function = COMMANDS[args.command]
    return getattr(import_module(f"mutatenn.cli.{module}"), function)(args)


# command -> (module in mutatenn.cli, function): a new command is one module and one line.
COMMANDS = {
    "compare": ("compare", "cmd_compare"),
    "run": ("run", "cmd_run"),
    "report": ("run", "cmd_report"),
    "export": ("export", "cmd_export"),
    "demo": ("demo", "cmd_demo"),
    "mutants": ("mutants", "cmd_mutants"),
    "targets": ("targets", "cmd_targets"),
    "tune": ("tune", "cmd_tune"),
    "repro": ("repro", "cmd_repro"),
    "localize": ("localize", "cmd_localize"),
    "strengthen": ("strengthen", "cmd_strengthen"),
}


if __name__ == "__main__":
    raise SystemExit(main())
