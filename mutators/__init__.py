"""IR mutation operators for TVM Relax / TensorIR modules.

Knows TVM; knows nothing about data sets, devices or reports. Entry points:
``catalogue()``, ``enumerate_mutants(mod, ...)`` and ``make_mutant(mod, operator, site)``.
"""
from .base import (  # noqa: F401
    EQUIVALENT,
    LEVELS,
    NON_VIABLE,
    PENDING,
    Example,
    Mutant,
    MutantStatus,
    MutationOperator,
    Outcome,
    Selection,
    Site,
)
from .generate import catalogue, enumerate_mutants, make_mutant, operator_by_name  # noqa: F401
