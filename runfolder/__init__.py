"""The run-folder contract, imported by both sides: the engine (`mutatenn`) writes run
folders with these words and columns, the report (`reports`) reads them. It imports only
the standard library, so neither side has to import the other."""
from . import schema, verdicts
from .verdicts import VERDICT_INFO, VERDICT_TABLE, Verdict, VerdictInfo

__all__ = ["schema", "verdicts", "Verdict", "VerdictInfo", "VERDICT_TABLE", "VERDICT_INFO"]
