"""The one build-option schema: every option of a stack or a variant, declared once.

Each `BuildOption` line says its key (the same in a ``[[stacks]]`` table and in a
variant's ``(key=value, ...)``), the kind of value it takes (which reads TOML values and
variant text alike and says what it expects), its default, which runners take it, how a
pass mutant's override combines with a stack's value, and how it enters the build key
and the build label. The TOML stack reader (`mutatenn.config`), the variant grammar
(`mutatenn.runners`), `BuildOptions` itself (its fields are made from the table), build
keys, labels and the run folder's stack description are all derived from `OPTIONS`.

Adding a build option = one line in `OPTIONS` plus the code that honours it.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mutators.passes import (
    OPT_LEVEL_PASSES,
    OPTIONAL_PASSES,
    SWITCHABLE_PASSES,
    TIR_OPTION_NAMES,
    tir_option_error,
    tir_options_canonical,
)

from ..errors import InputError

__all__ = ["OPTIONS", "BuildOption", "BuildOptions", "OptionError", "DEFAULT_OPT_LEVEL", "SCHEDULES",
           "DEFAULT_SCHEDULE", "VARIANT_GRAMMAR", "option", "options_help", "stack_keys", "options_from_table",
           "options_from_text", "options_text", "database_digest"]

DEFAULT_OPT_LEVEL = 2
# How PrimFuncs get their loop schedule on LLVM targets: "none" (TVM's naive loops),
# "default" (MutateNN's rule-based schedule, `mutatenn.schedules`), "tuned" (MetaSchedule
# records from `mutatenn tune`, the default schedule for kernels without one).
SCHEDULES = ("none", "default", "tuned")
DEFAULT_SCHEDULE = "default"
VARIANT_GRAMMAR = "tvm:TARGET[:O<level>][(key=value, ...)] or RUNNER[(key=value, ...)]"


class OptionError(ValueError):
    """A value an option does not take; ``subkey`` names the part of a table that is wrong."""

    def __init__(self, message: str, subkey: str = ""):
        super().__init__(message)
        self.subkey = subkey


# ------------------------------------------------------------------ kinds of value
class Kind:
    """How one option's values are read: ``read`` takes a TOML or Python value, ``parse``
    the text of a variant; both give the canonical value (hashable) or raise OptionError."""

    def read(self, value):
        return value

    def parse(self, text: str):
        return self.read(text)

    def text(self, value) -> str:
        """The value as a variant writes it (``parse(text(v)) == v``)."""
        return str(value)


class Flag(Kind):
    def read(self, value):
        if not isinstance(value, bool):
            raise OptionError(f"expected true or false, got {value!r}")
        return value

    def parse(self, text: str):
        if text.lower() not in ("true", "false"):
            raise OptionError(f"expected true or false, got {text!r}")
        return text.lower() == "true"

    def text(self, value) -> str:
        return "true" if value else "false"


class OptionalFlag(Flag):
    """true, false, or unset (None: the opt level decides)."""

    def read(self, value):
        return None if value is None else super().read(value)


@dataclass(frozen=True)
class Choice(Kind):
    """One of a fixed list of words; ``values`` may be a function (a table filled later)."""

    values: tuple | Callable[[], tuple]

    def choices(self) -> tuple:
        return tuple(self.values()) if callable(self.values) else self.values

    def read(self, value):
        if value not in self.choices():
            raise OptionError(f"must be one of {', '.join(self.choices())}, not {value!r}")
        return value


@dataclass(frozen=True)
class Level(Kind):
    """An optimisation level."""

    levels: tuple = tuple(OPT_LEVEL_PASSES)

    def read(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(f"expected an integer, got {value!r}")
        if value not in self.levels:
            raise OptionError(f"must be {min(self.levels)}..{max(self.levels)}, got {value!r}")
        return value

    def parse(self, text: str):
        return self.read(int(text) if text.isdigit() else text)


@dataclass(frozen=True)
class PassList(Kind):
    """Pass names: a TOML list, or names joined by ``+`` in a variant."""

    known: tuple

    def read(self, value):
        if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
            raise OptionError("expected a list of pass names")
        for name in value:
            if name not in self.known:
                raise OptionError(f"unknown pass {name!r} (known: {', '.join(self.known)})")
        return tuple(dict.fromkeys(value))

    def parse(self, text: str):
        return self.read([p.strip() for p in text.split("+") if p.strip()])

    def text(self, value) -> str:
        return "+".join(value)


class TirTable(Kind):
    """TIR lowering options (`mutators.passes.TIR_OPTIONS`): a TOML table, or
    ``tir_options.NAME=value`` entries in a variant; sorted pairs, TVM's defaults dropped."""

    def read(self, value):
        if isinstance(value, dict):
            for name, setting in value.items():
                error = tir_option_error(name, setting)
                if error:
                    raise OptionError(error, subkey=name)
        elif not isinstance(value, (list, tuple)) or not all(
                isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in value):  # [name, value] pairs
            raise OptionError("expected a table, e.g. { disable_vectorize = true }")
        try:
            return tir_options_canonical(value)
        except (ValueError, TypeError) as err:
            raise OptionError(str(err)) from None

    def parse_entry(self, name: str, text: str):
        """One ``tir_options.NAME=value`` entry of a variant: the value as TOML would give
        it, checked (`BuildOptions` canonicalises the whole table)."""
        value: Any = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        elif text.lstrip("-").isdigit():
            value = int(text)
        self.read({name: value})
        return value

    def text(self, value) -> str:
        return ", ".join(f"tir_options.{n}={json.dumps(v)}" for n, v in value)


class Text(Kind):
    def read(self, value):
        if not isinstance(value, str) or not value.strip():
            raise OptionError(f"expected a non-empty string, got {value!r}")
        return value.strip()


@dataclass(frozen=True)
class Count(Kind):
    """A whole number of at least ``minimum``."""

    minimum: int = 1

    def read(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(f"expected a whole number, got {value!r}")
        if value < self.minimum:
            raise OptionError(f"must be at least {self.minimum}, got {value}")
        return value

    def parse(self, text: str):
        return self.read(int(text) if text.isdigit() else text)


class Prune(Kind):
    """A pruning: an amount in [0, 1) (global magnitude pruning), or a table ``{ amount,
    method }``; a variant writes ``prune=0.5`` or ``prune=0.5:channel``. The canonical value
    is ``(amount, method)``, or ``()`` for none."""

    def read(self, value):
        from ..compression import PRUNE_METHODS

        if isinstance(value, (tuple, list)) and len(value) in (0, 2):
            value = dict(zip(("amount", "method"), value))
        if isinstance(value, dict):
            unknown = set(value) - {"amount", "method"}
            if unknown:
                raise OptionError(f"unknown key {sorted(unknown)[0]!r} (known: amount, method)")
            amount, method = value.get("amount", 0.0), value.get("method", "magnitude")
        else:
            amount, method = value, "magnitude"
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise OptionError(f"amount must be a number in [0, 1), got {amount!r}")
        if not 0 <= amount < 1:
            raise OptionError(f"amount must be in [0, 1), got {amount!r}")
        if method not in PRUNE_METHODS:
            raise OptionError(f"method must be one of {', '.join(PRUNE_METHODS)}, not {method!r}")
        return (float(amount), method) if amount > 0 else ()

    def parse(self, text: str):
        amount, _, method = text.partition(":")
        try:
            number = float(amount)
        except ValueError:
            raise OptionError(f"expected an amount in [0, 1) (prune=0.5 or prune=0.5:channel), got {text!r}") from None
        return self.read({"amount": number, "method": method or "magnitude"})

    def text(self, value) -> str:
        return f"{value[0]:g}:{value[1]}" if value else "0"


@dataclass(frozen=True)
class BindingList(Kind):
    """Names of bindings of a Relax ``main`` (``lv12``, as `mutatenn localize` reports them):
    a TOML list, or names joined by ``+`` in a variant; sorted by their number, so one set
    has one build key. Whether ``main`` has them is checked when the program is compressed."""

    def read(self, value):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
            raise OptionError("expected binding names of main, e.g. [\"lv12\", \"lv40\"] (a variant: lv12+lv40)")
        for name in value:
            if not _BINDING_NAME.match(name):
                raise OptionError(f"{name!r} is not a binding name (names look like lv12)")
        return tuple(sorted(dict.fromkeys(value), key=_natural))

    def parse(self, text: str):
        return self.read([n.strip() for n in text.split("+") if n.strip()])

    def text(self, value) -> str:
        return "+".join(value)


_BINDING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _natural(name: str) -> tuple:
    """``lv2`` before ``lv12``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _compression(name: str) -> tuple:
    from .. import compression

    return getattr(compression, name)


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class BuildOption:
    """One option of a stack or variant. ``field``: its `BuildOptions` attribute (None: it
    picks the program, not the build: the variant and stack carry it). ``runners``: the
    runner names that take it ("*": every runner; "forms": runners of converted forms).
    ``merge``: how a pass mutant's override combines with the stack's value ("replace",
    "union" of lists, "update" of tables). ``in_key``: the build key's entry for it when
    not the default (None: it enters the key another way, or never). ``label``: its parts
    of the build label (default: ``key=value`` when not the default). ``target_check``:
    why a value cannot build for a target (None: it can)."""

    key: str
    field: str | None
    kind: Kind
    default: Any
    doc: str
    runners: tuple | str = ("tvm",)
    stack: bool = True  # also a [[stacks]] key (False: variants only)
    merge: str = "replace"
    in_key: str | Callable | None = None
    label: Callable[[Any], list[str]] | None = None
    target_check: Callable[[Any, Any], str | None] | None = None

    def takes(self, runner_cls) -> bool:
        """Whether a variant of this runner class may set the option."""
        if self.runners == "*":
            return True
        if self.runners == "forms":
            return bool(getattr(runner_cls, "forms", ()))
        return runner_cls.name in self.runners

    def value(self, raw, parse_text: bool = False):
        return self.kind.parse(raw) if parse_text else self.kind.read(raw)

    def label_parts(self, value) -> list[str]:
        if value == self.default:
            return []
        if self.label is not None:
            return self.label(value)
        return [self.key if value is True else f"{self.key}={self.kind.text(value)}"]


def _llvm_only(what: str, when: Callable[[Any], bool] = bool):
    def check(value, target) -> str | None:
        if when(value) and target.spec.get("kind") != "llvm":
            return f"{what} are for CPU (LLVM) targets only"
        return None
    return check


def _tuning_key(options) -> dict:
    return {"tuning": database_digest(options.tuning_db)} if options.schedule == "tuned" else {}


def _import_paths() -> tuple:
    from ..frameworks import PATHS  # the import-path table lives with the frameworks

    return tuple(PATHS)


OPTIONS: tuple[BuildOption, ...] = (
    BuildOption("opt_level", "opt_level", Level(), DEFAULT_OPT_LEVEL,
                "optimisation level 0..3 (a variant may also write it as tvm:TARGET:O<level>)",
                label=lambda v: []),
    BuildOption("disabled_passes", "disabled_pass", PassList(OPTIONAL_PASSES), (),
                "passes the opt level runs that this build skips", merge="union",
                label=lambda v: [f"-{p}" for p in v]),
    BuildOption("required_passes", "required_pass", PassList(SWITCHABLE_PASSES), (),
                "passes run whatever the opt level says (the only way to run the opt-in passes)",
                merge="union", label=lambda v: [f"+{p}" for p in v]),
    BuildOption("fast_math", "fast_math", OptionalFlag(), None,
                "FastMathTransform on or off (unset: on at O3)",
                label=lambda v: ["fastmath" if v else "nofastmath"]),
    BuildOption("schedule", "schedule", Choice(SCHEDULES), DEFAULT_SCHEDULE,
                "loop schedule of the kernels: none, default (rule-based) or tuned (`mutatenn tune` records)",
                in_key=lambda o: {"schedule": o.schedule}, label=lambda v: [f"schedule={v}"],
                target_check=_llvm_only("tuned schedules", lambda v: v == "tuned")),
    BuildOption("", "tuning_db", Text(), "", "the tuning records of a tuned build (set by MutateNN)",
                stack=False, in_key=_tuning_key, label=lambda v: []),
    BuildOption("tir_options", "tir_options", TirTable(), (),
                f"TIR lowering options ({', '.join(TIR_OPTION_NAMES)}); a variant writes tir_options.NAME=value",
                merge="update", in_key=lambda o: {"tir": dict(o.tir_options)} if o.tir_options else {},
                label=lambda v: [n if s is True else f"{n}={json.dumps(s)}" for n, s in v]),
    BuildOption("bounds_check", "bounds_check", Flag(), False,
                ("every buffer access asserted inside its buffer (a failed check is a memory_error) and every "
                 "buffer a kernel writes filled with poison first (an element left unwritten is an uninitialized_read)"),
                in_key=lambda o: {"bounds_check": True} if o.bounds_check else {},
                target_check=_llvm_only("bounds checks")),
    # Compression and precision (`mutatenn.compression`): applied after a mutant is made, before it is built.
    BuildOption("precision", "precision", Choice(lambda: _compression("PRECISIONS")), "fp32",
                "float precision: fp16 (TVM ToMixedPrecision, ONNX Runtime float16 model, torch half), bf16 "
                "(torch only, on CPUs with bfloat16)", runners=("tvm", "onnxruntime", "torch"), in_key="precision",
                target_check=lambda v, t: "precision=bf16 is not available on TVM (TVM 0.27's ToMixedPrecision "
                "makes float16 only); use fp16" if v == "bf16" else None),
    BuildOption("keep_fp32", "keep_fp32", BindingList(), (),
                "bindings of main kept in float32 under precision=fp16 (names as `mutatenn localize` reports them): "
                "keep_fp32=lv12+lv40; in a stack keep_fp32 = [\"lv12\", \"lv40\"]", runners=("tvm",),
                in_key="keep_fp32"),
    BuildOption("quantize", "quantize", Choice(lambda: _compression("QUANTIZE")), "none",
                "int8-static (calibrated; ONNX Runtime QDQ, TFLite full-integer, TVM fake-quantised QDQ float math) "
                "or int8-dynamic (ONNX Runtime, TFLite)", runners=("tvm", "onnxruntime", "tflite"), in_key="quantize"),
    BuildOption("calibration", "calibration", Count(1), 16,
                "how many of the run's images (a seeded choice) calibrate an int8-static quantisation",
                runners=("tvm", "onnxruntime", "tflite"),
                in_key=lambda o: {"calibration": o.calibration} if o.quantize == "int8-static" else {}),
    BuildOption("prune", "prune", Prune(), (),
                "zero that fraction of the weights: prune=0.5 (global magnitude) or prune=0.5:channel; in a stack "
                "prune = 0.5 or { amount = 0.5, method = \"channel\" }", runners=("tvm", "onnxruntime", "torch"),
                in_key="prune"),
    BuildOption("via", None, Choice(_import_paths), "",
                "the import path the model takes into the runner (docs/models.md, \"Framework paths\")", runners="forms"),
    BuildOption("model", None, Text(), "", "another file of the same model (another framework's release)",
                runners="*", stack=False),
)
_BY_KEY = {o.key: o for o in OPTIONS if o.key}
_BY_FIELD = {o.field: o for o in OPTIONS if o.field}


def option(key: str) -> BuildOption:
    return _BY_KEY[key]


def options_help() -> list[str]:
    """One line per option for ``--help`` and docs: key, the runners that take it, what it does."""
    lines = []
    for opt in OPTIONS:
        if not opt.key:
            continue
        who = {"*": "every runner", "forms": "runners of converted models"}.get(opt.runners, None) \
            if isinstance(opt.runners, str) else "/".join(opt.runners)
        values = f" [{'|'.join(opt.kind.choices())}]" if isinstance(opt.kind, Choice) else ""
        where = "" if opt.stack else "; variants only"
        lines.append(f"{opt.key}{values} ({who}{where}): {opt.doc}")
    return lines


def stack_keys() -> tuple[str, ...]:
    """The option keys a ``[[stacks]]`` table may hold (besides name and target)."""
    return tuple(o.key for o in OPTIONS if o.key and o.stack)


# ------------------------------------------------------------------ BuildOptions
class _BuildOptionsMethods:
    """The behaviour of `BuildOptions`; its fields come from `OPTIONS`."""

    def __post_init__(self):
        for opt in _BY_FIELD.values():
            value = getattr(self, opt.field)
            if opt.field == "tuning_db" or (value == opt.default and not isinstance(opt.kind, TirTable)):
                continue
            if isinstance(value, list):
                value = tuple(value)
            try:
                object.__setattr__(self, opt.field, opt.kind.read(value))
            except OptionError as err:
                raise InputError(f"{opt.key}: {err}") from None

    def with_overrides(self, overrides: dict) -> "BuildOptions":
        """These options changed by a pass mutant's overrides (by field name). Each option's
        ``merge`` says how: most replace the stack's value; pass lists add to it and TIR
        options update it, so a mutant differs from its stack in one way only (disabling
        FoldConstant on a stack without FuseTIR must not switch FuseTIR back on)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in overrides.items():
            opt = _BY_FIELD.get(name)
            if opt is None:
                raise InputError(f"unknown build option {name!r} (known: {', '.join(_BY_FIELD)})")
            if opt.merge == "union":
                value = tuple(fields[name]) + tuple(p for p in value if p not in fields[name])
            elif opt.merge == "update":
                value = {**dict(fields[name]), **_as_dict(value)}
            fields[name] = tuple(value) if isinstance(value, list) else value
        return BuildOptions(**fields)

    @property
    def uses_fast_math(self) -> bool:
        if self.fast_math is not None:
            return self.fast_math
        return self.opt_level >= 3 or "FastMathTransform" in self.required_pass

    def passes(self) -> tuple[str, ...]:
        """The switchable passes this build runs, in `SWITCHABLE_PASSES` order (the order
        of build keys; the pipeline runs them in `PIPELINE` order)."""
        wanted = set(OPT_LEVEL_PASSES[self.opt_level]) | set(self.required_pass)
        wanted.discard("FastMathTransform")
        if self.uses_fast_math:
            wanted.add("FastMathTransform")
        wanted -= set(self.disabled_pass)
        return tuple(p for p in SWITCHABLE_PASSES if p in wanted)

    def key(self) -> str:
        """What decides the built code: the passes run, then each option's own entry
        (`BuildOption.in_key`; options at their default add nothing, so older keys stay valid)."""
        data: dict = {"passes": self.passes()}
        for opt in _BY_FIELD.values():
            value = getattr(self, opt.field)
            if callable(opt.in_key):
                data.update(opt.in_key(self))
            elif opt.in_key and value != opt.default:
                data[opt.in_key] = value
        return json.dumps(data, sort_keys=True)

    def label(self) -> str:
        """``O2,-FuseOps,bounds_check``: the level, then every option not at its default."""
        extra = [part for opt in _BY_FIELD.values() for part in opt.label_parts(getattr(self, opt.field))]
        return f"O{self.opt_level}" + ("," + ",".join(extra) if extra else "")

    def describe(self) -> dict:
        """The options as plain JSON values, by field (the run folder's stack description)."""
        out = {}
        for opt in _BY_FIELD.values():
            if opt.key:
                value = getattr(self, opt.field)
                out[opt.field] = dict(value) if isinstance(opt.kind, TirTable) else \
                    list(value) if isinstance(value, tuple) else value
        return out

    def check_target(self, target) -> None:
        """One InputError when an option cannot build for ``target``."""
        from ..compression import combination_error

        error = combination_error(self)
        if error:
            raise OptionError(error, subkey="keep_fp32" if error.startswith("keep_fp32") else "quantize")
        for opt in _BY_FIELD.values():
            if opt.target_check is not None:
                error = opt.target_check(getattr(self, opt.field), target)
                if error:
                    raise OptionError(error, subkey=opt.key)


BuildOptions = dataclasses.make_dataclass(
    "BuildOptions", [(o.field, Any, dataclasses.field(default=o.default)) for o in OPTIONS if o.field],
    bases=(_BuildOptionsMethods,), frozen=True)
BuildOptions.__module__ = __name__
BuildOptions.__doc__ = ("How a program is built: one field per `OPTIONS` line with a field (opt level, passes "
                        "switched off or forced, fast math, schedule, TIR options, bounds checks, ...).")


def _as_dict(settings) -> dict:
    """Table settings given as a dict or as [name, value] pairs (a mutant's form)."""
    if isinstance(settings, dict):
        return dict(settings)
    try:
        return {name: value for name, value in settings}
    except (TypeError, ValueError):
        raise InputError(f"tir_options: expected a table or [name, value] pairs, got {settings!r}") from None


# ------------------------------------------------------------------ readers
def options_from_table(table: dict, where: str, runner_cls=None) -> tuple[dict, dict]:
    """``(BuildOptions fields, program options)`` from a TOML table's option keys (keys that
    are no option are left to the caller). ``where`` prefixes error keys (``stacks[0]``);
    raises `ConfigError`-ready OptionError with the full key in ``subkey``."""
    fields, program = {}, {}
    for key, raw in table.items():
        opt = _BY_KEY.get(key)
        if opt is None or not opt.stack:
            continue
        try:
            value = opt.value(raw)
        except OptionError as err:
            raise OptionError(str(err), f"{where}.{key}" + (f".{err.subkey}" if err.subkey else "")) from None
        (fields if opt.field else program)[opt.field or key] = value
    return fields, program


def options_from_text(text: str, inside: str, runner_cls) -> tuple[dict, dict]:
    """``(BuildOptions fields, program options)`` from a variant's ``key=value, ...``; one
    OptionError line naming the variant and what it takes for anything else."""
    fields, program, tir = {}, {}, {}
    for item in filter(None, (part.strip() for part in _split(inside))):
        key, eq, raw = (x.strip() for x in item.partition("="))
        base, dot, sub = key.partition(".")
        opt = _BY_KEY.get(base)
        if not eq or opt is None or not opt.takes(runner_cls) or (dot and not isinstance(opt.kind, TirTable)):
            known = ", ".join(o.key for o in OPTIONS if o.key and o.takes(runner_cls)) or "none"
            raise OptionError(f"variant {text!r}: unknown option {item!r} (known: {known})")
        if not raw:
            raise OptionError(f"variant {text!r}: {key}= needs a value")
        try:
            if isinstance(opt.kind, TirTable):
                if not dot:
                    raise OptionError("write each TIR option as tir_options.NAME=value")
                tir[sub] = opt.kind.parse_entry(sub, raw)
                continue
            value = opt.value(raw, parse_text=True)
        except OptionError as err:
            sep = " " if str(err).startswith("must") else ": "
            raise OptionError(f"variant {text!r}: {key}{sep}{err}") from None
        (fields if opt.field else program)[opt.field or key] = value
    if tir:
        fields["tir_options"] = tir
    return fields, program


def _split(inside: str) -> list[str]:
    return inside.split(",")


def options_text(options, program: dict | None = None) -> str:
    """``key=value, ...`` for every option not at its default: the text that
    `options_from_text` reads back into the same options (opt level excluded: the
    variant writes it as ``:O<level>``)."""
    parts = []
    for opt in OPTIONS:
        if not opt.key or opt.key == "opt_level":
            continue
        value = getattr(options, opt.field) if opt.field else (program or {}).get(opt.key, opt.default)
        if value == opt.default:
            continue
        parts.append(opt.kind.text(value) if isinstance(opt.kind, TirTable) else f"{opt.key}={opt.kind.text(value)}")
    return ", ".join(parts)


# ------------------------------------------------------------------ tuning records' digest
def database_digest(db_dir: str) -> str:
    """A short digest of a tuning database's record files ('' when there is none)."""
    folder = Path(db_dir) if db_dir else None
    if folder is None or not folder.is_dir():
        return ""
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.json")))
    return _digest(str(folder), stamp)


@functools.lru_cache(maxsize=16)
def _digest(folder: str, stamp: tuple) -> str:
    """Cached by the files' names, sizes and times: plans ask for the key of every build."""
    digest = hashlib.blake2b(digest_size=8)
    for name, _size, _mtime in stamp:
        digest.update(name.encode())
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()
