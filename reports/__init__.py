"""HTML reports for MutateNN run folders (docs/RUN-FOLDER.md).

Input is the run folder's tables and metadata only; this package knows nothing
about TVM. Entry points: `load_run_folder`, `render_report`,
`render_campaign_report`, `render_comparison_report`; `reports.schema` is the
run-folder contract the engine writes by. Imports are lazy so that the engine's
worker processes can read `reports.schema` without loading pandas and jinja2.
"""
from importlib import import_module

_EXPORTS = {
    "RunData": "rundata", "RunFolderError": "rundata", "load_run_folder": "rundata",
    "render_report": "render", "render_campaign_report": "render", "render_comparison_report": "render",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"reports.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
