"""mutatenn.api from Python: load_run, run_campaign (tests/test_reuse.py runs it with a
dict config), compare, and what a notebook shows."""
from __future__ import annotations

import pandas as pd
import pytest

from mutatenn import api
from mutatenn.errors import InputError


def test_load_run_gives_the_tables_and_the_notebook_view(digits_campaign):
    run = api.load_run(digits_campaign)
    assert run.kind == "campaign" and run.meta["model_name"]
    verdicts = pd.read_csv(digits_campaign / "verdicts.csv")
    assert list(run.verdicts["verdict"]) == list(verdicts["verdict"])
    assert set(run.kill_matrix.columns) == {"mutant_id", "stack", "image", "killed_by_image"}
    assert len(run.kill_matrix) == verdicts.verdict.isin(["killed", "survived"]).sum() * run.meta["image_count"]
    assert set(run.per_image["stack"]) == {"cpu-O2"} and len(run.mutants) == len(verdicts)
    table = run.score_table()
    assert list(table["stack"]) == ["cpu-O2"] and table.loc[0, "killed"] == (verdicts.verdict == "killed").sum()
    html = run._repr_html_()
    assert "<table" in html and "cpu-O2" in html and f"{table.loc[0, 'score']:.4g}" in html


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(InputError, match="not a run folder"):
        api.load_run(tmp_path)


def test_compare_from_python(tmp_path):
    run = api.compare("digits", "digits:8", ["tvm:cpu:O0"], baseline="torch", out=tmp_path / "cmp", report=False)
    assert run.kind == "comparison" and run.errors == {}
    row = run.comparison.set_index("variant").loc["tvm:cpu:O0"]
    assert row["baseline"] == "torch" and row["top1_agreement"] == 1.0
    assert "tvm:cpu:O0" in run._repr_html_()
