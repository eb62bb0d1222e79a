"""HTML reports for MutateNN run folders (docs/RUN-FOLDER.md).

Input is the run folder's tables and metadata only; this package knows nothing
about TVM. Entry points: `load_run_folder`, `render_report`,
`render_campaign_report`, `render_comparison_report`.
"""
from .render import render_campaign_report, render_comparison_report, render_report
from .rundata import RunData, RunFolderError, load_run_folder

__all__ = [
    "RunData", "RunFolderError", "load_run_folder", "render_report",
    "render_campaign_report", "render_comparison_report",
]
