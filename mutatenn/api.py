"""MutateNN from Python (notebooks and scripts): the calls the command line makes.

    >>> from mutatenn import api
    >>> run = api.run_campaign("examples/digits.toml", out="runs/digits")   # or a dict of the TOML
    >>> run.scores[run.scores.group == "all"]            # a pandas DataFrame (scores.csv)
    >>> run                                              # in a notebook: the score table
    >>> again = api.load_run("runs/digits")              # any run folder, later
    >>> again.kill_matrix.groupby("image").killed_by_image.sum()
    >>> cmp = api.compare("digits", "digits:20", ["tvm:cpu:O0", "tvm:cpu:O3"], baseline="torch")
    >>> cmp.comparison[["variant", "top1_agreement", "latency_ratio"]]

`mutatenn run` and `mutatenn compare` are thin layers over `run_campaign` and `compare`;
every table is the run folder's file of the same name (docs/RUN-FOLDER.md).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runfolder.verdicts import VERDICT_NAMES

__all__ = ["Run", "run_campaign", "compare", "load_run", "default_run_dir"]

SCORE_VIEW = ["stack", *VERDICT_NAMES, "score", "score_low", "score_high"]


@dataclass
class Run:
    """One run folder read into pandas: a campaign (``verdicts``, ``scores``, ``per_image``,
    ``kill_matrix``, ``mutants``) or a comparison (``comparison``, ``pairwise``,
    ``per_image``); ``meta`` is run.json. Tables a kind does not have are empty."""

    path: Path
    meta: dict
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_image: pd.DataFrame = field(default_factory=pd.DataFrame)
    kill_matrix: pd.DataFrame = field(default_factory=pd.DataFrame)
    mutants: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    pairwise: pd.DataFrame = field(default_factory=pd.DataFrame)
    report: Path | None = None  # report.html when this call wrote it
    report_error: str = ""  # why report.html was not written ("" when it was, or was not asked for)
    errors: dict = field(default_factory=dict)  # comparison: variant -> why it failed
    user_errors: dict = field(default_factory=dict)  # comparison: the failures that were the user's input
    notes: list = field(default_factory=list)  # comparison: label spaces aligned

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", ""))

    def score_table(self) -> pd.DataFrame:
        """Per stack: the verdict counts and the mutation score with its 95% interval
        (campaign), or each variant against the baseline (comparison)."""
        if self.kind == "comparison":
            columns = [c for c in ("variant", "baseline", "top1_agreement", "topk_overlap", "rel_l2",
                                   "latency_ratio", "accuracy", "error") if c in self.comparison.columns]
            return self.comparison[columns].reset_index(drop=True)
        if self.scores.empty:
            return pd.DataFrame(columns=SCORE_VIEW)
        view = self.scores[self.scores["group"] == "all"]
        return view[[c for c in SCORE_VIEW if c in view.columns]].reset_index(drop=True)

    def _repr_html_(self) -> str:
        """What a notebook shows for a run: what was run, and its score table."""
        import html

        what = (f"{self.kind} of {self.meta.get('model_name') or self.meta.get('model')}, "
                f"{self.meta.get('image_count', '?')} images ({self.meta.get('images')})")
        return (f"<p><b>MutateNN</b> {html.escape(what)}: <code>{html.escape(str(self.path))}</code></p>"
                + self.score_table().to_html(index=False, na_rep="-", float_format=lambda x: f"{x:.4g}"))

    def __repr__(self) -> str:
        return f"Run({self.kind}, {str(self.path)!r}, {len(self.verdicts) or len(self.comparison)} rows)"


def default_run_dir(prefix: str) -> Path:
    """runs/PREFIX-TIMESTAMP (the default folder of a run)."""
    return Path("runs") / f"{prefix}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def load_run(path) -> Run:
    """A campaign or comparison run folder read into a `Run` (InputError, one line, when it is not one)."""
    from reports.rundata import RunFolderError, load_run_folder
    from runfolder.schema import KILL_MATRIX_COLUMNS, KILL_MATRIX_CSV

    from .errors import InputError

    try:
        data = load_run_folder(path)
    except RunFolderError as err:
        raise InputError(str(err)) from None
    run = Run(Path(path), data.meta, verdicts=data.verdicts, scores=data.scores, per_image=data.per_image,
              mutants=data.mutants, comparison=data.comparison, pairwise=data.pairwise)
    matrix = Path(path) / KILL_MATRIX_CSV
    if data.kind == "campaign":
        run.kill_matrix = (pd.read_csv(matrix, dtype={"mutant_id": str, "stack": str, "image": str})
                           if matrix.is_file() else pd.DataFrame(columns=KILL_MATRIX_COLUMNS))
    return run


def campaign_config(config, **run_overrides):
    """A `CampaignConfig` from a TOML path, a dict of the TOML (relative paths are the
    working folder's) or a `CampaignConfig`; ``run_overrides``: [run] keys (None: the config's).
    A path or dict is parsed and preflighted as one step (`preflight.checked_config`: every
    problem listed together); a `CampaignConfig` is preflighted when its campaign starts."""
    from .config import CampaignConfig, with_model_trusted, with_run_overrides
    from .preflight import check_build_cache_option, checked_config, load_checked_config

    scheduler = run_overrides.pop("scheduler", None)
    trusted = run_overrides.pop("trusted", False)
    if isinstance(config, CampaignConfig):
        parsed = config
    elif isinstance(config, dict):
        parsed = checked_config(json.loads(json.dumps(config)), base_dir=Path.cwd(), source="<dict>",
                                local_devices=not scheduler)
    else:
        parsed = load_checked_config(Path(config), local_devices=not scheduler)
    parsed = with_run_overrides(parsed, **run_overrides)
    if run_overrides.get("build_cache") is not None:
        check_build_cache_option(parsed.build_cache)
    return with_model_trusted(parsed) if trusted else parsed


def run_campaign(config, out=None, *, jobs: int | None = None, scheduler: str | None = None, quiet: bool = True,
                 report: bool = True, reuse=None, reuse_or_fresh: bool | None = None, fast_kill: bool | None = None,
                 build_cache=None, share_builds: bool | None = None, trusted: bool = False) -> Run:
    """Run a mutation campaign (a TOML path, a dict of its tables, or a parsed config) into
    ``out`` (default runs/campaign-TIMESTAMP; an interrupted run resumes there) and return it.
    The keyword arguments are `mutatenn run`'s options (``trusted``: --trust-model); None
    keeps the config's value.

        run = run_campaign({"model": {"spec": "digits"}, "images": {"spec": "digits:20"},
                            "mutants": {"operators": {"remove_activation": "all"}},
                            "stacks": [{"name": "cpu-O2", "target": "cpu", "opt_level": 2}]}, out="runs/x")
    """
    from .campaign import engine
    from .errors import InputError

    parsed = campaign_config(config, scheduler=scheduler, fast_kill=fast_kill, build_cache=build_cache,
                             share_builds=share_builds, reuse=reuse, reuse_or_fresh=reuse_or_fresh, trusted=trusted)
    if parsed.reuse_or_fresh and not parsed.reuse:
        raise InputError("--reuse-or-fresh goes with --reuse OLD_RUN (or the config's run.reuse)")
    result = engine.run_campaign(parsed, Path(out) if out is not None else default_run_dir("campaign"), jobs=jobs,
                                 scheduler=scheduler, quiet=quiet, render=report)
    run = load_run(result.out_dir)
    # The engine's own frames: the same rows as the CSV files, with the engine's dtypes.
    run.verdicts, run.scores = result.verdicts, result.scores
    run.report, run.report_error = result.report, result.report_error
    return run


def compare(model, images: str, variants, baseline: str, out=None, *, pretrained: str = "auto",
            preset: str | None = None, jobs: int = 1, report: bool = True, save_outputs=None,
            trusted: bool = False, threads: int | None = None) -> Run:
    """Deploy ``model`` as each of ``variants`` (a list, or the comma-separated text of
    `mutatenn compare --variants`) and compare each with ``baseline`` over ``images``; the
    run folder goes to ``out`` (default runs/compare-TIMESTAMP). Failed variants are in
    ``run.errors`` (and rows with an error in ``run.comparison``), not raised; ``trusted``:
    --trust-model; ``threads``: every runner's thread count (None: the cores this process may use).

        cmp = compare("digits", "digits:20", ["tvm:cpu:O0", "tvm:cpu:O3"], baseline="torch")
    """
    from .compare import compare as compare_variants
    from .errors import InputError

    if jobs < 1:
        raise InputError("--jobs must be at least 1")
    text = variants if isinstance(variants, str) else ",".join(variants)
    result = compare_variants(model, images, text, baseline, Path(out) if out is not None else default_run_dir("compare"),
                              pretrained=pretrained, preset=preset, jobs=jobs, render=report,
                              save_outputs=None if save_outputs is None else Path(save_outputs), trusted=trusted,
                              threads=threads)
    run = load_run(result.out_dir)
    run.comparison, run.pairwise = result.table, result.pairwise
    run.errors, run.user_errors, run.notes = dict(result.errors), dict(result.user_errors), list(result.notes)
    report_path = Path(result.out_dir) / "report.html"
    run.report = report_path if report and report_path.is_file() else None
    return run
