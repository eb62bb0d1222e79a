"""Parameterised mutation operators: parameters in the config, operator names that carry
them (so worker processes rebuild the same mutant), the catalogue's defaults, bad values."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import campaign_config, campaign_table, run_cli

import mutators
from mutatenn.cli import main
from mutatenn.config import parse_config

OPERATORS = {"tir_store_add": {"delta": -1e-8, "positions": [0]}, "tir_store_scale": {"factor": 3, "positions": [0]},
             "tir_store_cast": {"dtype": "int8", "positions": [0]}, "insert_transpose_before": {"arg": 1}}


def write_config(path, operators: dict):
    return campaign_config(path, images="digits:16", operators=operators, run={"timeout": 300, "jobs": 2})


def test_parameters_reach_the_built_mutants(tmp_path):
    config = write_config(tmp_path / "c.toml", OPERATORS)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-report"]) == 0
    mutants = {m["id"]: m for m in json.loads((out / "mutants.json").read_text())}
    assert {"tir_store_add(delta=-1e-08)#0", "tir_store_scale(factor=3)#0", "tir_store_cast(dtype=int8)#0"} <= set(mutants)
    assert "T.float32(-1e-08)" in mutants["tir_store_add(delta=-1e-08)#0"]["diff"]
    assert "T.float32(3.0)" in mutants["tir_store_scale(factor=3)#0"]["diff"]
    assert 'T.Cast("int8"' in mutants["tir_store_cast(dtype=int8)#0"]["diff"]
    weights = [m for i, m in mutants.items() if i.startswith("insert_transpose_before(arg=1)#")]
    assert weights and all("(argument 1)" in m["site"] for m in weights)  # the weight, not the data input
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    built = verdicts[verdicts["verdict"].isin(["killed", "survived"])]["mutant_id"]
    # Workers rebuilt each from its name alone (a wrong rebuild fails the planned-hash check).
    assert {"tir_store_add(delta=-1e-08)#0", "tir_store_scale(factor=3)#0"} <= set(built)


def test_a_named_parameterised_operator_equals_its_fixed_twin_at_the_defaults(digits_program):
    one = mutators.make_mutant(digits_program.mod, "tir_store_add", 0, with_diff=False)
    twin = mutators.make_mutant(digits_program.mod, "tir_store_add1", 0, with_diff=False)
    again = mutators.make_mutant(digits_program.mod, "tir_store_add(delta=1)", 0, with_diff=False)
    assert one.hash == twin.hash == again.hash


def test_default_campaigns_take_each_mutation_once():
    config = parse_config(campaign_table(images="digits:4", stacks=[{"target": "cpu"}]))
    assert not {"tir_store_add", "tir_store_scale", "tir_store_cast", "tir_cond_rhs_shift"} & set(config.operators)
    assert {"tir_store_add1", "tir_store_scale2", "insert_transpose_before"} <= set(config.operators)


@pytest.mark.parametrize("entry, message", [
    ({"tir_store_add": {"step": 1}}, "has no parameter 'step' (parameters: delta)"),
    ({"tir_store_add": {"delta": "x"}}, "delta must be a finite number"),
    ({"tir_store_add": {"delta": 0}}, "delta = 0 changes nothing"),
    ({"tir_store_cast": {"dtype": "float8"}}, "dtype must be one of float16, bfloat16"),
    ({"insert_transpose_before": {"arg": -2}}, "arg must be an argument index"),
    ({"tir_lt_to_le": {"delta": 1}}, "has no parameter 'delta' (parameters: none)"),
    ({"insert_exp_after": {"ops": "conv2d+pool"}}, "ops must be 'all' or kinds of conv2d, matmul"),
    ({"tir_cond_rhs_shift": {"cmp": "<"}}, "cmp must be one of any, lt, le"),
    ({"tir_store_cast(dtype=int4)": "first"}, "dtype must be one of"),
    ({"tir_store_cast(dtype=int8)": {"dtype": "int16"}}, "in the name or in the table, not both"),
])
def test_bad_parameters_are_one_line_naming_the_key(tmp_path, capsys, entry, message):
    config = write_config(tmp_path / "c.toml", entry)
    code = main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("mutatenn: error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0], err
    assert "mutants.operators." in errors[0] and not (tmp_path / "run").exists()


def test_the_catalogue_lists_parameters_and_defaults():
    proc = run_cli("mutants", "--list-operators", "--json")
    listed = {op["name"]: op["params"] for op in json.loads(proc.stdout)}
    assert listed["tir_store_add"] == {"delta": 1} and listed["tir_store_cast"] == {"dtype": "float16"}
    assert listed["insert_transpose_before"] == {"arg": -1, "ops": "all"} and listed["tir_lt_to_le"] == {}
    assert listed["insert_exp_after"] == {"ops": "all"} and listed["tir_cond_rhs_shift"] == {"delta": 1, "cmp": "any"}


def test_the_paper_example_runs_its_whole_mutation_list(tmp_path):
    """examples/mutatenn-paper.toml: the study's 22 configured mutations, each with its
    comment, run as one campaign; every operator with a site on digits is built and judged."""
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "mutatenn-paper.toml"
    lines = example.read_text().splitlines()
    start, end = lines.index("[mutants.operators]"), lines.index("[[stacks]]")
    entries = [i for i in range(start + 1, end) if lines[i] and not lines[i].startswith("#")]
    assert len(entries) == 22 and all(lines[i - 1].startswith("# ") for i in entries)
    configured = parse_config(__import__("tomllib").loads(example.read_text()), base_dir=example.parent).operators
    assert len(configured) == 22
    proc = run_cli("run", str(example), "--out", str(tmp_path / "run"), "--quiet", "--no-report")
    assert proc.returncode == 0, proc.stderr
    mutants = json.loads((tmp_path / "run" / "mutants.json").read_text())
    built = {m["operator"] for m in mutants}
    assert built <= set(configured) and len(built) == len(mutants) == 18  # first site of each that has one
    verdicts = pd.read_csv(tmp_path / "run" / "verdicts.csv")
    assert len(verdicts) == 18 and set(verdicts["verdict"]) <= {"killed", "survived", "crashed", "memory_error",
                                                                 "timed_out", "build_error", "non_viable", "equivalent"}
    assert "tir_store_cast(dtype=int8)" in built and "insert_transpose_before(arg=1, ops=conv2d+matmul)" in built
