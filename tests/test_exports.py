"""Exports of a campaign: the mutation-testing report JSON (valid against the pinned schema,
rendered by the real web component in Chromium) and JUnit XML (read by junitparser)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import Page, needs_chromium

from mutatenn.cli import main
from reports import exports

# The map, written out here rather than read from the code under test.
STATUS = {"killed": "Killed", "survived": "Survived", "crashed": "RuntimeError", "memory_error": "RuntimeError",
          "uninitialized_read": "RuntimeError",
          "timed_out": "Timeout", "build_error": "CompileError", "non_viable": "CompileError", "equivalent": "Ignored"}
MUTANT_KEYS = {"id", "mutatorName", "location", "status", "statusReason", "description", "replacement", "killedBy",
               "testsCompleted", "duration", "coveredBy", "static"}


def _schema():
    return json.loads(exports.SCHEMA_PATH.read_text())


def _mutants(report: dict) -> dict[str, tuple[str, dict]]:
    return {m["id"]: (path, m) for path, f in report["files"].items() for m in f["mutants"]}


def _at(report: dict, mutant_id: str) -> tuple[str, str]:
    """(the text a mutant's location spans, its replacement)."""
    path, m = _mutants(report)[mutant_id]
    lines = report["files"][path]["source"].splitlines()
    start, end = m["location"]["start"], m["location"]["end"]
    assert start["line"] == end["line"]
    return lines[start["line"] - 1][start["column"] - 1:end["column"] - 1], m.get("replacement", "")


def test_the_report_is_valid_and_maps_every_mutant(digits_campaign, tmp_path):
    import jsonschema

    written = json.loads((digits_campaign / "mutation-testing-report.json").read_text())
    jsonschema.validate(written, _schema())
    out = tmp_path / "report.json"
    assert main(["export", str(digits_campaign), "--format", "mutation-testing-report", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == written  # [run] exports and `mutatenn export` write the same

    verdicts = pd.read_csv(digits_campaign / "verdicts.csv")
    mutants = _mutants(written)
    assert set(mutants) == {f"{m}@{s}" for m, s in zip(verdicts["mutant_id"], verdicts["stack"])}
    matrix = pd.read_csv(digits_campaign / "kill_matrix.csv")
    for row in verdicts.to_dict("records"):
        path, m = mutants[f"{row['mutant_id']}@{row['stack']}"]
        assert m["status"] == STATUS[row["verdict"]] and m["mutatorName"] == row["operator"]
        assert set(m) <= MUTANT_KEYS  # nothing the schema has no place for (metric values, latency)
        killers = matrix[(matrix.mutant_id == row["mutant_id"]) & (matrix.killed_by_image == 1)]["image"]
        assert sorted(m.get("killedBy", [])) == sorted(f"image:{i}" for i in killers)
        assert path.startswith(f"{row['stack']}/")
    assert all(mutants[f"{m}@cpu-O2"][1].get("killedBy") for m in ("replace_activation_with_tanh#0", "tir_lt_to_le#0"))
    images = json.loads((digits_campaign / "images.json").read_text())
    (tests,) = written["testFiles"].values()
    assert [t["id"] for t in tests["tests"]] == [f"image:{i['name']}" for i in images]

    # Each mutant points at its site in the printed program it changes.
    assert _at(written, "replace_activation_with_tanh#0@cpu-O2") == ("nn.relu", "tanh")
    assert _at(written, "tir_lt_to_le#0@cpu-O2") == ("<", "<=")
    tir_path = mutants["tir_lt_to_le#0@cpu-O2"][0]
    assert tir_path.startswith("cpu-O2/") and "/tir/" in tir_path
    assert "T.prim_func" in written["files"][tir_path]["source"]
    text, _ = _at(written, "pass_opt_level#2@cpu-O2")  # a pass mutant: main's signature
    assert text.startswith("def main(")


def _all_verdicts_copy(run_dir: Path, tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """The campaign folder with its verdict rows (on a second stack too) given every verdict
    in turn: what an export makes of verdicts this small campaign does not reach."""
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    verdicts = pd.read_csv(folder / "verdicts.csv")
    verdicts = pd.concat([verdicts, verdicts.assign(stack="cpu-O0")], ignore_index=True)
    names = list(STATUS)
    verdicts["verdict"] = [names[i % len(names)] for i in range(len(verdicts))]
    verdicts.loc[verdicts.verdict == "crashed", "reason"] = "worker died (SIGSEGV)"
    verdicts.to_csv(folder / "verdicts.csv", index=False)
    return folder, verdicts


def test_every_verdict_has_its_status_and_junit_element(digits_campaign, tmp_path):
    import jsonschema
    from junitparser import Error, Failure, JUnitXml, Skipped

    folder, verdicts = _all_verdicts_copy(digits_campaign, tmp_path)
    report = exports.mutation_testing_report(folder)
    jsonschema.validate(report, _schema())
    mutants = _mutants(report)
    for row in verdicts.to_dict("records"):
        assert mutants[f"{row['mutant_id']}@{row['stack']}"][1]["status"] == STATUS[row["verdict"]]

    out = tmp_path / "junit.xml"
    assert main(["export", str(folder), "--format", "junit", "--out", str(out)]) == 0
    xml = JUnitXml.fromfile(str(out))
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == {"cpu-O2", "cpu-O0"}
    kinds = {}
    for name, suite in suites.items():
        for case in suite:
            kinds[(case.name, name)] = ({type(r) for r in case.result}, case.classname, case.result)
    expected = {"killed": set(), "survived": {Failure}, "crashed": {Error}, "memory_error": {Error}, "uninitialized_read": {Error},
                "timed_out": {Error}, "build_error": {Skipped}, "non_viable": {Skipped}, "equivalent": {Skipped}}
    for row in verdicts.to_dict("records"):
        found, classname, results = kinds[(row["mutant_id"], row["stack"])]
        assert found == expected[row["verdict"]] and classname == row["operator"]
        if row["verdict"] == "crashed":
            assert results[0].message == "worker died (SIGSEGV)"
    assert sum(s.failures for s in suites.values()) == (verdicts.verdict == "survived").sum()
    assert sum(s.errors for s in suites.values()) == verdicts.verdict.isin(["crashed", "memory_error", "uninitialized_read",
                                                                                      "timed_out"]).sum()


def test_junit_failures_are_the_survivors_with_their_metric_values(digits_campaign):
    from junitparser import Failure, JUnitXml

    xml = JUnitXml.fromfile(str(digits_campaign / "junit.xml"))
    (suite,) = list(xml)
    verdicts = pd.read_csv(digits_campaign / "verdicts.csv")
    assert suite.name == "cpu-O2" and suite.tests == len(verdicts)
    failed = {case.name: case.result[0] for case in suite if any(isinstance(r, Failure) for r in case.result)}
    assert set(failed) == set(verdicts[verdicts.verdict == "survived"]["mutant_id"])
    row = verdicts.set_index("mutant_id").loc["replace_activation_with_tanh#1"]
    assert f"top1_agreement={row['top1_agreement']:.6g}" in failed["replace_activation_with_tanh#1"].message
    assert f"cosine={row['cosine']:.6g}" in failed["replace_activation_with_tanh#1"].message


@pytest.mark.parametrize("case, phrase", [
    ("not-a-run", "not a run folder"),
    ("format", "unknown export format 'sarif'"),
    ("exists", "exists"),
])
def test_bad_export_input_is_one_line_and_exit_2(digits_campaign, tmp_path, capsys, case, phrase):
    out = tmp_path / "out.json"
    folder, fmt = str(digits_campaign), "junit"
    if case == "not-a-run":
        folder = str(tmp_path)
    elif case == "format":
        fmt = "sarif"
    else:
        out.write_text("keep me")
    capsys.readouterr()
    assert main(["export", folder, "--format", fmt, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and phrase in err
    assert (out.read_text() == "keep me") if case == "exists" else not out.exists()


# ---------------------------------------------------------------- the real web component

@pytest.fixture(scope="module")
def elements_js() -> Path:
    from _elements import ElementsMissing, elements_script

    try:
        return elements_script()
    except ElementsMissing as err:
        pytest.skip(str(err))


def _metrics_row(page, name: str) -> dict[str, int]:
    """The component's metrics table: the counts of the row named ``name``."""
    heads = [h.inner_text().strip() for h in page.locator("table thead tr").first.locator("th").all()]
    for row in page.locator("table tbody tr").all():
        cells = [c.inner_text().strip() for c in row.locator("td, th").all()]
        if cells and cells[0] == name:
            numbers = [c for c in cells[1:] if c and c.replace(".", "").isdigit()][2:]  # after the two scores
            names = [h for h in heads if not h.startswith("File") and h != "Mutation Score"]
            return dict(zip(names, map(int, numbers)))
    raise AssertionError(f"no row {name!r}")


@needs_chromium
def test_the_web_component_renders_the_report(digits_campaign, elements_js, browser, tmp_path):
    report = (digits_campaign / "mutation-testing-report.json").read_text()
    page_file = tmp_path / "report.html"
    page_file.write_text(f"""<!doctype html><html><head><meta charset="utf-8">
<script src="{elements_js.as_uri()}"></script></head><body>
<mutation-test-report-app title-postfix="MutateNN"></mutation-test-report-app>
<script>document.querySelector("mutation-test-report-app").report = {report};</script></body></html>""")
    view = Page(browser, page_file)
    page = view.page
    page.locator("table tbody tr").first.wait_for()
    verdicts = pd.read_csv(digits_campaign / "verdicts.csv")["verdict"].value_counts().to_dict()
    counts = _metrics_row(page, "All files")
    assert counts["Killed"] == verdicts.get("killed", 0) and counts["Survived"] == verdicts.get("survived", 0)
    assert counts["Ignored"] == verdicts.get("equivalent", 0) and counts["Total"] == sum(verdicts.values())
    assert counts["Timeout"] == counts["Runtime errors"] == counts["Compile errors"] == 0

    page.locator("table a", has_text="module.py").click()
    code = page.locator("mte-file code")
    code.first.wait_for()
    assert "def main(" in code.first.inner_text() and "R.nn.relu" in code.first.inner_text()
    labels = [label.inner_text() for label in page.locator("mte-state-filter label").all()]
    relax = json.loads(report)["files"]
    in_module = [m["status"] for p, f in relax.items() if p.endswith("module.py") for m in f["mutants"]]
    for status in ("Killed", "Survived", "Ignored"):
        assert any(label.endswith(f"{status} ({in_module.count(status)})") for label in labels), labels
    assert view.errors == [] and view.dialogs == []
