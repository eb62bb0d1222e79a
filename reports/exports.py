"""A campaign's run folder in the formats other tools read (docs/EXPORTS.md).

- ``mutation-testing-report``: the JSON of the mutation-testing report schema (the
  schema file of the pinned version is `SCHEMA_PATH`), which the ``mutation-testing-elements``
  web component renders and mutation-testing dashboards read.
- ``junit``: JUnit XML, one ``<testsuite>`` per stack and one ``<testcase>`` per mutant,
  which CI systems show as test results.

Input is the run folder alone (run.json, mutants.json, verdicts.csv, kill_matrix.csv,
images.json, programs/); like the rest of ``reports`` this knows nothing about TVM.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pandas as pd

from runfolder import schema
from runfolder.verdicts import Verdict

from .rundata import RunData, RunFolderError, load_run_folder

SCHEMA_VERSION = "3.8.4"  # npm mutation-testing-report-schema, pinned; its file is kept beside this module
SCHEMA_PATH = Path(__file__).parent / "schemas" / f"mutation-testing-report-schema-{SCHEMA_VERSION}.json"
ELEMENTS_VERSION = "3.8.4"  # npm mutation-testing-elements that renders it (tests/test_exports.py)
THRESHOLDS = {"high": 80, "low": 60}  # the web component's colour bands of a mutation score


# ---------------------------------------------------------------- locating a mutant in its program

@dataclass(frozen=True)
class Location:
    """Where a mutant's site is in a printed program: 1-based lines and columns, end exclusive."""

    start_line: int
    start_column: int
    end_line: int
    end_column: int
    replacement: str = ""  # the printed text the mutant has there instead (its diff's added lines)

    def to_json(self) -> dict:
        return {"start": {"line": self.start_line, "column": self.start_column},
                "end": {"line": self.end_line, "column": self.end_column}}


def whole_lines(lines: list[str], first: int, last: int, replacement: str = "") -> Location:
    """Lines ``first``..``last`` (1-based) from their first non-blank character to their end."""
    first = min(max(first, 1), max(len(lines), 1))
    last = min(max(last, first), max(len(lines), 1))
    text = lines[first - 1] if lines else ""
    indent = len(text) - len(text.lstrip()) + 1
    end = len(lines[last - 1]) + 1 if lines else 1
    return Location(first, indent, last, max(end, indent + 1) if last == first else end, replacement)


def location_from_diff(diff: str, lines: list[str]) -> Location | None:
    """The first hunk of a unified diff of this text: the original lines it removes (or the
    line before the ones it inserts), with the inserted lines as the replacement."""
    line, changed, added, seen = 0, [], [], False
    for row in diff.splitlines():
        hunk = re.match(r"@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@", row)
        if hunk:
            if seen:
                break
            line, seen = int(hunk.group(1)), True
        elif not seen or row.startswith(("---", "+++")):
            continue
        elif row.startswith("-"):
            changed.append(line)
            line += 1
        elif row.startswith("+"):
            added.append(row[1:].strip())
            if not changed:
                changed.append(max(line - 1, 1))  # an insertion: the line it follows
        else:
            line += 1
    if not changed:
        return None
    if len(changed) == 1 and len(added) == 1 and 0 < changed[0] <= len(lines):
        return changed_span(lines, changed[0], added[0])
    return whole_lines(lines, changed[0], changed[-1], "\n".join(added))


def changed_span(lines: list[str], number: int, new: str) -> Location:
    """One line changed into ``new``: the span between their common start and common end
    (``<`` of ``a < b`` made ``<=``), with the new text of that span as the replacement."""
    old = lines[number - 1]
    indent = len(old) - len(old.lstrip())
    old_text = old[indent:]
    start = 0
    while start < min(len(old_text), len(new)) and old_text[start] == new[start]:
        start += 1
    end = 0
    while end < min(len(old_text), len(new)) - start and old_text[-1 - end] == new[-1 - end]:
        end += 1
    if start == len(old_text) - end:  # a pure insertion: mark the character it follows
        start = max(start - 1, 0)
    return Location(number, indent + start + 1, number, indent + len(old_text) - end + 1,
                    new[start:len(new) - end])


def location_of_binding(site: str, lines: list[str]) -> Location | None:
    """The binding of the layer a site names (``relu #1 of 3 (lv5: ...)`` -> the line that
    binds ``lv5``): where graph and weight sites are when no diff of the text says more."""
    found = re.search(r"\((\w+): ", site)
    if not found:
        return None
    binding = re.compile(rf"^\s*{re.escape(found.group(1))}\s*(:[^=]*)?=(?!=)")
    for number, text in enumerate(lines, 1):
        if binding.match(text):
            return whole_lines(lines, number, number)
    return None


def location_of_main(lines: list[str]) -> Location:
    """A pass mutant changes how the whole program is built, not a site in its text: it
    points at the signature of ``main``."""
    for number, text in enumerate(lines, 1):
        if re.match(r"\s*def main\(", text):
            return whole_lines(lines, number, number)
    return whole_lines(lines, 1, 1)


# ---------------------------------------------------------------- the printed programs

NOT_STORED = ("# The printed program is not in this run folder (folders written before programs/ existed);\n"
              "# every mutant points at this line.\n")


def locate(mutant: dict, source: str) -> Location:
    """A mutant's location in its program's text (see `program_path`): the first hunk of its
    diff, else the binding its site names, else (pass mutants, and sites the text does not
    show) the signature of ``main`` or the first line."""
    lines = source.splitlines()
    level = mutant.get("level")
    if level in ("graph", "tir") and mutant.get("diff"):
        found = location_from_diff(mutant["diff"], lines)
        if found is not None:
            return found
    if level in ("graph", "weight"):
        found = location_of_binding(mutant.get("site") or "", lines)
        if found is not None:
            return found
    if level == "tir":
        return whole_lines(lines, 1, 1)
    return location_of_main(lines)


def read_programs(run: RunData) -> dict[str, str]:
    """programs/ of the run folder: relative path -> text."""
    folder = Path(run.path) / schema.PROGRAMS_DIR
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.py"))}


# ---------------------------------------------------------------- the tables an export reads

def load_campaign(run_dir) -> tuple[RunData, pd.DataFrame]:
    """The run folder (a campaign's) and its kill matrix; RunFolderError in one line otherwise."""
    run = load_run_folder(run_dir)
    if run.kind != "campaign":
        raise RunFolderError(f"{run_dir}: a {run.kind} run folder; only a campaign's mutants can be exported")
    if not (Path(run_dir) / schema.VERDICTS_CSV).is_file():
        raise RunFolderError(f"{run_dir}: not a finished campaign ({schema.VERDICTS_CSV} missing)")
    matrix_path = Path(run_dir) / schema.KILL_MATRIX_CSV
    matrix = (pd.read_csv(matrix_path, dtype={"mutant_id": str, "stack": str, "image": str})
              if matrix_path.is_file() else pd.DataFrame(columns=schema.KILL_MATRIX_COLUMNS))
    return run, matrix


def killing_images(matrix: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(mutant id, stack) -> the images that alone meet the kill criterion."""
    hits = matrix[pd.to_numeric(matrix["killed_by_image"], errors="coerce") == 1]
    return {key: list(group["image"]) for key, group in hits.groupby(["mutant_id", "stack"], sort=False)}


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


# ---------------------------------------------------------------- mutation-testing report

def mutation_testing_report(run_dir) -> dict:
    """The run folder as a mutation-testing report (schema `SCHEMA_VERSION`).

    Each stack is a folder of the report's files, holding the printed programs the mutants
    point into (``STACK/VIA/module.py``, ``STACK/VIA/tir/NAME.py``): the web component then
    shows a score per stack, and a mutant's id is ``MUTANT@STACK``, unique in the report.
    The image set is the one test file; each image is a test, and ``killedBy`` lists the
    images that alone kill the mutant (kill_matrix.csv)."""
    run, matrix = load_campaign(run_dir)
    programs = read_programs(run)
    mutants = {m["id"]: m for m in run.mutants.to_dict("records")}
    killers = killing_images(matrix)
    image_ids = {img["name"]: f"image:{img['name']}" for img in run.images}
    image_count = int(run.meta.get("image_count") or len(run.images))
    files: dict[str, dict] = {}
    for row in run.verdicts.to_dict("records"):
        mutant = mutants.get(row["mutant_id"], {"id": row["mutant_id"], "operator": row["operator"],
                                                "level": row["level"], "site": row["site"]})
        path = schema.program_path(mutant)
        source = programs.get(path, NOT_STORED)
        file = files.setdefault(f"{row['stack']}/{path}", {"language": "python", "source": source, "mutants": []})
        file["mutants"].append(_mutant_result(row, mutant, source, killers, image_ids, image_count))
    return {
        "schemaVersion": "2",
        "thresholds": dict(THRESHOLDS),
        "files": files,
        "testFiles": {str(run.meta.get("images") or "images"): {
            "tests": [{"id": image_ids[img["name"]], "name": _image_name(img)} for img in run.images]}},
        "framework": {"name": "MutateNN", "version": str(run.meta.get("mutatenn_version") or "")},
        "config": run.meta.get("config") or {},
    }


def _image_name(image: dict) -> str:
    label = image.get("label")
    return f"{image['name']} ({label})" if label not in (None, "") else str(image["name"])


def _mutant_result(row: dict, mutant: dict, source: str, killers: dict, image_ids: dict, image_count: int) -> dict:
    verdict = Verdict(row["verdict"])
    location = locate(mutant, source)
    out = {"id": f"{row['mutant_id']}@{row['stack']}", "mutatorName": str(row["operator"]),
           "location": location.to_json(), "status": verdict.info.mutation_testing,
           "description": f"{row['site']} (stack {row['stack']})"}
    if location.replacement:
        out["replacement"] = location.replacement
    if _text(row.get("reason")):
        out["statusReason"] = _text(row["reason"])
    if verdict.is_judged:
        killed_by = killers.get((row["mutant_id"], row["stack"]), [])
        if killed_by:
            out["killedBy"] = [image_ids.get(name, f"image:{name}") for name in killed_by]
        images_run = _number(row.get("images_run"))
        out["testsCompleted"] = int(images_run) if images_run is not None else image_count
    seconds = [_number(row.get("build_s")), _number(row.get("run_s"))]
    if any(s is not None for s in seconds):
        out["duration"] = round(sum(s for s in seconds if s is not None) * 1000, 3)
    return out


def validate_mutation_testing_report(report: dict) -> None:
    """Raise jsonschema.ValidationError unless ``report`` is valid against the pinned schema."""
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


# ---------------------------------------------------------------- JUnit XML

def junit_xml(run_dir) -> str:
    """The run folder as JUnit XML: one <testsuite> per stack, one <testcase> per mutant
    (classname: the operator; name: the mutant id). Killed passes; survived is a <failure>
    carrying the metric values; crashed, memory_error and timed_out are an <error> with the
    reason; build_error, non_viable and equivalent are <skipped> (outside the score)."""
    run, _ = load_campaign(run_dir)
    metrics = [m["name"] for m in run.metrics]
    root = ElementTree.Element("testsuites", name=f"MutateNN {run.meta.get('model_name') or run.meta.get('model', '')}")
    stacks = [s["name"] for s in run.meta.get("stacks", []) if isinstance(s, dict) and "name" in s]
    stacks += [s for s in dict.fromkeys(run.verdicts["stack"]) if s not in stacks]
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for stack in stacks:
        rows = run.verdicts[run.verdicts["stack"] == stack].to_dict("records")
        if not rows:
            continue
        suite = ElementTree.SubElement(root, "testsuite", name=stack)
        counts = {"tests": len(rows), "failures": 0, "errors": 0, "skipped": 0}
        time_total = 0.0
        for row in rows:
            kind = Verdict(row["verdict"]).info.junit
            seconds = sum(s for s in (_number(row.get("build_s")), _number(row.get("run_s"))) if s is not None)
            time_total += seconds
            case = ElementTree.SubElement(suite, "testcase", classname=str(row["operator"]), name=str(row["mutant_id"]),
                                          time=f"{seconds:.3f}")
            if kind == "failure":
                values = ", ".join(f"{name}={_number(row.get(name)):.6g}" for name in metrics
                                   if _number(row.get(name)) is not None)
                ElementTree.SubElement(case, "failure", message=f"survived: {values}" if values else "survived",
                                       type="survived").text = f"{row['site']}\n{values}"
                counts["failures"] += 1
            elif kind == "error":
                ElementTree.SubElement(case, "error", message=_text(row.get("reason")) or row["verdict"],
                                       type=row["verdict"]).text = _text(row.get("log_tail")) or None
                counts["errors"] += 1
            elif kind == "skipped":
                ElementTree.SubElement(case, "skipped", message=f"{row['verdict']}: {_text(row.get('reason'))}".rstrip(": "))
                counts["skipped"] += 1
        suite.attrib.update({k: str(v) for k, v in counts.items()}, time=f"{time_total:.3f}")
        for k in totals:
            totals[k] += counts[k]
    root.attrib.update({k: str(v) for k, v in totals.items()})
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------- the format table

@dataclass(frozen=True)
class ExportFormat:
    name: str
    render: object  # run folder -> text
    file_name: str  # what a run writes it as (`[run] exports`)
    doc: str


def _mutation_testing_text(run_dir) -> str:
    return json.dumps(mutation_testing_report(run_dir), indent=1) + "\n"


# name -> format: a new format is one function and one line here.
FORMATS = {f.name: f for f in (
    ExportFormat("mutation-testing-report", _mutation_testing_text, "mutation-testing-report.json",
                 f"JSON of the mutation-testing report schema {SCHEMA_VERSION} (mutation-testing-elements, dashboards)"),
    ExportFormat("junit", junit_xml, "junit.xml", "JUnit XML: a <testsuite> per stack, a <testcase> per mutant (CI test reports)"),
)}


def export_text(run_dir, format_name: str) -> str:
    """The run folder rendered in ``format_name``; RunFolderError (one line) for an unknown
    format or a folder that is not a finished campaign."""
    if format_name not in FORMATS:
        raise RunFolderError(f"unknown export format {format_name!r} (formats: {', '.join(FORMATS)})")
    return FORMATS[format_name].render(run_dir)
