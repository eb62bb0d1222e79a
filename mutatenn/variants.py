"""Variants of `mutatenn compare`: ``tvm:TARGET[:O<level>]``, ``torch``, ``onnxruntime``."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .build import DEFAULT_OPT_LEVEL, BuildOptions, Target, parse_target
from .errors import UserError

NATIVE = ("torch", "onnxruntime")
_OPT_SUFFIX = re.compile(r"^(?P<target>.+?)(?::O(?P<level>\d))?$")


@dataclass(frozen=True)
class Variant:
    """One way of deploying a program: a TVM stack or a framework's own runtime."""

    text: str
    kind: str  # tvm, torch or onnxruntime
    target: Target | None = None
    options: BuildOptions | None = None


def parse_variant(text: str) -> Variant:
    text = text.strip()
    if text in NATIVE:
        return Variant(text, text)
    if not text.startswith("tvm:"):
        raise UserError(f"unknown variant {text!r}: expected tvm:TARGET[:O<level>], torch or onnxruntime")
    rest = text[4:]
    match = _OPT_SUFFIX.match(rest)
    if not rest or not match:
        raise UserError(f"variant {text!r} names no target")
    level = int(match["level"]) if match["level"] is not None else DEFAULT_OPT_LEVEL
    if level > 3:
        raise UserError(f"variant {text!r}: opt level must be O0..O3")
    target = parse_target(match["target"])
    return Variant(text, "tvm", target, BuildOptions(opt_level=level))


def parse_variant_list(text: str) -> list[Variant]:
    items = [t for t in (s.strip() for s in text.split(",")) if t]
    if not items:
        raise UserError("--variants names no variant")
    seen = set()
    out = []
    for item in items:
        if item in seen:
            raise UserError(f"variant {item!r} is given twice")
        seen.add(item)
        out.append(parse_variant(item))
    return out
