"""Campaign configuration: a TOML file read into a checked `CampaignConfig`.

Every problem is reported as a `ConfigError` that names the key (``stacks[1].target``,
``mutants.operators.tir_foo``) before any model is loaded or any job started.
See examples/*.toml for annotated configs.

This module reads the TOML alone: shapes, types and values, and paths resolved against
the config's folder. It never looks at the disk or the host, so a run folder's stored
config reads anywhere (a model file or tuning records moved since do not matter). What a
config asks of this machine and its files (the model file, the image folder and its
labels, tuned stacks' records, CPU features or a GPU, cores, saved outputs) is checked
by `mutatenn.preflight` before a campaign starts.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .build import BuildOptions, Target, parse_target
from .errors import ConfigError, ConfigErrors, InputError

DEFAULT_CRITERION = "top1_agreement < 1.0"
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_PER_IMAGE_CAP = 50
SELECTION_KEYS = {"every", "positions", "sample", "seed"}
TOP_LEVEL_KEYS = {"model", "images", "mutants", "stacks", "kill", "run"}
MAX_REPEATS = 20
# [run] rejudge_unstable: how the mutant × stack pairs flagged unstable are rebuilt and judged again.
REJUDGE_METHODS = ("bounds_check",)


@dataclass(frozen=True)
class StackSpec:
    """One deployment stack: a named target plus build options."""

    name: str
    target_name: str
    options: BuildOptions
    runner: str = "tvm"  # the runner table's name for this stack's framework path
    via: str = ""  # the stack's import path (`mutatenn.frameworks.PATHS`); empty: [model] via or the default

    @property
    def target(self) -> Target:
        return parse_target(self.target_name)

    @property
    def variant(self):
        """The stack as a `runners.Variant` with every option it has (what a job carries)."""
        import dataclasses

        from .runners import Variant

        variant = Variant("", self.runner, self.target, self.options, via=self.via)
        return dataclasses.replace(variant, text=variant.canonical)

    @property
    def variant_text(self) -> str:
        """The stack written as a variant, in full (`tvm:cpu:O2(bounds_check=true)`): the
        same options through `mutatenn compare` or `localize` build the same code."""
        return self.variant.text

    def describe(self) -> dict:
        return {"name": self.name, "target": self.target_name, **self.options.describe(),
                "build": self.options.label(), "via": self.via}


@dataclass
class CampaignConfig:
    model: str
    pretrained: str
    preset: str | None
    images: str
    levels: list[str] | None
    operators: dict  # operator name -> Selection (only the chosen operators)
    stacks: list[StackSpec]
    criterion: object  # operators.KillCriterion
    timeout_s: float
    jobs: int
    per_image_cap: int
    keep_artifacts: bool = False  # export every build to RUN_DIR/cache (costs about a build's time)
    repeats: int = 1  # inference passes per build; outputs that differ between passes flag the build unstable
    share_builds: bool = True  # mutants link against the original's compiled kernels (build.build_with_kernels)
    build_cache: str = ""  # a folder of builds shared between runs (reused when the same build is asked for)
    fast_kill: bool = False  # stop running images on a mutant once the kill criterion is met
    raw: dict = field(default_factory=dict)  # the TOML as read, stored with the results
    source: str = ""
    via: str = ""  # [model] via: the import path of stacks that name none (empty: the framework's default)
    # [run] rejudge_unstable: "bounds_check" rebuilds the pairs flagged unstable with bounds
    # checks after the campaign (`campaign.engine.Rejudge`); empty: no second look.
    rejudge_unstable: str = ""
    # [run] repeat_in: where passes 2..N run ("worker": the build's own worker process;
    # "process": each in a fresh process); [run] verdict and its test settings: how the
    # N passes make one verdict (`campaign.repeats.PASS_VERDICTS`).
    repeat_in: str = "worker"
    passes: object = None  # campaign.repeats.PassSettings
    # [run] reference: "saved:DIR[:VARIANT]", saved outputs (`mutatenn.golden`) every mutant
    # is judged against instead of its stack's original (empty: the original).
    reference: str = ""
    timing: object = None  # [run] timing: mutatenn.timing.Timing (pinned threads, N calls per image), or None
    exports: tuple = ()  # [run] exports: formats of `reports.exports.FORMATS` written with every run
    # [run] reuse: a run folder whose builds with the same inputs this run takes
    # (`campaign.reuse`); reuse_or_fresh: when none can be, run fresh instead of exit 2.
    reuse: str = ""
    reuse_or_fresh: bool = False
    threads: int = 0  # [run] threads: every runtime's thread count (0: the runtime's own choice)
    # [model] trusted (or `mutatenn run --trust-model`): the model file skips its safety
    # check (`mutatenn.models.safety`), so it may run code when loaded or run.
    trusted: bool = False
    # Set by `mutatenn.preflight`: this machine and disk were checked, tuned stacks carry
    # their records folder and the reference its variant (a campaign checks a config once).
    preflighted: bool = False

    def stack_via(self, stack: "StackSpec") -> str:
        """The import path a stack asked for (its own, else the model's; empty: default)."""
        return stack.via or self.via

    def fingerprint(self) -> str:
        """What must match for a run folder to be resumed (parallelism may change)."""
        data = json.loads(json.dumps(self.raw, default=str))
        for speed_only in ("jobs", "share_builds", "build_cache", "reuse", "reuse_or_fresh", "exports"):
            # same results either way
            data.get("run", {}).pop(speed_only, None)
        model = data.get("model")
        if isinstance(model, dict) and "trusted" in model:  # a resume without trust meets the model check instead
            model.pop("trusted")
            data["model"] = model["spec"] if set(model) == {"spec"} else model  # as `with_model_trusted` found it
        return json.dumps(data, sort_keys=True)


def with_run_overrides(config: CampaignConfig, **overrides) -> CampaignConfig:
    """``config`` with [run] keys given on the command line (None: keep the config's);
    the stored TOML records them too, so a resumed run checks the same settings."""
    import copy
    import dataclasses

    given = {k: v for k, v in overrides.items() if v is not None}
    if "build_cache" in given:  # that it is a folder is `preflight.check_build_cache_option`'s
        given["build_cache"] = str(Path(given["build_cache"]).expanduser().resolve())
    if "reuse" in given:
        given["reuse"] = str(Path(given["reuse"]).expanduser().resolve())
    raw = copy.deepcopy(config.raw)
    raw.setdefault("run", {}).update(given)
    return dataclasses.replace(config, raw=raw, **given)


def with_model_trusted(config: CampaignConfig) -> CampaignConfig:
    """``config`` whose model the user trusts (``--trust-model``); the stored TOML records
    it as ``[model] trusted = true``, so repro and localize of the run trust it too."""
    import copy
    import dataclasses

    raw = copy.deepcopy(config.raw)
    model = raw.get("model")
    raw["model"] = {**(model if isinstance(model, dict) else {"spec": model}), "trusted": True}
    return dataclasses.replace(config, raw=raw, trusted=True)


def read_config_file(path: Path) -> dict:
    """The TOML of a config file as a dict (one ConfigError line when it cannot be read)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config {str(path)!r}: {err.strerror or err}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config {str(path)!r} is not valid TOML: {err}") from None
    return raw


def load_config(path: Path) -> CampaignConfig:
    """A config file read and parsed (nothing on the disk or host checked: `mutatenn.preflight`)."""
    return parse_config(read_config_file(path), base_dir=Path(path).parent, source=str(path))


def parse_config(raw: dict, base_dir: Path = Path("."), source: str = "") -> CampaignConfig:
    """Check every key of a config dict; relative paths are resolved against base_dir."""
    return config_from_sections(read_sections(raw, base_dir), base_dir, source)


@dataclass
class Sections:
    """The sections of a config that are read independently ([model], [images], [mutants],
    [[stacks]], [kill]): each value, or None where its section failed (a stack that failed
    is None in ``stacks``), and every problem found, one line each, in the config's order.
    `mutatenn.preflight` checks the host and disk for the sections that were read, so a
    config's problems of both kinds are listed together."""

    model: str | None
    pretrained: str | None
    preset: str | None
    via: str | None
    trusted: bool | None
    images: str | None
    levels: list[str] | None
    operators: dict | None
    stacks: list | None  # StackSpec per [[stacks]] table (None for one that failed); None: no usable array
    criterion: object
    raw: dict
    problems: list[str]


def read_sections(raw: dict, base_dir: Path = Path(".")) -> Sections:
    """The independent sections of ``raw``, each checked; their problems collected, not raised."""
    problems: list[str] = []
    collect = _collector(problems)
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        problems.append(f"config key {unknown[0]!r}: unknown section (known: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    model, pretrained, preset, via, trusted = collect(_model, raw, base_dir) or (None,) * 5
    images = collect(_images, raw, base_dir)
    levels, operators = collect(_mutants, raw.get("mutants", {})) or (None, None)
    stacks = collect(_stacks, raw.get("stacks"), problems)
    criterion = collect(_criterion, raw.get("kill", {}))
    return Sections(model, pretrained, preset, via, trusted, images, levels, operators, stacks, criterion, raw,
                    problems)


def config_from_sections(sections: Sections, base_dir: Path, source: str) -> CampaignConfig:
    """The whole config: the sections' problems together (one per line), else [run] and the
    checks that span sections."""
    if sections.problems:
        raise problem_listing(sections.problems)
    raw = sections.raw
    model, images, stacks, criterion = sections.model, sections.images, sections.stacks, sections.criterion
    run = _table(raw.get("run", {}), "run", {"timeout", "jobs", "per_image_cap", "keep_artifacts", "repeats",
                                             "share_builds", "build_cache", "fast_kill", "rejudge_unstable",
                                             "repeat_in", "verdict", "significance", "effect_size", "reference",
                                             "timing", "exports", "reuse", "reuse_or_fresh", "threads"})
    timeout = _number(run, "timeout", DEFAULT_TIMEOUT_S, "run.timeout", minimum=0.1)
    jobs = int(_number(run, "jobs", 1, "run.jobs", minimum=1, integer=True))
    cap = int(_number(run, "per_image_cap", DEFAULT_PER_IMAGE_CAP, "run.per_image_cap", minimum=0, integer=True))
    keep, share, fast_kill = (_flag(run, name, default) for name, default in
                              (("keep_artifacts", False), ("share_builds", True), ("fast_kill", False)))
    build_cache = _string(run, "build_cache", "run.build_cache") or ""
    if build_cache:
        build_cache = str((base_dir / Path(build_cache).expanduser()).resolve())
    repeats = int(_number(run, "repeats", 1, "run.repeats", minimum=1, integer=True))
    if repeats > MAX_REPEATS:
        raise ConfigError(f"config key 'run.repeats': at most {MAX_REPEATS}, got {repeats}")
    rejudge = _rejudge_unstable(run, repeats)
    passes = _pass_settings(run, repeats, fast_kill)
    repeat_in = _repeat_in(run, repeats, stacks)
    timing = _timing(run, criterion)
    return CampaignConfig(model, sections.pretrained, sections.preset, images, sections.levels, sections.operators,
                          stacks, criterion, timeout, jobs, cap, keep, repeats, share, build_cache, fast_kill, raw,
                          source, sections.via,
                          rejudge_unstable=rejudge, repeat_in=repeat_in, passes=passes,
                          reference=_reference(run, base_dir), timing=timing, trusted=sections.trusted,
                          threads=_threads(run, timing), exports=_exports(run), reuse=_reuse(run, base_dir),
                          reuse_or_fresh=_flag(run, "reuse_or_fresh", False))


def _exports(run: dict) -> tuple:
    """``[run] exports = ["junit", ...]``: formats of `reports.exports.FORMATS`."""
    from reports.exports import FORMATS

    value = run.get("exports", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("config key 'run.exports': expected a list of format names")
    unknown = [v for v in value if v not in FORMATS]
    if unknown:
        raise ConfigError(f"config key 'run.exports': unknown format {unknown[0]!r} (formats: {', '.join(FORMATS)})")
    return tuple(dict.fromkeys(value))


def _reuse(run: dict, base_dir: Path) -> str:
    """``[run] reuse = "DIR"``: an earlier run folder (relative to the config); whether it
    can be reused is decided once the program is loaded (`campaign.reuse`)."""
    text = _string(run, "reuse", "run.reuse")
    return str((base_dir / Path(text).expanduser()).resolve()) if text else ""


def problem_listing(problems: list[str]) -> ConfigError:
    """One ConfigError for one problem, a ConfigErrors (one line each) for several."""
    return ConfigErrors(problems) if len(problems) > 1 else ConfigError(problems[0])


def _collector(problems: list[str]):
    """``collect(fn, *args)``: fn's value, or None with its ConfigError(s) added to ``problems``,
    so independent sections are all checked and a config's problems are reported together."""
    def collect(fn, *args):
        try:
            return fn(*args)
        except ConfigErrors as err:
            problems.extend(err.problems)
        except ConfigError as err:
            problems.append(str(err))
        return None
    return collect


def _timing(run: dict, criterion):
    """``[run] timing = { calls = N, threads = T }``; a latency kill criterion needs it
    (`mutatenn.timing`: one timed call per image on shared cores is noise). That this
    machine has T cores is `mutatenn.preflight`'s check."""
    from .timing import DEFAULT_CALLS, MIN_CALLS, Timing, uses_latency

    table = run.get("timing")
    if table is None:
        if uses_latency(criterion):
            raise ConfigError(f"config key 'kill.criterion': {criterion} kills on latency, which needs "
                              "[run] timing = { calls = N, threads = T } (pinned threads, each image timed N times)")
        return None
    table = _table(table, "run.timing", {"calls", "threads"})
    calls = int(_number(table, "calls", DEFAULT_CALLS, "run.timing.calls", minimum=MIN_CALLS, integer=True))
    threads = int(_number(table, "threads", 1, "run.timing.threads", minimum=1, integer=True))
    return Timing(calls, threads)


def _threads(run: dict, timing) -> int:
    """``[run] threads = N``: every runtime's thread count in every job (0: their own
    choice); with ``[run] timing`` the two counts are one, so they must agree."""
    if "threads" not in run:
        return timing.threads if timing else 0
    threads = int(_number(run, "threads", 0, "run.threads", minimum=1, integer=True))
    if timing and timing.threads != threads:
        raise ConfigError(f"config key 'run.threads': {threads} differs from run.timing.threads = {timing.threads} "
                          "(give one count)")
    return threads


def _reference(run: dict, base_dir: Path) -> str:
    """``[run] reference = "saved:DIR[:VARIANT]"``, a relative DIR the config's. That the
    folder holds saved outputs of that variant is `mutatenn.preflight`'s check (which
    names the variant when none is given); whether they are of this model and image set
    is checked once both are loaded (`campaign.engine.load_reference`)."""
    from .golden import PREFIX

    text = _string(run, "reference", "run.reference")
    if text is None:
        return ""
    if not text.startswith(PREFIX):
        raise ConfigError(f"config key 'run.reference': expected saved:DIR[:VARIANT] (outputs written by "
                          f"mutatenn compare --save-outputs DIR), got {text!r}")
    rest = text[len(PREFIX):]
    if rest and not Path(rest.split(":", 1)[0]).expanduser().is_absolute():
        rest = str(base_dir.resolve() / rest)
    return PREFIX + rest


def _pass_settings(run: dict, repeats: int, fast_kill: bool):
    """``[run] verdict`` (a method of `campaign.repeats.PASS_VERDICTS`) with its test
    settings; each method needs a least number of passes, and only the first-pass verdict
    goes with fast kill (a pass stopped early says nothing about the passes after it)."""
    from .campaign.repeats import DEFAULT_EFFECT_SIZE, DEFAULT_SIGNIFICANCE, PASS_VERDICTS, PassSettings

    method = _string(run, "verdict", "run.verdict", default="first")
    if method not in PASS_VERDICTS:
        raise ConfigError(f"config key 'run.verdict': must be one of {', '.join(PASS_VERDICTS)}, not {method!r}")
    if repeats < PASS_VERDICTS[method].min_passes:
        raise ConfigError(f"config key 'run.verdict': {method!r} needs run.repeats >= {PASS_VERDICTS[method].min_passes}, "
                          f"got repeats = {repeats}")
    if method != "first" and fast_kill:
        raise ConfigError(f"config key 'run.verdict': {method!r} judges every pass in full; it does not go with "
                          "run.fast_kill")
    alpha = _number(run, "significance", DEFAULT_SIGNIFICANCE, "run.significance", minimum=1e-6)
    effect = _number(run, "effect_size", DEFAULT_EFFECT_SIZE, "run.effect_size", minimum=0.5)
    if alpha >= 1 or effect > 1:
        raise ConfigError("config key 'run.significance' must be below 1 and 'run.effect_size' (A12) at most 1")
    if method != "statistical" and ("significance" in run or "effect_size" in run):
        raise ConfigError("config keys 'run.significance' and 'run.effect_size' are for run.verdict = \"statistical\"")
    return PassSettings(method, float(alpha), float(effect))


REPEAT_PLACES = ("worker", "process")


def _repeat_in(run: dict, repeats: int, stacks: list) -> str:
    """``[run] repeat_in``: passes 2..N in the build's worker, or each in a fresh process
    (which runs the exported build: TVM stacks on this machine's devices only)."""
    place = _string(run, "repeat_in", "run.repeat_in", default="worker")
    if place not in REPEAT_PLACES:
        raise ConfigError(f"config key 'run.repeat_in': must be one of {', '.join(REPEAT_PLACES)}, not {place!r}")
    if place == "process":
        if repeats < 2:
            raise ConfigError(f"config key 'run.repeat_in': needs run.repeats >= 2, got repeats = {repeats}")
        remote = [s.name for s in stacks if s.runner != "tvm" or s.target.device == "rpc"]
        if remote:
            raise ConfigError(f"config key 'run.repeat_in': \"process\" runs local TVM builds only; stack "
                              f"{remote[0]!r} is not one")
    return place


def _rejudge_unstable(run: dict, repeats: int) -> str:
    """``[run] rejudge_unstable``: a method of `REJUDGE_METHODS`; unstable pairs are found
    only by repeating every run, so it needs ``repeats >= 2``."""
    method = _string(run, "rejudge_unstable", "run.rejudge_unstable") or ""
    if method and method not in REJUDGE_METHODS:
        raise ConfigError(f"config key 'run.rejudge_unstable': must be one of {', '.join(REJUDGE_METHODS)}, "
                          f"not {method!r}")
    if method and repeats < 2:
        raise ConfigError(f"config key 'run.rejudge_unstable': needs run.repeats >= 2 (a mutant is flagged unstable "
                          f"when its repeated runs differ), got repeats = {repeats}")
    return method


def _flag(table: dict, name: str, default: bool) -> bool:
    value = table.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"config key 'run.{name}': expected true or false")
    return value


def _table(value, key: str, allowed: set[str]) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"config key {key!r}: expected a table, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"config key '{key}.{unknown[0]}': unknown key (known: {', '.join(sorted(allowed))})")
    return value


def _string(table: dict, name: str, key: str, default=None, required=False) -> str | None:
    value = table.get(name, default)
    if value is None:
        if required:
            raise ConfigError(f"config key {key!r} is missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"config key {key!r}: expected a non-empty string, got {value!r}")
    return value.strip()


def _number(table: dict, name: str, default, key: str, minimum=None, integer=False):
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"config key {key!r}: expected {kind}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"config key {key!r}: must be at least {minimum:g}, got {value!r}")
    return value


def _model(raw: dict, base_dir: Path):
    from .images import PRESETS
    from .loading import PRETRAINED_CHOICES

    if "model" not in raw:
        raise ConfigError("config key 'model' is missing (e.g. [model] spec = \"digits\")")
    table = raw["model"]
    if isinstance(table, str):
        table = {"spec": table}
    table = _table(table, "model", {"spec", "pretrained", "preset", "via", "trusted"})
    spec = _string(table, "spec", "model.spec", required=True)
    pretrained = _string(table, "pretrained", "model.pretrained", default="auto")
    if pretrained not in PRETRAINED_CHOICES:
        raise ConfigError(f"config key 'model.pretrained': must be one of {', '.join(PRETRAINED_CHOICES)}, not {pretrained!r}")
    preset = _string(table, "preset", "model.preset")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"config key 'model.preset': unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    via = _string(table, "via", "model.via") or ""
    _check_via(via, "model.via")
    trusted = table.get("trusted", False)
    if not isinstance(trusted, bool):
        raise ConfigError(f"config key 'model.trusted': expected true or false, got {trusted!r}")
    return _model_spec(spec, base_dir), pretrained, preset, via, trusted


def _model_spec(spec: str, base_dir: Path) -> str:
    """A model name checked by the model-format table (`models.formats.FORMATS`), or a
    path resolved against the config's folder (that it exists and is of a known format is
    `mutatenn.preflight`'s check: a folder form is recognised by its contents)."""
    from .models.formats import named_format

    named = named_format(spec)
    if named is not None:  # digits, torchvision:NAME, keras:NAME
        known = named.known_names()
        if known is not None and spec[len(named.prefix):] not in known:
            raise ConfigError(f"config key 'model.spec': unknown model {spec!r} (known: "
                              f"{', '.join(named.prefix + n for n in known)})")
        return spec
    path = Path(spec).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def _check_via(via: str, key: str) -> None:
    from .frameworks import PATHS

    if via and via not in PATHS:
        raise ConfigError(f"config key {key!r}: unknown import path {via!r} (known: {', '.join(PATHS)})")


def _images(raw: dict, base_dir: Path) -> str:
    from .images import BUNDLED_SETS

    table = raw.get("images")
    if table is None:
        raise ConfigError("config key 'images' is missing (e.g. [images] spec = \"digits:40\")")
    if isinstance(table, str):
        table = {"spec": table}
    table = _table(table, "images", {"spec"})
    spec = _string(table, "spec", "images.spec", required=True)
    base, _, count = spec.partition(":")
    if base in BUNDLED_SETS:
        if count and (not count.isdigit() or int(count) < 1):
            raise ConfigError(f"config key 'images.spec': the count after ':' must be a positive integer, not {count!r}")
        return spec
    path = Path(spec).expanduser()  # an image folder: that it is one is `mutatenn.preflight`'s check
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def parse_selection(value, key: str):
    """"all" | "first" | "last" | {every=K} | {positions=[...]} | {sample=N, seed=S}."""
    from mutators import Selection

    if isinstance(value, str):
        if value in ("all", "first", "last"):
            return Selection(mode=value)
        raise ConfigError(f"config key {key!r}: bad selection {value!r} (use \"all\", \"first\", \"last\", "
                        "{every = K}, {positions = [..]} or {sample = N, seed = S})")
    if not isinstance(value, dict):
        raise ConfigError(f"config key {key!r}: bad selection {value!r}")
    unknown = sorted(set(value) - SELECTION_KEYS)
    if unknown:
        raise ConfigError(f"config key '{key}.{unknown[0]}': unknown selection key (known: every, positions, sample, seed)")
    modes = [m for m in ("every", "positions", "sample") if m in value]
    if len(modes) != 1:
        raise ConfigError(f"config key {key!r}: give exactly one of every, positions, sample")
    mode = modes[0]
    if "seed" in value and mode != "sample":
        raise ConfigError(f"config key '{key}.seed': only a sample takes a seed")
    if mode == "every":
        k = _number(value, "every", None, f"{key}.every", minimum=1, integer=True)
        return Selection(mode="every", k=k)
    if mode == "positions":
        positions = value["positions"]
        if not isinstance(positions, list) or not positions or \
                any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in positions):
            raise ConfigError(f"config key '{key}.positions': expected a non-empty list of site indices >= 0")
        return Selection(mode="positions", positions=tuple(positions))
    n = _number(value, "sample", None, f"{key}.sample", minimum=1, integer=True)
    seed = _number(value, "seed", 0, f"{key}.seed", integer=True)
    return Selection(mode="sample", n=n, seed=seed)


def _operator_entry(name: str, value, default, known: dict):
    """One ``[mutants.operators]`` entry -> (operator name, selection). A table may mix
    selection keys with the operator's parameters (``tir_store_add = { delta = -1e-8,
    sample = 2 }``); parameters give the configured operator's name, ``NAME(k=v)``."""
    key = f"mutants.operators.{name}"
    if "(" in name:  # a configured name as the key ("tir_store_cast(dtype=int8)"): one operator, used twice
        import mutators

        try:
            name = mutators.operator_by_name(name).name  # the parameters checked, in their own order
        except (KeyError, ValueError) as err:
            raise ConfigError(f"config key {key!r}: {err.args[0] if err.args else err}") from None
        if isinstance(value, dict) and set(value) - SELECTION_KEYS:
            raise ConfigError(f"config key {key!r}: give parameters in the name or in the table, not both")
    if not isinstance(value, dict):
        return name, (default if value == "default" else parse_selection(value, key))
    params = {k: v for k, v in value.items() if k not in SELECTION_KEYS}
    rest = {k: v for k, v in value.items() if k in SELECTION_KEYS}
    if params:
        if name not in known:
            raise ConfigError(f"config key 'mutants.operators': unknown operator {name!r} "
                              f"(see `mutatenn mutants --list-operators`)")
        try:
            name = known[name].configure(**params).name
        except ValueError as err:
            raise ConfigError(f"config key {key!r}: {err}") from None
    return name, (parse_selection(rest, key) if rest else default)


def _mutants(table) -> tuple[list[str] | None, dict]:
    import mutators

    table = _table(table, "mutants", {"levels", "operators", "select"})
    levels = table.get("levels")
    if levels is not None:
        if not isinstance(levels, list) or not levels:
            raise ConfigError("config key 'mutants.levels': expected a non-empty list")
        for lv in levels:
            if lv not in mutators.LEVELS:
                raise ConfigError(f"config key 'mutants.levels': unknown level {lv!r} (known: {', '.join(mutators.LEVELS)})")
    default = parse_selection(table.get("select", "all"), "mutants.select")
    known = {op.name: op for op in mutators.catalogue()}
    requested = table.get("operators")
    if requested is None:
        chosen = {name: default for name, op in known.items() if op.by_default}
    elif isinstance(requested, list):
        chosen = {}
        for name in requested:
            if not isinstance(name, str):
                raise ConfigError(f"config key 'mutants.operators': expected operator names, got {name!r}")
            chosen[name] = default
    elif isinstance(requested, dict):
        chosen = dict(_operator_entry(name, sel, default, known) for name, sel in requested.items())
    else:
        raise ConfigError("config key 'mutants.operators': expected a list of names or a table name -> selection")
    for name in chosen:
        if name.partition("(")[0] not in known:
            raise ConfigError(f"config key 'mutants.operators': unknown operator {name!r} "
                            f"(see `mutatenn mutants --list-operators`)")
    if levels is not None:
        chosen = {n: s for n, s in chosen.items() if known[n.partition("(")[0]].level in levels}
    if not chosen:
        raise ConfigError("config key 'mutants': selects no operator")
    return levels, chosen


STACK_IDENTITY_KEYS = ("name", "target")


def _stacks(value, problems: list[str]) -> list:
    """Every ``[[stacks]]`` table, each parsed once: a StackSpec each, None for one that
    failed; each bad stack's problem and each stack name used twice is added to
    ``problems`` (all reported together, one line each)."""
    if value is None:
        raise ConfigError("config key 'stacks' is missing (e.g. [[stacks]] name = \"cpu-O2\" target = \"cpu\")")
    if not isinstance(value, list) or not value:
        raise ConfigError("config key 'stacks': expected a non-empty array of tables ([[stacks]])")
    collect = _collector(problems)
    out, names = [], set()
    for i, table in enumerate(value):
        stack = collect(stack_from_table, table, f"stacks[{i}]")
        out.append(stack)
        if stack is None:
            continue
        if stack.name in names:
            problems.append(f"config key 'stacks[{i}].name': stack name {stack.name!r} is used twice")
        names.add(stack.name)
    return out


def stack_from_table(table, key: str) -> StackSpec:
    """One ``[[stacks]]`` table: its name and target, and the build options of the schema
    (`mutatenn.build.options.OPTIONS`, the same keys a variant takes), each checked there.
    A tuned stack's records and a local target's hardware are `mutatenn.preflight`'s checks."""
    from .build.options import OptionError, options_from_table, stack_keys

    table = _table(table, key, set(STACK_IDENTITY_KEYS) | set(stack_keys()))
    target = _string(table, "target", f"{key}.target", required=True)
    try:
        parsed_target = parse_target(target)
        fields, program = options_from_table(table, key)
        options = BuildOptions(**fields)
        options.check_target(parsed_target)
    except OptionError as err:
        where = err.subkey if err.subkey.startswith(key) else f"{key}.{err.subkey}" if err.subkey else key
        raise ConfigError(f"config key '{where}': {err}") from None
    except InputError as err:
        raise ConfigError(f"config key '{key}.target': {err}") from None
    name = _string(table, "name", f"{key}.name", default=f"{target}-{options.label()}")
    return StackSpec(name, target, options, via=program.get("via", ""))


def _criterion(table):
    import operators

    if isinstance(table, str):
        table = {"criterion": table}
    table = _table(table, "kill", {"criterion"})
    text = table.get("criterion", DEFAULT_CRITERION)
    try:
        return operators.parse_criterion(text)
    except ValueError as err:
        raise ConfigError(f"config key 'kill.criterion': {err}") from None
