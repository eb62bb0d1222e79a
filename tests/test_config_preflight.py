"""Config reading and preflight are two steps: `mutatenn.config` reads the text alone (a
run folder's stored config reads anywhere), `mutatenn.preflight` checks this machine and
its files before a campaign, a resume or a repro starts, with the lines parsing used to give."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import campaign_config, campaign_table

from mutatenn.build import parse_target
from mutatenn.cli import main
from mutatenn.config import parse_config
from mutatenn.errors import ConfigError
from mutatenn.preflight import RUN_CHECKS, SECTION_CHECKS, preflight
from mutatenn.tuning import database_dir
from mutatenn.tuning.records import RECORD_FILE, WORKLOAD_FILE


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A cache folder of this test's own: no tuning records but those it makes."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MUTATENN_CACHE_DIR", str(folder))
    return folder


def test_every_check_says_why():
    assert all(check.run.__doc__ and check.run.__doc__.strip() for check in SECTION_CHECKS + RUN_CHECKS)


def test_a_missing_model_file_parses_and_preflight_refuses_it_with_the_old_line(tmp_path):
    raw = campaign_table(model="gone/model.onnx", images="pictures", stacks=[{"name": "s", "target": "cpu"}])
    config = parse_config(raw, base_dir=tmp_path)  # the text alone: nothing on the disk asked for
    assert config.model == str(tmp_path / "gone" / "model.onnx") and not config.preflighted
    with pytest.raises(ConfigError) as err:
        preflight(config)
    assert str(err.value).splitlines() == [
        f"config key 'model.spec': model file {str(tmp_path / 'gone' / 'model.onnx')!r} does not exist",
        "config key 'images.spec': 'pictures' is neither a bundled set (digits, photos) nor an image folder"]


def test_parse_and_disk_problems_are_listed_together_in_config_order(tmp_path, capsys, cache_dir):
    """One read of `mutatenn run` names every problem, of the text and of the disk, and
    writes nothing."""
    config = campaign_config(tmp_path / "c.toml", model="missing.onnx", operators=["no_such_operator"],
                             stacks=[{"name": "a", "target": "cpu", "opt_level": 7},
                                     {"name": "b", "target": "cpu", "schedule": "tuned"}])
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    keys = ["'model.spec'", "'mutants.operators'", "'stacks[0].opt_level'"]  # no model file: no records to look for
    assert len(lines) == len(keys) and all(key in line for key, line in zip(keys, lines)), lines
    assert "does not exist" in lines[0] and "must be 0..3" in lines[2]
    # With the model there, the tuned stack's missing records are named, with the command that makes them.
    config = campaign_config(tmp_path / "c.toml", operators=["no_such_operator"],
                             stacks=[{"name": "a", "target": "cpu", "opt_level": 7},
                                     {"name": "b", "target": "cpu", "schedule": "tuned"}])
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split("':")[0] for line in lines] == [
        "mutatenn: error: config key 'mutants.operators", "mutatenn: error: config key 'stacks[0].opt_level",
        "mutatenn: error: config key 'stacks[1].schedule"], lines
    assert "no tuning records" in lines[2] and "mutatenn tune --model digits --target cpu" in lines[2]
    assert not (tmp_path / "run").exists()


def _empty_records(model: str, target: str):
    """A tuning database with no records: a tuned build of it gives every kernel the default schedule."""
    folder = database_dir(model, parse_target(target))
    folder.mkdir(parents=True)
    for name in (WORKLOAD_FILE, RECORD_FILE):
        (folder / name).write_text("")
    return folder


@pytest.mark.slow
def test_a_finished_run_reads_after_its_records_moved_and_a_resume_still_preflights(tmp_path, capsys, cache_dir):
    records = _empty_records("digits", "cpu")
    config = campaign_config(tmp_path / "c.toml", images="digits:4", operators={"remove_activation": {"positions": [0]}},
                             stacks=[{"name": "tuned", "target": "cpu", "schedule": "tuned"}])
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run), "--quiet", "--no-report"]) == 0
    shutil.rmtree(records)
    capsys.readouterr()
    # What reads the run folder works without the records: its stored config parses, the report
    # renders, the exports write, the API loads it.
    stored = json.loads((run / "run.json").read_text())["config"]
    assert parse_config(stored).stacks[0].options.schedule == "tuned"
    assert main(["report", str(run)]) == 0
    assert main(["export", str(run), "--format", "junit", "--out", str(tmp_path / "junit.xml")]) == 0
    from mutatenn.api import load_run

    assert set(load_run(run).verdicts["mutant_id"]) == {"remove_activation#0"}
    # A resume and a repro rebuild: they stop at preflight with the line a first run gives.
    capsys.readouterr()
    before = (run / "results.sqlite").read_bytes()
    for argv in (["run", str(config), "--out", str(run)], ["repro", str(run), "remove_activation#0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "config key 'stacks[0].schedule': no tuning records" in err, err
    assert (run / "results.sqlite").read_bytes() == before
