"""A mutation campaign: the original program and its mutants, built for every stack, run
over an image set, compared with the original on the same stack, judged, stored, scored.

Rooms: `plan` (mutants x stacks -> builds and jobs), `job` (one build-and-run in a
worker), `dispatch` (loky or Dask workers, crash isolation), `judge` (outputs ->
verdict row), `engine` (orchestration and resume), `tables` (pandas tables),
`rundir` (the run folder), `faults` (test-only fault injection).
"""
from .engine import CampaignResult, run_campaign
from .rundir import render_run_report
from .tables import format_scores, stacks_below

__all__ = ["CampaignResult", "run_campaign", "render_run_report", "format_scores", "stacks_below"]
