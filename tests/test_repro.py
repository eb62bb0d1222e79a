"""`mutatenn repro`: one mutant of a real campaign rebuilt in a worker process, and the
standalone script it writes run in a fresh process (TVM and NumPy only)."""
from __future__ import annotations

import ast
import json
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from mutatenn.cli import main

KILLED, OTHER = "replace_activation_with_tanh#0", "remove_activation#0"


def _stored(run_dir, mutant_id: str) -> tuple[np.ndarray, list[str]]:
    """The campaign's stored outputs of the mutant's artifact, and the images that killed it."""
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        key = db.execute("SELECT artifact FROM verdicts WHERE mutant_id = ?", (mutant_id,)).fetchone()[0]
    with np.load(run_dir / "outputs" / f"{key}.npz") as data:
        logits = data["logits"]
    matrix = pd.read_csv(run_dir / "kill_matrix.csv", dtype=str)
    killing = matrix[(matrix["mutant_id"] == mutant_id) & (matrix["killed_by_image"] == "1")]["image"].tolist()
    return logits, killing


def test_script_reproduces_a_killed_mutant_bit_for_bit(digits_campaign, tmp_path, capsys):
    script = tmp_path / "bug" / "repro_tanh.py"
    assert main(["repro", str(digits_campaign), KILLED, "--stack", "cpu-O2", "--script", str(script)]) == 0
    out = capsys.readouterr().out
    assert "reproduced: yes (campaign: killed, now: killed)" in out
    assert "identical to the campaign's stored outputs, bit for bit" in out
    stored, killing = _stored(digits_campaign, KILLED)
    assert killing and all(f"{name} " in out for name in killing)

    files = script.with_name("repro_tanh_files")
    build = json.loads((files / "build.json").read_text())
    assert build["image_names"] == killing and build["target"]["kind"] == "llvm"
    imported = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported == {"json", "sys", "pathlib", "numpy", "tvm"}

    expected = stored[build["image_indices"]]
    for extra in ([], ["--prebuilt"]):  # compiled from the saved IR, then the exported library
        (files / "script_logits.npy").unlink(missing_ok=True)
        ran = subprocess.run([sys.executable, str(script), *extra], capture_output=True, text=True, cwd=tmp_path,
                             timeout=300)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "identical to the campaign's outputs, bit for bit" in ran.stdout
        got = np.load(files / "script_logits.npy")
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_a_mutant_that_segfaults_now_is_reported_not_fatal(digits_campaign):
    # The engine's fault hook makes this rebuild segfault in its worker: the CLI survives,
    # says how the worker died and shows its log; killed then, crashed now: not reproduced.
    faults = {"MUTATENN_TEST_FAULTS": json.dumps({"segfault": [OTHER]})}
    proc = run_cli("repro", str(digits_campaign), OTHER, env=faults)
    assert proc.returncode == 1, proc.stderr
    assert "now: crashed: worker process died" in proc.stdout
    assert "fault injection: segfault" in proc.stdout and "full log: " in proc.stdout
    assert "reproduced: no (campaign: killed, now: crashed)" in proc.stdout


@pytest.mark.parametrize("case, phrase", [
    ("not a campaign", "is not a campaign run folder"),
    ("a comparison", "is not a campaign run folder (run.json kind: 'comparison')"),
    ("unknown mutant", "is not in run"),
    ("unknown stack", "stack 'cpu-O9' is not in run"),
    ("survived", "is survived on stack 'cpu-O2': nothing to reproduce"),
    ("equivalent", "is equivalent on stack 'cpu-O2': nothing to reproduce"),
    ("script exists", "already exists"),
])
def test_bad_input_is_one_line_and_exit_2(digits_campaign, tmp_path, capsys, case, phrase):
    folder, mutant, extra = str(digits_campaign), KILLED, ["--stack", "cpu-O2"]
    if case == "not a campaign":
        folder = str(tmp_path)
    elif case == "a comparison":
        (tmp_path / "run.json").write_text(json.dumps({"kind": "comparison"}))
        folder = str(tmp_path)
    elif case == "unknown mutant":
        mutant = "replace_activation_with_tanh#7"
    elif case == "unknown stack":
        extra = ["--stack", "cpu-O9"]
    elif case == "survived":
        mutant = "replace_activation_with_tanh#1"
    elif case == "equivalent":
        mutant = "pass_opt_level#2"
    elif case == "script exists":
        (tmp_path / "r.py").write_text("")
        extra += ["--script", str(tmp_path / "r.py")]
    assert main(["repro", folder, mutant, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mutatenn: error:") and phrase in err and "\n" not in err
