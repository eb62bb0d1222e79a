"""Preflight: what a parsed campaign config asks of this machine and its files, checked
before any job starts or anything is written to the run folder.

`mutatenn.config` reads a config's text alone, so a run folder's stored config reads
anywhere, also after its model file or tuning records moved. Whatever runs a config's
work checks it here first: a campaign (`campaign.engine.run_campaign`, reached by
`mutatenn run`, `api.run_campaign`, a resumed run, `mutatenn demo`, strengthen's
rescoring) and `repro` / `localize` of a run (`repro.open_case`). Each check is one
entry of a table below, its docstring says why, and a problem is one line naming the
config key, as a parse problem is:

- `SECTION_CHECKS` look at the sections that are read independently ([model],
  [images], [[stacks]]); `checked_config` lists their problems together with the
  config's parse problems, in the config's order, so one read reports them all.
- `RUN_CHECKS` need the whole config; the first problem stops.

A check may find what the config carries on: a tuned stack's records folder and the
saved reference's variant (`Findings`); `preflight` returns the config with them.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import CampaignConfig, config_from_sections, problem_listing, read_config_file, read_sections
from .errors import ConfigError, InputError, TargetError


@dataclass
class Findings:
    """What one preflight learnt that the checked config carries on."""

    local_devices: bool  # False: the jobs run elsewhere (a Dask cluster, repro's worker for a stored run)
    records: dict = field(default_factory=dict)  # stack index -> its tuning records folder
    reference: str = ""  # [run] reference with its variant named


@dataclass(frozen=True)
class Check:
    """One host or disk check: ``run(subject, findings)`` -> its problem lines (none: passed).
    A section check's subject is a `config.Sections` or a `CampaignConfig` (both have
    ``model``, ``via``, ``images``, ``stacks``, ``raw``); a run check's a `CampaignConfig`."""

    name: str
    run: Callable


# ---------------------------------------------------------------- section checks
def _model_file(subject, found: Findings) -> list[str]:
    """A model given as a path must be there and of a format the model table knows (a
    folder form is told by its contents), before any model is loaded."""
    from .models.formats import model_format, named_format

    spec = subject.model
    if spec is None or named_format(spec) is not None:
        return []
    if not Path(spec).exists():
        return [f"config key 'model.spec': model file {spec!r} does not exist"]
    try:
        model_format(spec)
    except InputError as err:
        return [f"config key 'model.spec': {err}"]
    return []


def _image_folder(subject, found: Findings) -> list[str]:
    """An image set that is not a bundled one must be a folder."""
    from .images import BUNDLED_SETS

    images = subject.images
    if images is None or images.partition(":")[0] in BUNDLED_SETS or Path(images).is_dir():
        return []
    return [f"config key 'images.spec': {_as_written(subject.raw, 'images', images)!r} is neither a bundled set "
            f"({', '.join(BUNDLED_SETS)}) nor an image folder"]


def _tuning_records(subject, found: Findings) -> list[str]:
    """A tuned stack builds from `mutatenn tune`'s records of this model on its target:
    they must exist before any job starts (the line names the command that makes them).
    Jobs sent elsewhere build here too, so this is checked for them as well."""
    from .tuning import require_database

    if subject.model is None or _model_file(subject, found):
        return []  # no model file to find records of: its own line says so
    problems = []
    for i, stack in enumerate(subject.stacks or ()):
        if stack is None or stack.options.schedule != "tuned":
            continue
        try:
            found.records[i] = str(require_database(subject.model, stack.target, stack.via or subject.via or ""))
        except InputError as err:
            problems.append(f"config key 'stacks[{i}].schedule': {err}")
    return problems


def _runs_here(subject, found: Findings) -> list[str]:
    """A local target this machine cannot run (CPU features missing, no GPU) is refused
    now, not when its original fails after the model is loaded. Building needs no such
    hardware, an RPC target runs on its remote end and Dask jobs on the cluster's
    machines: only a run here is checked."""
    from .build import check_runnable

    if not found.local_devices:
        return []
    problems = []
    for i, stack in enumerate(subject.stacks or ()):
        if stack is None or stack.target.device == "rpc":
            continue
        try:
            check_runnable(stack.target)
        except TargetError as err:
            problems.append(f"config key 'stacks[{i}].target': {err}")
    return problems


SECTION_CHECKS: tuple[Check, ...] = (
    Check("model file", _model_file),
    Check("image folder", _image_folder),
    Check("tuning records", _tuning_records),
    Check("target runs here", _runs_here),
)


# ---------------------------------------------------------------- run checks
def _labels(config: CampaignConfig, found: Findings) -> list[str]:
    """A criterion that counts against the true labels (``accuracy_drop``) needs images
    that have labels (a folder's labels.csv or class folders)."""
    from operators.criteria import needs_labels

    from .images import load_image_set

    if needs_labels(config.criterion) and not load_image_set(config.images).has_labels:
        return [f"config key 'kill.criterion': {config.criterion} needs labelled images; "
                f"{config.images!r} has none"]
    return []


def _build_cache(config: CampaignConfig, found: Findings) -> list[str]:
    """[run] build_cache is a folder builds are saved into: a file of that name would
    fail every save."""
    if config.build_cache and Path(config.build_cache).exists() and not Path(config.build_cache).is_dir():
        return [f"config key 'run.build_cache': {config.build_cache!r} exists and is not a folder"]
    return []


def _timing_cores(config: CampaignConfig, found: Findings) -> list[str]:
    """[run] timing pins its threads to cores of their own: this machine must give
    MutateNN that many (timing on shared cores is noise)."""
    cores = len(os.sched_getaffinity(0))
    if config.timing is not None and config.timing.threads > cores:
        return [f"config key 'run.timing.threads': this machine gives MutateNN {cores} cores, "
                f"not {config.timing.threads}"]
    return []


def _calibration(config: CampaignConfig, found: Findings) -> list[str]:
    """A stack calibrating on more images than the set holds: one line, before anything runs."""
    from .compression import check_calibration
    from .images import load_image_set

    if not any(s.options.quantize == "int8-static" for s in config.stacks):
        return []
    count = len(load_image_set(config.images))
    for i, stack in enumerate(config.stacks):
        try:
            check_calibration(stack.options, count, f"stack {stack.name!r}")
        except InputError as err:
            return [f"config key 'stacks[{i}].calibration': {err}"]
    return []


def _saved_reference(config: CampaignConfig, found: Findings) -> list[str]:
    """[run] reference: the folder must hold saved outputs of that variant now (with none
    named, the saved run's own baseline, which the config then names)."""
    from .golden import PREFIX, SavedOutputsError, parse_saved_baseline

    if not config.reference:
        return []
    try:
        saved = parse_saved_baseline(config.reference, "config key 'run.reference':")
    except SavedOutputsError as err:
        return [str(err)]
    found.reference = f"{PREFIX}{saved.folder.resolve()}:{saved.variant}"
    return []


def _thread_cores(config: CampaignConfig, found: Findings) -> list[str]:
    """[run] threads: every runtime runs that many threads; more than this machine gives
    MutateNN would only make them wait for each other."""
    cores = len(os.sched_getaffinity(0))
    if config.threads > cores:
        return [f"config key 'run.threads': this machine gives MutateNN {cores} cores, not {config.threads}"]
    return []


RUN_CHECKS: tuple[Check, ...] = (
    Check("labelled images", _labels),
    Check("build cache folder", _build_cache),
    Check("timing cores", _timing_cores),
    Check("calibration images", _calibration),
    Check("saved reference", _saved_reference),
    Check("thread cores", _thread_cores),
)


# ---------------------------------------------------------------- entry points
def preflight(config: CampaignConfig, local_devices: bool = True) -> CampaignConfig:
    """``config`` checked against this machine and its files (ConfigError lines, as
    parsing gives) and returned with what the checks found; a config checked before is
    returned as it is. ``local_devices=False``: the jobs run elsewhere (a Dask cluster),
    so this machine's CPU features and GPU are not asked for."""
    if config.preflighted:
        return config
    found = Findings(local_devices)
    problems = _section_problems(config, found)
    if problems:
        raise problem_listing(problems)
    return _run_checks(config, found)


def checked_config(raw: dict, base_dir: Path = Path("."), source: str = "",
                   local_devices: bool = True) -> CampaignConfig:
    """`config.parse_config` and `preflight` as one step (the campaign commands): the
    parse problems of a config's sections and the host and disk problems of the sections
    that parsed are listed together, in the config's order."""
    sections = read_sections(raw, base_dir)
    found = Findings(local_devices)
    problems = _in_config_order(sections.problems + _section_problems(sections, found))
    if problems:
        raise problem_listing(problems)
    return _run_checks(config_from_sections(sections, base_dir, source), found)


def load_checked_config(path: Path, local_devices: bool = True) -> CampaignConfig:
    """`checked_config` of a config file (relative paths are its folder's)."""
    return checked_config(read_config_file(path), base_dir=Path(path).parent, source=str(path),
                          local_devices=local_devices)


def check_build_cache_option(folder: str) -> None:
    """``--build-cache DIR`` (or the API's ``build_cache``): like [run] build_cache, a folder."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise ConfigError(f"--build-cache {str(folder)!r} exists and is not a folder")


def _section_problems(subject, found: Findings) -> list[str]:
    return [line for check in SECTION_CHECKS for line in check.run(subject, found)]


def _run_checks(config: CampaignConfig, found: Findings) -> CampaignConfig:
    """The run checks in order (the first problem stops), then the config with the findings."""
    for check in RUN_CHECKS:
        problems = check.run(config, found)
        if problems:
            raise problem_listing(problems)
    stacks = [dataclasses.replace(s, options=s.options.with_overrides({"tuning_db": found.records[i]}))
              if i in found.records else s for i, s in enumerate(config.stacks)]
    return dataclasses.replace(config, stacks=stacks, reference=found.reference or config.reference,
                               preflighted=True)


SECTION_ORDER = ("model", "images", "mutants", "stacks", "kill")  # as `config.read_sections` reads them
_KEY = re.compile(r"config key '([^'.\[]*)(?:\[(\d+)\])?")


def _in_config_order(problems: list[str]) -> list[str]:
    """Parse and preflight problems merged in the order the config reads its sections
    (an unknown section first, then stack by stack); the order within one place is kept."""
    def place(line: str) -> tuple[int, int]:
        match = _KEY.match(line)
        section = match.group(1) if match else ""
        rank = SECTION_ORDER.index(section) + 1 if section in SECTION_ORDER else 0
        return rank, int(match.group(2)) if match and match.group(2) else -1
    return sorted(problems, key=place)


def _as_written(raw: dict, section: str, default: str) -> str:
    """A section's spec as the config wrote it (messages quote the user's text)."""
    value = raw.get(section)
    value = value.get("spec") if isinstance(value, dict) else value
    return value.strip() if isinstance(value, str) else default
