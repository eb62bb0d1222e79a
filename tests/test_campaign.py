"""Mutation campaigns end to end: real TVM builds of the bundled digits CNN in worker processes.

The campaigns here use operators whose mutants stay inside their buffers (store arithmetic,
casts, pass options): a mutant that reads out of bounds sees whatever memory lies there,
so its verdict may change from run to run, and the tests compare verdicts across runs.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, free_port, run_cli
from mutatenn.cli import main

VERDICT_COLUMNS = ["mutant_id", "operator", "level", "site", "stack", "verdict", "reason", "top1_agreement",
                   "topk_overlap", "kendall_tau", "rbo", "max_abs_error", "rel_l2", "cosine", "latency_ratio",
                   "flipped", "build_s", "run_s", "log_tail"]
VERDICTS = ["killed", "survived", "crashed", "timed_out", "non_viable", "equivalent"]

BASE_CONFIG = """
[model]
spec = "digits"
[images]
spec = "{images}"
[mutants]
select = {{ sample = 2, seed = 5 }}
[mutants.operators]
tir_store_add1 = "default"
tir_store_scale2 = "default"
tir_store_cast_int8 = {{ positions = [0] }}
pass_opt_level = "all"
[[stacks]]
name = "cpu-O0"
target = "cpu"
opt_level = 0
[[stacks]]
name = "cpu-O2"
target = "cpu"
opt_level = 2
[kill]
criterion = "top1_agreement < 1.0"
[run]
timeout = {timeout}
per_image_cap = 5
keep_artifacts = true
{extra}
"""


def write_config(folder: Path, name: str = "campaign.toml", images: str = "digits:40", timeout: int = 300,
                 extra: str = "") -> Path:
    path = folder / name
    path.write_text(BASE_CONFIG.format(images=images, timeout=timeout, extra=extra))
    return path


def verdict_pairs(run_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(run_dir / "verdicts.csv", keep_default_na=False)
    return table[["mutant_id", "stack", "verdict"]].sort_values(["mutant_id", "stack"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """One uninterrupted campaign, run in this process as `mutatenn run` would."""
    folder = tmp_path_factory.mktemp("campaign")
    config = write_config(folder)
    out = folder / "run"
    start = time.perf_counter()
    code = main(["run", str(config), "--out", str(out), "--jobs", "2", "--quiet"])
    assert code == 0
    return {"config": config, "out": out, "seconds": time.perf_counter() - start}


def test_campaign_writes_the_documented_run_folder(campaign):
    out = campaign["out"]
    for name in ("results.sqlite", "mutants.json", "verdicts.csv", "per_image.csv", "scores.csv",
                 "discrepancies.csv", "images.json", "run.json"):
        assert (out / name).is_file(), name
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    assert list(verdicts.columns) == VERDICT_COLUMNS
    assert set(verdicts["verdict"]) <= set(VERDICTS)
    assert {"killed", "survived", "equivalent"} <= set(verdicts["verdict"])
    mutants = json.loads((out / "mutants.json").read_text())
    assert len(verdicts) == len(mutants) * 2
    assert {"id", "operator", "level", "site", "status", "reason", "hash", "diff"} <= set(mutants[0])
    # A pass mutant that builds exactly as the stack does is equivalent there, and only there.
    pass0 = verdicts[verdicts["mutant_id"] == "pass_opt_level#0"].set_index("stack")["verdict"]
    assert pass0["cpu-O0"] == "equivalent" and pass0["cpu-O2"] != "equivalent"
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "campaign" and run["image_count"] == 40
    assert [s["name"] for s in run["stacks"]] == ["cpu-O0", "cpu-O2"]
    # Shared builds: pass mutants reuse the other stack's original, so fewer builds than pairs.
    judged = verdicts[verdicts["verdict"].isin(["killed", "survived"])]
    assert run["builds"] < len(judged) + 2
    assert len(list((out / "cache").glob("*.so"))) == run["builds"]
    per_image = pd.read_csv(out / "per_image.csv", keep_default_na=False)
    assert per_image.groupby(["mutant_id", "stack"]).size().max() <= 5
    killed = verdicts[verdicts["verdict"] == "killed"].iloc[0]
    rows = per_image[(per_image["mutant_id"] == killed["mutant_id"]) & (per_image["stack"] == killed["stack"])]
    assert rows["flipped"].astype(str).eq("True").sum() == min(int(killed["flipped"]), 5)


def test_scores_agree_with_verdicts(campaign):
    out = campaign["out"]
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    assert list(scores.columns) == ["stack", "group", "key", *VERDICTS, "score"]
    for row in scores.itertuples(index=False):
        part = verdicts[verdicts["stack"] == row.stack]
        if row.group == "operator":
            part = part[part["operator"] == row.key]
        elif row.group == "level":
            part = part[part["level"] == row.key]
        counts = part["verdict"].value_counts()
        for verdict in VERDICTS:
            assert getattr(row, verdict) == counts.get(verdict, 0), (row, verdict)
        scored = sum(counts.get(v, 0) for v in ("killed", "survived", "crashed", "timed_out"))
        if scored:
            assert float(row.score) == pytest.approx(100.0 * counts.get("killed", 0) / scored, abs=0.01)
        else:
            assert row.score == ""
    assert set(scores[scores["group"] == "all"]["stack"]) == {"cpu-O0", "cpu-O2"}


def test_store_keeps_every_operator_value_and_the_flipped_images(campaign):
    with sqlite3.connect(campaign["out"] / "results.sqlite") as db:
        rows = db.execute('SELECT "values", flipped, flipped_images FROM verdicts WHERE verdict = "killed"').fetchall()
    assert rows
    values, flipped, images = rows[0]
    assert {"top1_agreement", "kendall_tau", "rel_l2", "latency_ratio"} <= set(json.loads(values))
    assert len(json.loads(images)) == flipped > 0


def test_kill_9_of_the_coordinator_then_rerun_loses_nothing(campaign, tmp_path):
    config = campaign["config"]
    out = tmp_path / "run"
    args = [sys.executable, "-m", "mutatenn.cli", "run", str(config), "--out", str(out), "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = out / "results.sqlite"
    deadline = time.monotonic() + 240
    finished = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if store.exists():
                try:
                    with sqlite3.connect(store, timeout=1) as db:
                        finished = db.execute("SELECT count(*) FROM artifacts").fetchone()[0]
                except sqlite3.Error:
                    finished = 0
                if finished >= 4:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "the campaign finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with sqlite3.connect(store) as db:
        before = dict(db.execute("SELECT key, finished FROM artifacts").fetchall())
    assert len(before) >= 4
    result = run_cli("run", str(config), "--out", str(out), "--jobs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stdout  # progress notes go to stderr, and --quiet silences them
    with sqlite3.connect(store) as db:
        after = dict(db.execute("SELECT key, finished FROM artifacts").fetchall())
    # Finished jobs were kept as they were, not run again.
    assert {k: after[k] for k in before} == before
    assert len(after) > len(before)
    pd.testing.assert_frame_equal(verdict_pairs(out), verdict_pairs(campaign["out"]))


def test_a_segfault_is_crashed_and_a_hang_is_timed_out(tmp_path):
    # Both cpu stacks share pass_opt_level#1's build (O1 on cpu), so its crash settles both pairs.
    faults = '[faults]\nsegfault = ["pass_opt_level#1"]\nhang = ["tir_store_cast_int8#0@cpu-O2"]'
    config = write_config(tmp_path, images="digits:20", timeout=30, extra=faults)
    result = run_cli("run", str(config), "--out", str(tmp_path / "run"), "--jobs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    verdicts = pd.read_csv(tmp_path / "run" / "verdicts.csv", keep_default_na=False).set_index(["mutant_id", "stack"])
    for stack in ("cpu-O0", "cpu-O2"):
        crashed = verdicts.loc[("pass_opt_level#1", stack)]
        assert crashed["verdict"] == "crashed"
        assert "Segmentation fault" in crashed["reason"]
        assert "fault injection: segfault" in crashed["log_tail"]
    hung = verdicts.loc[("tir_store_cast_int8#0", "cpu-O2")]
    assert hung["verdict"] == "timed_out" and "30 s" in hung["reason"]
    assert verdicts.loc[("tir_store_cast_int8#0", "cpu-O0")]["verdict"] in ("killed", "survived")
    others = verdicts.drop([("pass_opt_level#1", "cpu-O0"), ("pass_opt_level#1", "cpu-O2"),
                            ("tir_store_cast_int8#0", "cpu-O2")])
    assert set(others["verdict"]) <= {"killed", "survived", "equivalent"}
    scores = pd.read_csv(tmp_path / "run" / "scores.csv").set_index(["stack", "group"]).loc[("cpu-O2", "all")]
    assert scores["crashed"] == 1 and scores["timed_out"] == 1


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace('tir_store_add1 = "default"', 'tir_no_such_op = "default"'), "mutants.operators"),
    (lambda t: t.replace('target = "cpu"\nopt_level = 2', 'target = "tpu"\nopt_level = 2'), "stacks[1].target"),
    (lambda t: t.replace('"top1_agreement < 1.0"', '"top1_agreement < lots"'), "kill.criterion"),
    (lambda t: t.replace('"top1_agreement < 1.0"', '"rel_l2 < 0.1"'), "kill.criterion"),
    (lambda t: t.replace('[model]\nspec = "digits"\n', ""), "'model' is missing"),
    (lambda t: t.replace('spec = "digits"\n', 'spec = "no/such/model.onnx"\n', 1), "model.spec"),
    (lambda t: t.replace("{ sample = 2, seed = 5 }", "{ sample = 0 }"), "mutants.select.sample"),
    (lambda t: t.replace("{ positions = [0] }", '"middle"'), "mutants.operators.tir_store_cast_int8"),
    (lambda t: t.replace("opt_level = 0", "opt_level = 7"), "stacks[0].opt_level"),
])
def test_config_errors_name_the_key_and_exit_2(tmp_path, capsys, edit, key):
    good = write_config(tmp_path).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(good))
    assert bad.read_text() != good
    out = tmp_path / "run"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mutatenn: error:")
    assert key in err
    assert not out.exists()  # checked before any work started


def test_rerun_with_a_different_config_refuses(campaign, tmp_path, capsys):
    other = write_config(tmp_path, images="digits:30")
    assert main(["run", str(other), "--out", str(campaign["out"]), "--quiet"]) == 2
    assert "different config" in capsys.readouterr().err


def test_unwritable_output_folder_is_refused(tmp_path, capsys):
    config = write_config(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["run", str(config), "--out", str(blocker / "run"), "--quiet"]) == 2
    assert "cannot write to output folder" in capsys.readouterr().err


def test_fail_under_exits_3_naming_the_stack(campaign, capsys):
    # The folder is complete: the rerun resumes with nothing left to build.
    args = ["run", str(campaign["config"]), "--out", str(campaign["out"]), "--quiet", "--no-report"]
    assert main(args + ["--fail-under", "100"]) == 3
    err = capsys.readouterr().err
    assert "below --fail-under 100%" in err and "cpu-O0" in err
    assert main(args + ["--fail-under", "0"]) == 0


def test_unreachable_scheduler_is_one_line(tmp_path, capsys):
    config = write_config(tmp_path)
    port = free_port()
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach the Dask scheduler" in err


def test_dask_cluster_gives_the_same_verdicts(campaign, tmp_path):
    port = free_port()
    scheduler = subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                                  str(port), "--no-dashboard"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    worker = None
    try:
        worker = subprocess.Popen([sys.executable, "-m", "dask", "worker", f"tcp://127.0.0.1:{port}",
                                   "--nworkers", "1", "--nthreads", "1", "--no-dashboard"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_worker(port)
        out = tmp_path / "run"
        result = run_cli("run", str(campaign["config"]), "--out", str(out), "--quiet",
                         "--scheduler", f"tcp://127.0.0.1:{port}")
        assert result.returncode == 0, result.stderr
        pd.testing.assert_frame_equal(verdict_pairs(out), verdict_pairs(campaign["out"]))
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _wait_for_worker(port: int, timeout: float = 90) -> None:
    from distributed import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with Client(f"tcp://127.0.0.1:{port}", timeout=5) as client:
                if client.scheduler_info().get("workers"):
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError("the Dask worker did not join the scheduler")
