"""Runners: one name -> class table, a lazy import per entry.

A variant ``NAME[:OPTIONS]`` names its runner by ``NAME``. Each entry is a
``"module:Class"`` reference imported only when that runner is asked for, so TensorFlow
and torchvision never meet in one process unless a job asks for both. Jobs carry the
reference itself, so a runner registered in the coordinator (`register_runner`) is
found by worker processes too. Adding a runner = one file + one line in `RUNNERS`.
"""
from __future__ import annotations

import dataclasses
import re
from importlib import import_module

from ..errors import InputError, TargetError
from .base import Runner, RunOutput, Variant

__all__ = ["RUNNERS", "RunOutput", "Runner", "Variant", "register_runner", "runner_class", "runner_ref",
           "make_runner", "variant_program", "program_for", "parse_variant", "parse_variant_list", "export_torch_to_onnx"]

RUNNERS: dict[str, str] = {
    "tvm": "mutatenn.runners.tvm_relax:TVMRunner",
    "torch": "mutatenn.runners.pytorch_eager:TorchRunner",
    "onnxruntime": "mutatenn.runners.onnx_runtime:OnnxRuntimeRunner",
    "keras": "mutatenn.runners.keras_eager:KerasRunner",
    "tflite": "mutatenn.runners.tflite_interpreter:TFLiteRunner",
}


_NAME = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?P<rest>[:(].*)?$")


def register_runner(name: str, ref: str) -> None:
    """Add a runner by name: ``ref`` is ``"package.module:Class"`` (a `Runner` subclass)."""
    if not name.isidentifier():
        raise ValueError(f"runner name {name!r} must be an identifier")
    if name in RUNNERS and RUNNERS[name] != ref:
        raise ValueError(f"runner {name!r} is already registered as {RUNNERS[name]}")
    RUNNERS[name] = ref


def runner_ref(name: str) -> str:
    """The table's ``module:Class`` for a runner name."""
    if name not in RUNNERS:
        raise TargetError(f"unknown runner {name!r} (known: {', '.join(RUNNERS)})")
    return RUNNERS[name]


def runner_class(ref: str) -> type[Runner]:
    """A runner class from a name in the table or a ``module:Class`` reference."""
    ref = RUNNERS.get(ref, ref)
    module, _, cls = ref.partition(":")
    return getattr(import_module(module), cls)


def parse_variant(text: str, ref: str | None = None) -> Variant:
    """``NAME[:OPTIONS][(key=value,...)]`` -> the Variant its runner parses (``tvm:cpu:O3``,
    ``torch``, ``onnxruntime(via=tf2onnx)``). ``ref`` names the runner class directly (a
    worker process parsing a job's variant)."""
    text = text.strip()
    match = _NAME.match(text)
    name, rest = (match["name"], match["rest"] or "") if match else (text, "")
    rest = rest[1:] if rest.startswith(":") else rest
    if ref is None and name not in RUNNERS:
        raise TargetError(f"unknown variant {text!r}: expected {', '.join(_forms())}")
    return runner_class(ref or name).parse(text, rest)


def _forms() -> list[str]:
    return [runner_class(n).syntax or n for n in RUNNERS]


def split_variants(text: str) -> list[str]:
    """Comma-separated variants; commas inside a variant's ``(...)`` options do not split."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [t for t in (s.strip() for s in items + [current]) if t]


def parse_variant_list(text: str) -> list[Variant]:
    items = split_variants(text)
    if not items:
        raise InputError("--variants names no variant")
    seen, out = set(), []
    for item in items:
        if item in seen:
            raise InputError(f"variant {item!r} is given twice")
        seen.add(item)
        out.append(parse_variant(item))
    return out


def variant_program(variant: Variant, spec: str, pretrained: str, preset: str | None, ref: str | None = None,
                    trusted: bool = False):
    """The program a variant's runner needs: the source converted along its import path, and
    imported into Relax only for runners that build (cached per worker process)."""
    from ..loading import cached_program, cached_source

    cls = runner_class(ref or runner_ref(variant.kind))
    via = cls.resolve_via(variant, cached_source(spec, pretrained, preset, trusted).framework)
    return cached_program(spec, pretrained, preset, via, cls.builds, trusted)


def program_for(variant: Variant, program, ref: str | None = None):
    """``program`` itself when the variant's runner takes its import path, else the same
    source along the path the runner needs (in-process runs of a loaded program)."""
    from ..loading import program_from_source

    cls = runner_class(ref or runner_ref(variant.kind))
    if program.source is None:
        return program
    via = cls.resolve_via(variant, program.framework)
    if via == program.via and (program.mod is not None or not cls.builds):
        return program
    return program_from_source(program.source, via, cls.builds)


def make_runner(variant: Variant, program, mod=None, ref: str | None = None) -> Runner:
    """The runner for ``variant`` (``ref`` overrides the table, as jobs carry it)."""
    return runner_class(ref or runner_ref(variant.kind))(variant, program, mod)


def export_torch_to_onnx(model, input_shape, path):
    """Export a PyTorch model to ONNX (kept here for scripts that export by hand)."""
    from .onnx_runtime import export_torch_to_onnx as export

    return export(model, input_shape, path)


def with_host_cpu(variant, host_cpu: str):
    """Target ``cpu`` as the coordinator resolved it: the build's identity (its artifact
    key) names the coordinator's CPU, so a worker on another machine must build for it too."""
    target = getattr(variant, "target", None)
    if not host_cpu or target is None or target.name != "cpu":
        return variant
    return dataclasses.replace(variant, target=dataclasses.replace(target, spec={**target.spec, "mcpu": host_cpu}))
