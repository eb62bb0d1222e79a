"""Mutation campaigns end to end: real TVM builds of the bundled digits CNN in worker processes.

The campaigns here use operators whose mutants stay inside their buffers (store arithmetic,
casts, pass options): a mutant that reads out of bounds sees whatever memory lies there,
so its verdict may change from run to run, and the tests compare verdicts across runs.
"""
from __future__ import annotations

import copy
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, campaign_table, free_port, run_cli, write_toml

from mutatenn.cli import main

# verdicts.csv: the head columns, in this order, are the contract; every metric and the
# tail columns are there too (a metric added to the catalogue adds a column).
VERDICT_HEAD = ["mutant_id", "operator", "level", "site", "stack", "verdict", "reason"]
VERDICT_METRICS = ["top1_agreement", "topk_overlap", "kendall_tau", "rbo", "max_abs_error", "rel_l2", "cosine",
                   "latency_ratio"]
VERDICT_TAIL = ["flipped", "build_s", "run_s", "log_tail", "unstable", "images_run", "passes_killed", "triage"]
VERDICTS = ["killed", "survived", "crashed", "memory_error", "timed_out", "build_error", "non_viable", "equivalent"]

CAMPAIGN = {"select": {"sample": 2, "seed": 5},
            "operators": {"tir_store_add1": "default", "tir_store_scale2": "default",
                          "tir_store_cast_int8": {"positions": [0]}, "pass_opt_level": "all"},
            "stacks": [{"name": "cpu-O0", "target": "cpu", "opt_level": 0},
                       {"name": "cpu-O2", "target": "cpu", "opt_level": 2}],
            "criterion": "top1_agreement < 1.0"}


def config_table(images: str = "digits:40", timeout: int = 300, **run) -> dict:
    """`CAMPAIGN` on ``images``; ``run``: [run] keys beyond the timeout, the cap and keep_artifacts."""
    return campaign_table(**CAMPAIGN, images=images,
                          run={"timeout": timeout, "per_image_cap": 5, "keep_artifacts": True, **run})


def write_config(folder: Path, name: str = "campaign.toml", images: str = "digits:40", timeout: int = 300,
                 **run) -> Path:
    return write_toml(folder / name, config_table(images, timeout, **run))


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
    columns = list(verdicts.columns)
    assert columns[:len(VERDICT_HEAD)] == VERDICT_HEAD
    assert set(VERDICT_METRICS + VERDICT_TAIL) <= set(columns)
    assert set(verdicts["verdict"]) <= set(VERDICTS)
    assert {"killed", "survived", "equivalent"} <= set(verdicts["verdict"])
    assert (verdicts["unstable"] == "").all()  # repeats = 1: stability not measured
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
    assert list(scores.columns[:3]) == ["stack", "group", "key"]
    assert {*VERDICTS, "score", "unstable", "score_low", "score_high", "sampled", "population"} <= set(scores.columns)
    assert (scores["unstable"] == "").all()  # not measured in a run with repeats = 1
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


HANG_TIMEOUT_S = 75


def test_a_segfault_is_crashed_and_a_hang_is_timed_out(tmp_path):
    # Both cpu stacks share pass_opt_level#1's build (O1 on cpu), so its crash settles both pairs.
    # Two inference passes per build; one mutant's second pass is perturbed on purpose.
    # Faults are injected through the test-only environment hook, never through the config.
    faults = {"segfault": ["pass_opt_level#1"], "hang": ["tir_store_cast_int8#0@cpu-O2"],
              "unstable": ["tir_store_cast_int8#0@cpu-O0"]}
    # The timeout leaves a loaded machine time to build the originals (30 s was too little
    # with a second test process and its jobs on 2 cores); only the hung job waits it out.
    config = write_config(tmp_path, images="digits:20", timeout=HANG_TIMEOUT_S, repeats=2)
    result = run_cli("run", str(config), "--out", str(tmp_path / "run"), "--jobs", "2", "--quiet",
                     env={"MUTATENN_TEST_FAULTS": json.dumps(faults)})
    assert result.returncode == 0, result.stderr
    verdicts = pd.read_csv(tmp_path / "run" / "verdicts.csv", keep_default_na=False).set_index(["mutant_id", "stack"])
    for stack in ("cpu-O0", "cpu-O2"):
        crashed = verdicts.loc[("pass_opt_level#1", stack)]
        assert crashed["verdict"] == "crashed"
        assert "Segmentation fault" in crashed["reason"]
        assert "fault injection: segfault" in crashed["log_tail"]
    hung = verdicts.loc[("tir_store_cast_int8#0", "cpu-O2")]
    assert hung["verdict"] == "timed_out" and f"{HANG_TIMEOUT_S} s" in hung["reason"]
    assert verdicts.loc[("tir_store_cast_int8#0", "cpu-O0")]["verdict"] in ("killed", "survived")
    others = verdicts.drop([("pass_opt_level#1", "cpu-O0"), ("pass_opt_level#1", "cpu-O2"),
                            ("tir_store_cast_int8#0", "cpu-O2")])
    assert set(others["verdict"]) <= {"killed", "survived", "equivalent"}
    scores = pd.read_csv(tmp_path / "run" / "scores.csv").set_index(["stack", "group"]).loc[("cpu-O2", "all")]
    assert scores["crashed"] == 1 and scores["timed_out"] == 1

    # Stability: measured on every judged pair; only the perturbed build is unstable (these
    # operators stay inside their buffers, so every other build gives the same bits twice).
    judged = verdicts[verdicts["verdict"].isin(["killed", "survived"])]
    assert (judged["unstable"] != "").all()
    assert judged[judged["unstable"].astype(str) == "1"].index.tolist() == [("tir_store_cast_int8#0", "cpu-O0")]
    assert (verdicts[~verdicts["verdict"].isin(["killed", "survived"])]["unstable"] == "").all()
    scores = pd.read_csv(tmp_path / "run" / "scores.csv").set_index(["stack", "group", "key"])
    assert scores.loc[("cpu-O0", "all", "all"), "unstable"] == 1
    assert scores.loc[("cpu-O2", "all", "all"), "unstable"] == 0
    assert scores.loc[("cpu-O0", "operator", "tir_store_cast_int8"), "unstable"] == 1
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
        images = db.execute("SELECT unstable_images FROM verdicts WHERE mutant_id = ? AND stack = ?",
                            ("tir_store_cast_int8#0", "cpu-O0")).fetchone()[0]
    assert json.loads(images) == [0]  # the fault perturbs the first image only
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["repeats"] == 2 and run["unstable_originals"] == []
    html = (tmp_path / "run" / "report.html").read_text()
    assert html.count('class="tag unstable"') >= 2  # the table row and the detail row


def _set(key: str, value):
    """An edit of a config dict: ``key`` (dotted; numbers index lists) set to ``value``,
    or removed when ``value`` is None."""
    def edit(raw: dict) -> None:
        *path, last = [int(k) if k.isdigit() else k for k in key.split(".")]
        table = raw
        for k in path:
            table = table[k]
        if value is None:
            del table[last]
        else:
            table[last] = value
    return edit


@pytest.mark.parametrize("edit, key", [
    (_set("mutants.operators", {"tir_no_such_op": "default", "tir_store_scale2": "default",
                                "tir_store_cast_int8": {"positions": [0]}, "pass_opt_level": "all"}),
     "mutants.operators"),
    (_set("stacks.1.target", "tpu"), "stacks[1].target"),
    (_set("kill.criterion", "top1_agreement < lots"), "kill.criterion"),
    (_set("kill.criterion", "rel_l2 < 0.1"), "kill.criterion"),
    (_set("model", None), "'model' is missing"),
    (_set("model.spec", "no/such/model.onnx"), "model.spec"),
    (_set("mutants.select", {"sample": 0}), "mutants.select.sample"),
    (_set("mutants.operators.tir_store_cast_int8", "middle"), "mutants.operators.tir_store_cast_int8"),
    (_set("stacks.0.opt_level", 7), "stacks[0].opt_level"),
    (_set("run.repeats", 0), "run.repeats"),
    (_set("run.repeats", 500), "run.repeats"),
    (_set("run.repeats", "twice"), "run.repeats"),
    (_set("faults", {"segfault": ["x#0"]}), "'faults': unknown section"),
    (_set("stacks.0.schedule", "fast"), "stacks[0].schedule"),
    (_set("stacks.0", {"name": "cpu-O0", "target": "cuda", "opt_level": 0, "schedule": "tuned"}),
     "stacks[0].schedule"),
    (_set("run.fast_kill", "yes"), "run.fast_kill"),
    (_set("run.build_cache", "campaign.toml"), "run.build_cache"),
])
def test_config_errors_name_the_key_and_exit_2(tmp_path, capsys, edit, key):
    good = config_table()
    write_toml(tmp_path / "campaign.toml", good)  # the file the run.build_cache case names
    raw = copy.deepcopy(good)
    edit(raw)
    assert raw != good
    bad = write_toml(tmp_path / "bad.toml", raw)
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


def test_a_store_from_before_the_stability_columns_still_opens_and_resumes(tmp_path):
    from mutatenn.store import ResultStore

    path = tmp_path / "results.sqlite"
    with sqlite3.connect(path) as db:  # the schema as the first release wrote it
        db.executescript("""
            CREATE TABLE artifacts (key TEXT PRIMARY KEY, stack TEXT NOT NULL, status TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT '', log_tail TEXT NOT NULL DEFAULT '', build_s REAL, run_s REAL,
                outputs TEXT, finished TEXT NOT NULL);
            CREATE TABLE verdicts (mutant_id TEXT NOT NULL, stack TEXT NOT NULL, verdict TEXT NOT NULL,
                reason TEXT NOT NULL, artifact TEXT, "values" TEXT NOT NULL, flipped INTEGER,
                flipped_images TEXT NOT NULL, build_s REAL, run_s REAL, log_tail TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (mutant_id, stack));
            INSERT INTO artifacts VALUES ('a1', 'cpu', 'done', '', '', 1.0, 0.5, 'outputs/a1.npz', 'then');
            INSERT INTO verdicts VALUES ('op#0', 'cpu', 'killed', 'r', 'a1', '{}', 2, '[1, 4]', 1.0, 0.5, '');
        """)
    store = ResultStore(path)
    try:
        old = store.finished_artifacts()["a1"]
        assert old["status"] == "done" and old["unstable_images"] is None
        assert store.verdicts()[0]["unstable"] is None and store.verdicts()[0]["flipped_images"] == [1, 4]
        store.record_artifact({"key": "a2", "stack": "cpu", "status": "done", "reason": "", "log_tail": "",
                               "build_s": 1.0, "run_s": 0.5, "outputs": "outputs/a2.npz", "unstable_images": [3]},
                              [{"mutant_id": "op#1", "stack": "cpu", "verdict": "survived", "reason": "",
                                "artifact": "a2", "values": {"rel_l2": 0.0}, "flipped": 0, "flipped_images": [],
                                "build_s": 1.0, "run_s": 0.5, "log_tail": "", "unstable": 1,
                                "unstable_images": [3]}], "now")
        assert store.finished_artifacts()["a2"]["unstable_images"] == [3]
        new = {v["mutant_id"]: v for v in store.verdicts()}["op#1"]
        assert new["unstable"] == 1 and new["unstable_images"] == [3] and new["values"] == {"rel_l2": 0.0}
    finally:
        store.close()


def test_discrepancies_are_different_judgements_not_equivalence():
    from mutatenn.campaign.tables import discrepancy_table

    rows = [("a#0", "killed", "survived", 1, 0), ("b#0", "equivalent", "survived", None, 0),
            ("c#0", "crashed", "killed", None, 0), ("d#0", "killed", "killed", 1, 1),
            ("e#0", "non_viable", "non_viable", None, None)]
    verdicts = pd.DataFrame(
        [{"mutant_id": m, "operator": m[0], "level": "tir", "site": "s", "stack": stack, "verdict": v,
          "unstable": u} for m, v1, v2, u1, u2 in rows for stack, v, u in (("O0", v1, u1), ("O2", v2, u2))])
    verdicts["unstable"] = verdicts["unstable"].astype("Int64")
    table = discrepancy_table(verdicts, ["O0", "O2"])
    assert table["mutant_id"].tolist() == ["a#0", "c#0"]
    assert list(table.columns) == ["mutant_id", "operator", "level", "site", "O0", "O2", "unstable_on"]
    assert table.set_index("mutant_id")["unstable_on"].to_dict() == {"a#0": "O0", "c#0": ""}
