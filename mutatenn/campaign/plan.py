"""Planning a campaign: the mutants, the distinct builds they need on each stack, and
the verdicts settled without building.

The unit of work is an *artifact*: one program built for one target with one set of
build options, keyed by the structural hash of the lowered module + target + options.
The original on each stack, every mutant with the same hash, and every pass mutant
whose build options coincide with another stack's are all one artifact, built and run
once.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from mutators import MutantStatus

from ..build import BuildOptions
from ..config import CampaignConfig, StackSpec
from ..records import Job, Verdict, VerdictRow
from ..runners import runner_class, runner_ref


@dataclass
class Artifact:
    """One build: a program (original or mutant) for one target with one set of options."""

    key: str
    stack: StackSpec  # the first stack that needs it (its target; options may differ)
    options: BuildOptions
    program_hash: str
    operator: str = ""  # empty: the original program
    site: int = 0
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (mutant id, stack name) it settles


@dataclass
class Plan:
    mutants: list  # mutators.Mutant, in enumeration order
    originals: dict[str, str]  # stack name -> artifact key
    artifacts: dict[str, Artifact]
    pairs: dict[tuple[str, str], str]  # (mutant id, stack name) -> artifact key
    fixed: list[VerdictRow]  # verdicts decided without building (equivalent, non_viable)
    population: dict[str, dict[str, int]] = field(default_factory=dict)  # stack -> operator -> sites

    @property
    def original_keys(self) -> list[str]:
        return list(dict.fromkeys(self.originals.values()))

    @classmethod
    def merge(cls, parts: list["Plan"]) -> "Plan":
        """One plan from the plans of several import paths (disjoint stacks and mutant ids;
        an artifact two paths share is one build settling both paths' pairs)."""
        merged = cls([], {}, {}, {}, [])
        for part in parts:
            merged.mutants += part.mutants
            merged.originals.update(part.originals)
            merged.pairs.update(part.pairs)
            merged.fixed += part.fixed
            merged.population.update(part.population)
            for key, artifact in part.artifacts.items():
                if key in merged.artifacts:
                    merged.artifacts[key].pairs.extend(artifact.pairs)
                else:
                    merged.artifacts[key] = artifact
        return merged


def artifact_key(program_hash: str, stack: StackSpec, options: BuildOptions) -> str:
    target = stack.target
    text = f"{program_hash}|{target.name}|{target.key()}|{options.key()}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def enumerate_selected(program, config: CampaignConfig) -> list:
    """Mutants of every chosen operator with its own site selection, in catalogue order.
    Positions past an operator's last site are a `ConfigError` naming the selection's key
    (the site count is known only now, with the program loaded; no job has started)."""
    import mutators
    from mutators.base import SiteSelectionError

    from ..errors import ConfigError

    by_selection: dict = {}
    for name, selection in config.operators.items():
        by_selection.setdefault(selection, []).append(name)
    found = {}
    for selection, names in by_selection.items():
        try:
            mutants = mutators.enumerate_mutants(program.mod, operators=names, selection=selection, with_diff=True)
        except SiteSelectionError as err:
            own = config.raw.get("mutants", {}).get("operators")
            key = (f"mutants.operators.{err.operator}" if isinstance(own, dict)
                   and own.get(err.operator, "default") != "default" else "mutants.select")
            raise ConfigError(f"config key '{key}.positions': {err}") from None
        for m in mutants:
            found[m.id] = m
    order = {op.name: i for i, op in enumerate(mutators.catalogue())}
    return sorted(found.values(), key=lambda m: (order[m.operator.partition("(")[0]], m.site_index))


def make_plan(program, config: CampaignConfig, mutants: list, stacks: list[StackSpec] | None = None) -> Plan:
    """Every (mutant, stack) pair mapped to the artifact that settles it, or to a fixed
    verdict; ``stacks``: the stacks that take ``program``'s import path (default: all)."""
    from mutators.base import lower, structural_hash_hex

    lowered = lower(program.mod)
    original_hash = structural_hash_hex(lowered)
    artifacts: dict[str, Artifact] = {}
    originals, pairs, fixed = {}, {}, []

    def need(program_hash, stack, options, operator="", site=0) -> str:
        key = artifact_key(program_hash, stack, options)
        if key not in artifacts:
            artifacts[key] = Artifact(key, stack, options, program_hash, operator, site)
        return key

    stacks = config.stacks if stacks is None else stacks
    for stack in stacks:
        originals[stack.name] = need(original_hash, stack, stack.options)
    for m in mutants:
        for stack in stacks:
            if m.status is not MutantStatus.PENDING:
                fixed.append(VerdictRow(m.id, stack.name, Verdict(m.status.value), m.reason))
                continue
            if m.build_options:
                options = stack.options.with_overrides(m.build_options)
                if options.key() == stack.options.key():
                    fixed.append(VerdictRow(m.id, stack.name, Verdict.EQUIVALENT,
                                            f"builds exactly as the stack does ({options.label()} = "
                                            f"{stack.options.label()})"))
                    continue
                key = need(original_hash, stack, options)
            else:
                key = need(m.hash, stack, stack.options, m.operator, m.site_index)
            artifacts[key].pairs.append((m.id, stack.name))
            pairs[(m.id, stack.name)] = key
    population = site_population(program.mod, lowered, config, mutants)
    return Plan(mutants, originals, artifacts, pairs, fixed, {s.name: population for s in stacks})


def site_population(mod, lowered, config: CampaignConfig, mutants: list) -> dict[str, int]:
    """How many sites each chosen operator has in the program before its selection picks
    some (what a sampled score stands for). An ``all`` selection took every site, so its
    mutants are counted; the others count the operator's sites (no mutant is made)."""
    import mutators

    out = {}
    for name, selection in config.operators.items():
        if selection.mode == "all":
            out[name] = sum(m.operator == name for m in mutants)
        else:
            op = mutators.operator_by_name(name)
            out[name] = len(op.sites(lowered if op.works_on == "lowered" else mod))
    return out


def make_job(artifact: Artifact, config: CampaignConfig, out_dir: Path, original_key: str = "") -> Job:
    """The worker's instructions for one artifact (the only place a Job is built);
    ``original_key`` is its stack's original, which a fast-kill job compares with."""
    from ..build import host_cpu_name
    from .rundir import outputs_path

    stack = artifact.stack
    fast_kill = config.fast_kill and bool(artifact.pairs) and bool(original_key) and original_key != artifact.key
    return Job(
        key=artifact.key, model=config.model, pretrained=config.pretrained, preset=config.preset,
        images=config.images, variant=dataclasses.replace(stack.variant, options=artifact.options),
        runner=runner_ref(stack.runner), operator=artifact.operator, site=artifact.site,
        program_hash=artifact.program_hash if artifact.operator else "",
        cache_dir=config.build_cache or (str(out_dir / "cache") if config.keep_artifacts else ""),
        log_path=str(out_dir / "logs" / f"{artifact.key}.log"), repeats=config.repeats,
        pairs=tuple(artifact.pairs),
        share_kernels=config.share_builds and runner_class(stack.runner).builds
        and artifact.options.key() == stack.options.key(),
        fast_kill=str(config.criterion) if fast_kill else "",
        reference=str(outputs_path(out_dir, original_key)) if fast_kill else "",
        stack=stack.name, host_cpu=host_cpu_name() if stack.target_name == "cpu" else "",
        repeat_in=config.repeat_in, keep_passes=config.repeats > 1 and _pass_method(config) != "first",
        timing_calls=config.timing.calls if config.timing else 1,
        threads=config.timing.threads if config.timing else 0, trusted=config.trusted,
        run_threads=config.threads or (config.timing.threads if config.timing else 0),
    )


def _pass_method(config: CampaignConfig) -> str:
    return config.passes.method if config.passes is not None else "first"
