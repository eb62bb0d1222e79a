"""Render run folders to one self-contained HTML file."""
from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import jinja2

from runfolder.verdicts import VERDICT_TABLE, score_formula

from .campaign import build_campaign_context
from .comparison import build_comparison_context
from .rundata import VERDICTS, RunData, RunFolderError, load_run_folder

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # Autoescape everything: model, operator, image and file names are untrusted text.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    env.globals["known_verdicts"] = VERDICTS
    env.globals["verdict_table"] = VERDICT_TABLE  # colours and words of every verdict
    env.globals["score_formula"] = score_formula()
    return env


def _write_atomically(text: str, out_path) -> Path:
    """Write to a temporary file beside the target, then rename it into place."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def render_page(template: str, context: dict, out_path) -> Path:
    """One page from one of this room's templates (they extend base.html.j2), written
    atomically: for pages of other commands (``mutatenn localize``) that share its look."""
    return _write_atomically(_environment().get_template(template).render(context), out_path)


def _common(run: RunData) -> dict:
    return {
        "version": str(run.meta.get("mutatenn_version", "")),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_campaign_report(run: RunData, out_path) -> Path:
    """Write the campaign page (scores, heatmap, mutant table, details) to out_path."""
    context = {**_common(run), **build_campaign_context(run)}
    html = _environment().get_template("campaign.html.j2").render(context)
    return _write_atomically(html, out_path)


def render_comparison_report(run: RunData, out_path) -> Path:
    """Write the comparison page (pairwise heatmaps, latency, disagreements) to out_path."""
    context = {**_common(run), **build_comparison_context(run)}
    html = _environment().get_template("comparison.html.j2").render(context)
    return _write_atomically(html, out_path)


def render_report(run_dir) -> Path:
    """Render RUN_DIR/report.html for a campaign or comparison run folder."""
    run = load_run_folder(run_dir)
    out = Path(run_dir) / "report.html"
    if run.kind == "campaign":
        return render_campaign_report(run, out)
    if run.kind == "comparison":
        return render_comparison_report(run, out)
    raise RunFolderError(f"{run_dir}: unknown run kind {run.kind!r}")
