"""Typed errors of the engine. Library code raises these; only the CLI (`mutatenn.cli`)
turns one into a single ``mutatenn: error:`` line and its exit code."""
from __future__ import annotations


class MutateNNError(Exception):
    """Base of every error the engine raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InputError(MutateNNError):
    """Something the user gave is wrong (model, images, target, config, address, folder): exit 2."""

    exit_code = 2


class ConfigError(InputError):
    """A campaign config key is missing or wrong; the message names the key."""


class ConfigErrors(ConfigError):
    """Several config problems found in one read: one line each, all reported together."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class ModelError(InputError):
    """A model reference cannot be loaded or imported."""


class UntrustedModelError(ModelError):
    """A model file would run code, or read outside its folder, when loaded or run, and the
    user has not said they trust it (`mutatenn.models.safety`)."""


class ImageSetError(InputError):
    """An image set cannot be read."""


class TargetError(InputError):
    """A target or variant name is unknown, or the target cannot run here."""


class OutputFolderError(InputError):
    """An output or run folder cannot be used (it holds other results, or is not writable)."""


class CompressionError(MutateNNError):
    """A compression cannot apply to this model (an op the quantiser or converter lacks): that
    variant's or that (mutant, stack) pair's error, with its stage named; the others go on."""


class CampaignError(MutateNNError):
    """The campaign cannot go on (the original program fails on a stack): exit 1."""


def first_line(err: BaseException, limit: int = 500) -> str:
    """``Type: first line of the message``, at most ``limit`` characters: the one form in
    which a failure is stored in verdicts, logs and tables."""
    text = str(err).strip().splitlines()
    detail = text[0].strip() if text else ""
    return (f"{type(err).__name__}: {detail}" if detail else type(err).__name__)[:limit]
